"""Answering goes first (#15): the generator's lock hands the model from a background exact job to a live turn
between the job's passes, and a question asked while an exact explanation runs is answered before the job ends."""

from __future__ import annotations

import threading
import time

import pytest

from agent.generation.priority import GeneratorLock, background_hold, checkpoint


def _background_job(lock: GeneratorLock, units: int, unit_s: float, log: list[str]) -> None:
    with lock.background():
        for i in range(units):
            checkpoint()
            log.append(f"job {i}")
            time.sleep(unit_s)
    log.append("job end")


def test_a_waiting_answer_gets_the_lock_between_two_units_of_a_background_job():
    lock, log = GeneratorLock(quiet_s=0.05), []
    job = threading.Thread(target=_background_job, args=(lock, 20, 0.05, log))
    job.start()
    while not log:  # the job holds the lock and has started its first unit
        time.sleep(0.005)
    asked = time.monotonic()
    with lock:
        waited = time.monotonic() - asked
        log.append("answer")
        time.sleep(0.1)
    job.join(10)
    assert not job.is_alive()
    assert waited < 0.5, f"the answer waited {waited:.2f} s for a job of 1 s"
    answer = log.index("answer")
    assert 0 < answer < log.index("job 19"), log  # between two units, not after the job
    assert log[-1] == "job end" and lock.yields == 1 and not lock.locked()


def test_a_plain_foreground_holder_is_not_interrupted():
    """Two foreground holders queue as with a plain lock; checkpoint() outside a background job does nothing."""
    lock, log = GeneratorLock(), []

    def turn(name: str) -> None:
        with lock:
            log.append(f"{name} in")
            assert checkpoint() == 0.0
            time.sleep(0.05)
            log.append(f"{name} out")

    threads = [threading.Thread(target=turn, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert log in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    assert not lock.locked()


def test_a_background_job_waits_while_answers_queue_and_for_the_quiet_time_after_one():
    lock = GeneratorLock(quiet_s=0.3)
    started = threading.Event()

    def job() -> None:
        with lock.background():
            started.set()

    with lock:  # a turn generating its reply
        worker = threading.Thread(target=job)
        worker.start()
        time.sleep(0.1)
        assert not started.is_set()
    released = time.monotonic()
    # the same turn takes the lock again at once for its instant explanation: the job must not slip in between
    assert lock.acquire(timeout=1)
    lock.release()
    assert started.wait(5)
    assert time.monotonic() - released >= 0.25
    worker.join(5)
    assert not lock.locked()


def test_background_hold_accepts_a_plain_lock_and_none():
    plain = threading.Lock()
    with background_hold(plain):
        assert plain.locked()
    assert not plain.locked()
    with background_hold(None):
        pass


def test_acquire_with_a_timeout_gives_up_while_a_background_job_holds_the_lock_between_checkpoints():
    lock = GeneratorLock()
    with lock.background():
        assert not lock.acquire(timeout=0.05)  # the job has not reached a checkpoint: the answer waits
        assert lock.waiting == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_question_asked_while_an_exact_job_runs_is_answered_before_the_job_ends(agent, generator, tmp_path):
    from agent.background.inprocess import InProcessWorker
    from agent.conversation import ConversationRunner
    from agent.store import Store
    from agent.store.exactjobs import exact_status, queue_exact
    from agent.store.testing import empty_database

    assert isinstance(generator.lock, GeneratorLock)
    with empty_database("sqlite", tmp_path) as url, Store(url) as store:
        runner = ConversationRunner(agent, store)  # no worker yet: the turn keeps only its estimate
        cid = runner.start(channel="api")
        first = runner.ask(cid, "I'm a Gold member, how long do I have to return stuff?", explain=True,
                           method="learned")
        assert first.explanation.estimator == "learned" and first.token_ids
        worker = InProcessWorker(store, lambda: generator, name="priority-test")
        runner.background = worker
        queue_exact(store, first.turn_id, estimate_method="learned")
        yields_before = generator.lock.yields
        worker.submit(first.turn_id)
        deadline = time.monotonic() + 120
        while exact_status(store, first.turn_id).status != "running" or not generator.lock.locked():
            assert time.monotonic() < deadline, "the exact job did not start"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the job (16 subsets: several seconds of passes)

        asked = time.monotonic()
        second = runner.ask(cid, "Can I change the delivery address of my order?", explain=True)
        answered = time.monotonic() - asked
        job = exact_status(store, first.turn_id)
        assert second.status == "ok" and second.stored and second.answer
        assert second.explanation is not None and second.explanation.estimator == "learned"
        assert job.status == "running", f"the exact job ended ({job.status}) before the question was answered " \
                                        f"({answered:.1f} s)"
        assert generator.lock.yields > yields_before  # the job gave the model up between two passes

        assert worker.wait(timeout=400), "the exact jobs did not finish"
        assert worker.failures == 0
        assert store.get_result(first.turn_id).explanation.estimator == "exact"
        assert store.get_result(second.turn_id).explanation.estimator == "exact"  # its own job, queued after
