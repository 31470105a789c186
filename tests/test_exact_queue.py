"""Exact explanations through the real queue (#15 part 3): RQ on the Redis server at 127.0.0.1:6379, two
``moments worker`` processes; every queued explanation is stored exactly once, and the job of a worker killed in the
middle of it is retried by the other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.attribution import estimator as est_mod
from agent.background.rqueue import RQBackend
from agent.conversation import ConversationRunner
from agent.store import Store
from agent.store.exactjobs import exact_status
from tests.test_background import uniform_estimator

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/11"  # a database of its own, emptied before and after


def redis_or_skip():
    from redis import Redis

    try:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - say why and skip
        pytest.skip(f"no Redis server at {REDIS_URL}: {exc}")
    return client


def _worker(name: str, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "-v", "worker", "--name", name], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait(condition, timeout: float, what: str, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_store_every_queued_explanation_once_and_retry_a_killed_workers_job(
        agent, generator, settings, session_home, tmp_path, monkeypatch):
    client = redis_or_skip()
    client.flushdb()
    adapter_dir, adapter_hash = getattr(generator.model, est_mod.ADAPTER_ATTR)
    monkeypatch.setitem(est_mod._loaded, (str(adapter_dir), adapter_hash), uniform_estimator(generator))
    db_url = f"sqlite:///{tmp_path / 'moments.db'}"
    queue_settings = settings.model_copy(update={"queue_url": REDIS_URL, "exact_job_timeout_s": 60})
    store = Store(db_url)
    runner = ConversationRunner(agent, store, background=RQBackend(REDIS_URL, queue_settings))
    cid = runner.start(channel="api")
    questions = ["How long do I have to return an item?", "Do gift cards expire?", "How can I track my order?",
                 "Can I change my delivery address?"]
    turns = []
    for q in questions:
        result = runner.ask(cid, q, explain=True)
        if result.status == "ok":
            assert result.explanation.estimator == "learned"
            turns.append(result.turn_id)
    assert len(turns) >= 3, "too few answered turns to test the queue"
    assert runner.background.depth() == len(turns)  # queued, no worker yet
    assert all(exact_status(store, t).status == "queued" for t in turns)

    env = {**os.environ, "MOMENTS_HOME": str(session_home), "MOMENTS_DATABASE_URL": db_url,
           "MOMENTS_QUEUE_URL": REDIS_URL, "MOMENTS_EXACT_JOB_TIMEOUT_S": "60", "MOMENTS_WORKER_GRACE_S": "2",
           "MOMENTS_WORKER_MAINTENANCE_S": "2", "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    a = _worker("worker-a", env, logs[0])
    b = None
    try:
        # worker a takes the first job; kill it in the middle of that job
        killed = _wait(lambda: next((t for t in turns if exact_status(store, t).status == "running"), None), 300,
                       "worker a to start a job", logs)
        assert exact_status(store, killed).worker == "worker-a"
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(30)
        b = _worker("worker-b", env, logs[1])
        _wait(lambda: all(exact_status(store, t).status == "done" for t in turns), 600,
              "every exact explanation to be stored", logs)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)
    jobs = {t: exact_status(store, t) for t in turns}
    assert jobs[killed].attempts == 2 and jobs[killed].worker == "worker-b"  # retried by the live worker
    assert all(j.attempts == 1 and j.worker == "worker-b" for t, j in jobs.items() if t != killed)
    for t in turns:
        result = store.get_result(t)
        assert result.explanation.estimator == "exact" and result.subsets is not None
    from rq import Queue
    from rq.registry import FailedJobRegistry

    queue = Queue("moments-exact", connection=client)
    assert len(queue) == 0 and len(FailedJobRegistry(queue=queue)) == 0
    assert runner.background.depth() == 0
    client.flushdb()
    store.close()
