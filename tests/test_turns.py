"""The one typed turn: a finished TurnResult goes into the store and comes back as the same value (tokens and subset
table included), history comes from the store, and a stored turn is explained again without the model.

No model runs here: the explanation is built from a synthetic subset table (an additive game) by the real read-outs
and assembly, with a stand-in tokenizer that only names token ids.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from agent.attribution.builder import assemble
from agent.attribution.games import all_masks
from agent.attribution.methods import Options, readout
from agent.attribution.rescoring import SubsetScores
from agent.conversation import ConversationRunner
from agent.pipeline import Agent
from agent.turn import TurnResult
from retrieval.types import Hit, Passage
from tests.conftest import make_settings

PASSAGES = [Passage(id="returns#0", doc_id="returns", title="Returns", text="Return items within 30 days.",
                    source="/kb/returns.md", line=3),
            Passage(id="gifts#0", doc_id="gifts", title="Gift cards", text="Gift cards never expire.")]
TEXTS = [" Within", " 30", " days", " [1]."]
WEIGHTS = np.array([[0.2, 0.0], [3.0, 0.1], [1.5, -0.2], [0.0, 0.0]])  # (tokens, passages): what each passage adds


class Tokenizer:
    """Names token ids (all the explanation needs of a tokenizer: the alternatives' texts)."""

    def decode(self, ids):
        return "".join(f"<{i}>" for i in ids)


def explained_turn() -> TurnResult:
    """A turn as the pipeline leaves it: prompt, reply, timings, versions, explanation and subset table."""
    k, n = len(PASSAGES), len(TEXTS)
    logp = np.array([[-4.0 + sum(WEIGHTS[t, j] for j in range(k) if m >> j & 1) for t in range(n)]
                     for m in all_masks(k)])  # (2^k, T)
    table = SubsetScores(k=k, masks=all_masks(k), logp=logp, top_ids=np.arange(n * 5).reshape(n, 5),
                         top_logp=np.full((n, 5), -1.5), forward_passes=3, tokens_rescored=40, plain_tokens=90)
    reply_ids = [101, 102, 103, 104]
    result = readout("shapley", table, Options())
    explanation = assemble(result, Tokenizer(), reply_ids, TEXTS, PASSAGES, [0.71, 0.42], "shapley", Options())
    hits = [Hit(PASSAGES[0], score=0.7125, rank=1), Hit(PASSAGES[1], score=0.4201, rank=2)]
    return TurnResult(question="How long can I return things?", answer="".join(TEXTS).strip(), hits=hits,
                      prompt_ids=list(range(1, 41)), passage_spans=[(10, 18), (21, 27)], token_ids=reply_ids,
                      token_texts=TEXTS, timings={"retrieval_ms": 12.3, "generation_ms": 850.0},
                      versions={"base_model": "smollm2-135m", "prompt_version": "p2"}, explanation=explanation,
                      subsets=table)


def runner_for(store, session_home, **settings) -> ConversationRunner:
    """A runner whose agent has no model or index (nothing here generates), only a tokenizer."""
    stand_in = SimpleNamespace(tokenizer=Tokenizer())
    return ConversationRunner(Agent(make_settings(session_home, **settings), generator=stand_in, index=object()),
                              store)


def test_a_finished_turn_round_trips_through_the_store(store):
    result = explained_turn()
    cid = store.start_conversation(channel="api")
    store.add_user_turn(cid, text=result.question)
    result.turn_id, result.conversation_id, result.stored = store.add_turn(cid, result), str(cid), True

    back = store.get_result(result.turn_id)
    assert back.to_dict() == result.to_dict()  # the API's JSON: question, passages, timings, explanation ...
    assert back.hits == result.hits and back.explanation == result.explanation
    assert (back.prompt_ids, back.passage_spans) == (result.prompt_ids, result.passage_spans)
    assert back.layout.ids(keep=[1]) == result.layout.ids(keep=[1])  # the prompt can be ablated again
    assert (back.token_ids, back.token_texts) == (result.token_ids, result.token_texts)
    table = back.subsets
    assert table.masks == result.subsets.masks and np.allclose(table.logp, result.subsets.logp, atol=5e-3)
    assert (table.top_ids == result.subsets.top_ids).all() and table.forward_passes == 3
    turn = store.get_turn(result.turn_id)  # the store's own read model sees the same answer
    assert turn.best_score == pytest.approx(0.7125) and turn.explanation.method == "shapley"
    assert [p.passage_id for p in turn.passages] == ["returns#0", "gifts#0"]
    assert store.get_result(result.turn_id - 1) is None  # the question is not an answer


def test_an_abstained_and_a_failed_turn_store_no_tokens(store):
    cid = store.start_conversation(channel="cli")
    store.add_user_turn(cid, text="Capital of Mongolia?")
    hit = Hit(PASSAGES[1], score=0.12, rank=1)
    abstained = store.add_turn(cid, TurnResult(question="Capital of Mongolia?", answer="I don't know.",
                                               status="abstained", hits=[hit]))
    store.add_user_turn(cid, text="Hello?")
    failed = store.add_turn(cid, TurnResult(question="Hello?", status="error", error="RuntimeError: boom"))
    a, f = store.get_result(abstained), store.get_result(failed)
    assert a.abstained and a.hits == [hit] and a.prompt_ids == [] and a.subsets is None and a.layout is None
    assert f.status == "error" and f.error == "RuntimeError: boom" and f.question == "Hello?"
    assert store.get_conversation(cid).status == "abstained"


def test_history_is_read_from_the_store_with_one_limit(store, session_home):
    runner = runner_for(store, session_home, history_turns=2)
    cid = runner.start(channel="ui")
    for question, answer, status in (("Returns?", "30 days.", "ok"), ("Gift cards?", "", "error"),
                                     ("Do they expire?", "Never.", "ok"), ("Shipping?", "$5.95.", "ok")):
        store.add_user_turn(cid, text=question)
        store.add_turn(cid, TurnResult(question=question, answer=answer, status=status))
    history = runner.history(cid)
    assert [(e.user, e.assistant) for e in history] == [("Do they expire?", "Never."), ("Shipping?", "$5.95.")]
    assert runner_for(store, session_home, history_turns=5).history(cid)[0].user == "Returns?"  # the failed one is left out
    assert runner.history(None) == [] and runner_for(None, session_home).history(cid) == []


def test_a_stored_turn_is_explained_again_without_the_model(store, session_home):
    result = explained_turn()
    cid = store.start_conversation(channel="api")
    store.add_user_turn(cid, text=result.question)
    turn_id = store.add_turn(cid, result)
    runner = runner_for(store, session_home)

    loo = runner.reexplain(turn_id, method="loo")
    assert loo.explanation.method == "loo" and loo.explanation.forward_passes == 0
    assert np.allclose(loo.explanation.matrix("loo"), WEIGHTS, atol=1e-2)  # additive game: LOO = the weights
    assert store.get_turn(turn_id).explanation.method == "loo"  # stored in place of the first one
    again = runner.reexplain(turn_id, method="shapley", grounding_threshold=0.5)
    assert np.allclose(again.explanation.matrix("shapley"), result.explanation.matrix("shapley"), atol=1e-2)
    assert [t.flag for t in again.explanation.tokens] == ["prior", "grounded", "grounded", "prior"]
    with pytest.raises(ValueError, match="cannot be computed from a stored subset table"):
        runner.reexplain(turn_id, method="attention")
    plain = store.add_turn(cid, TurnResult(question="q", answer="a"))
    with pytest.raises(Exception, match="no stored subset table"):
        runner.reexplain(plain)


def test_purging_a_conversation_takes_its_tokens_with_it(store):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    result = explained_turn()
    cid = store.start_conversation(channel="api")
    store.add_user_turn(cid, text=result.question)
    store.add_turn(cid, result)
    with store.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM turn_tokens")).scalar_one() == 1
        conn.execute(text("UPDATE conversation SET updated_at = :t"),
                     {"t": datetime.now(UTC).replace(tzinfo=None) - timedelta(days=100)})
        conn.commit()
    assert store.purge(timedelta(days=90)) == 1
    with store.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM turn_tokens")).scalar_one() == 0
