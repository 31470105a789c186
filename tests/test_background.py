"""Exact explanations in the background (#15 part 3): the reply goes out with its instant (learned) estimate while
the exact job is still queued, the exact explanation lands in the store afterwards with the estimate's agreement,
and a turn's exact explanation is stored once however often its job runs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.attribution import estimator as est_mod
from agent.background.inprocess import InProcessWorker
from agent.conversation import ConversationRunner
from agent.store.exactjobs import (
    exact_status,
    finish_exact,
    pending_turns,
    queue_depth,
    queue_exact,
    start_exact,
)
from tests.test_turns import explained_turn, runner_for


def test_an_exact_explanation_is_stored_once_however_often_its_job_runs(store):
    cid = store.start_conversation(channel="api")
    turn = explained_turn()
    turn_id = store.add_turn(cid, turn)
    queue_exact(store, turn_id, estimate_method="learned")
    assert exact_status(store, turn_id).status == "queued" and queue_depth(store) == 1
    assert pending_turns(store) == [turn_id]
    assert start_exact(store, turn_id, worker="a") and start_exact(store, turn_id, worker="b")  # a retry
    assert exact_status(store, turn_id).attempts == 2
    first = finish_exact(store, turn_id, explanation=turn.explanation, table=b"table-a", agreement={"x": 1},
                         worker="b", exact_ms=12.0)
    second = finish_exact(store, turn_id, explanation=turn.explanation, table=b"table-b", agreement={"x": 2},
                          worker="a", exact_ms=13.0)
    job = exact_status(store, turn_id)
    assert (first, second) == (True, False)
    assert job.status == "done" and job.worker == "b" and job.agreement == {"x": 1}
    assert not start_exact(store, turn_id, worker="c")  # done: nothing to compute
    assert queue_depth(store) == 0 and pending_turns(store) == []
    assert store.get_turn(turn_id).latency["exact_ms"] == 12.0


def uniform_estimator(generator) -> est_mod.Estimator:
    """An untrained estimator (attention mass, every head alike), registered for the session's generator: the test
    must not depend on which weights are shipped."""
    n_l, n_h = generator.model.config.num_hidden_layers, generator.model.config.num_attention_heads
    w = np.zeros(6 * n_l * n_h + est_mod.N_RANKS)
    w[:n_l * n_h] = 1.0
    return est_mod.Estimator(w=w, beta=np.zeros(5))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_turn_goes_out_with_its_estimate_while_the_exact_job_is_queued_and_exact_lands_after(
        agent, generator, store, monkeypatch):
    adapter_dir, adapter_hash = getattr(generator.model, est_mod.ADAPTER_ATTR)
    monkeypatch.setitem(est_mod._loaded, (str(adapter_dir), adapter_hash), uniform_estimator(generator))
    gate = threading.Event()

    def held_generator():
        gate.wait(300)  # the job waits here, still "queued", until the test lets it run
        return generator

    worker = InProcessWorker(store, held_generator, name="test-worker")
    runner = ConversationRunner(agent, store, background=worker)
    cid = runner.start(channel="api")
    result = runner.ask(cid, "How long do I have to return an item?", explain=True)

    assert result.status == "ok" and result.turn_id is not None
    assert result.explanation.estimator == "learned" and len(result.explanation.tokens) == len(result.token_ids)
    stored = store.get_result(result.turn_id)
    assert stored.explanation.estimator == "learned"  # what the operator sees now: the estimate
    state = runner.exact_state(result.turn_id)
    assert state["status"] == "queued" and state["depth"] == 1

    gate.set()
    assert worker.wait(timeout=400), "the exact job did not finish"
    assert worker.failures == 0
    done = store.get_result(result.turn_id)
    assert done.explanation.estimator == "exact" and done.explanation.method == "shapley"
    assert done.subsets is not None and done.subsets.logp.shape == (1 << len(done.hits), len(done.token_ids))
    job = exact_status(store, result.turn_id)
    assert job.status == "done" and job.worker == "test-worker" and job.attempts == 1
    assert job.estimate_method == "learned"
    agreement = job.agreement
    assert agreement["estimator"] == "learned" and agreement["tokens"] == len(done.token_ids)
    assert isinstance(agreement["same_top_passage"], bool) and -1.0 <= agreement["lds_token"] <= 1.0
    assert "exact_ms" in store.get_turn(result.turn_id).latency


def test_without_a_background_worker_instant_means_exact_at_once(store, session_home):
    runner = runner_for(store, session_home)
    assert runner.agent.settings.explain_method == "instant"
    assert runner._method(None, stored=True) == "shapley"
    assert runner._method("loo", stored=True) == "loo"
