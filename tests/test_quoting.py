"""Quoted answers (agent.generation.quoting): the cited sentence, its token steps, and a real quoted turn explained."""

from __future__ import annotations

import re

import pytest

from agent.generation.quoting import cite, quote_steps


def test_cite_puts_the_marker_before_the_final_punctuation() -> None:
    assert cite("Refunds take 5-7 business days.") == "Refunds take 5-7 business days [1]."
    assert cite("Can I pay later?", 2) == "Can I pay later [2]?"
    assert cite("Method: Klarna; Time: 4-6 days") == "Method: Klarna; Time: 4-6 days [1]"


def test_quote_steps_concatenate_to_the_text_with_the_tokenizers_ids(tokenizer) -> None:
    text = "Gift cards never expire — café “rules” apply [1]."
    steps = quote_steps(tokenizer, text)
    assert "".join(s.text for s in steps) == text
    assert [s.token_id for s in steps] == tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.slow
def test_a_quoted_turn_states_a_sentence_of_passage_1_and_is_explained(agent):
    assert agent.settings.answer_mode == "quote"  # the shipped default
    result = agent.ask("When will my PayPal refund show up?", explain=True)
    assert result.status == "ok" and result.answer.endswith("[1].")
    flat = lambda t: re.sub(r"[^a-z0-9]+", " ", t.lower()).strip()
    assert flat(result.answer.replace(" [1]", "")) in flat(result.hits[0].passage.text)  # quoted, not paraphrased
    assert "2 business days" in result.answer  # data/kb refund-timelines: "PayPal ... within 2 business days"
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))  # [n] = position shown
    assert "".join(result.token_texts).strip() == result.answer
    assert result.versions["generation"]["answer_mode"] == "quote"
    assert result.versions["generation"]["answer_method"] == "quote"  # what wrote this reply (ui.origin reads it)
    # explained by the model like a generated reply: a row per token, passage [1] credited most
    exp = result.explanation
    assert exp is not None and len(exp.tokens) == len(result.token_ids)
    assert max(range(exp.k), key=lambda j: exp.passages[j].credit) == 0
