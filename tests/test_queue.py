"""The bounded queue (issue 14, load): one turn at a time, waiting callers see their place, and beyond
``queue_max`` a caller is told the app is busy and when to try again, while every accepted turn is answered and
stored. Launched Gradio app, real SQLite store, gradio_client and plain HTTP; a scripted agent that takes a second
per turn stands in for the model (what is under test is the queue)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import QueueError

from agent.store import Store
from tests.conftest import make_settings
from tests.test_store_write_faults import ANSWER, ScriptedAgent
from ui.queue import busy_message


class SlowAgent(ScriptedAgent):
    def stream(self, question, history=(), *, explain=False, method="shapley"):
        time.sleep(1.0)
        yield from super().stream(question, history, explain=explain, method=method)


def test_busy_message_says_how_many_wait_and_when_to_retry():
    assert busy_message(3, 4.2) == "Moments is busy: 3 requests are waiting. Try again in about 13 s."
    assert busy_message(2, 0.0).endswith("Try again in about 5 s.")


@pytest.fixture
def app(tmp_path):
    from ui.app import build_app
    from ui.queue import bounded_queue

    settings = make_settings(tmp_path, threads=0, database_url=f"sqlite:///{tmp_path / 'q.db'}")
    store = Store(settings.db_url)
    demo = bounded_queue(build_app(settings, agent=SlowAgent(tmp_path), store=store), max_size=2)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield url, store
    finally:
        demo.close()
        store.close()


def test_a_full_queue_says_busy_and_every_accepted_turn_is_answered_and_stored(app):
    url, store = app
    clients = [Client(url, verbose=False) for _ in range(6)]
    jobs = [c.submit(f"question {i}", "", False, "summary", api_name="/ask") for i, c in enumerate(clients)]
    ranks: list[int] = []

    def watch():
        for _ in range(40):
            ranks.extend(s.rank for s in (j.status() for j in jobs) if s.rank is not None and s.rank >= 0)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.3)  # the queue is full now: one running, two waiting
    posted = httpx.post(url + "gradio_api/queue/join", json={"data": ["x", "", False, "summary"], "fn_index": 0,
                                                             "session_hash": "abc", "event_data": None})
    assert posted.status_code == 503 and "Moments is busy" in posted.text and "Try again in about" in posted.text
    answered, busy = [], 0
    for job in jobs:
        try:
            answered.append(job.result(timeout=60))
        except QueueError:
            busy += 1
    watcher.join()
    assert busy >= 1 and len(answered) >= 3 and len(answered) + busy == 6
    assert max(ranks) >= 1  # a waiting caller saw its place in the queue
    assert all(a["answer"] == ANSWER and a["stored"] for a in answered)
    stored = {c.id: store.get_conversation(c.id) for c in store.list_conversations(limit=50)}
    assert sorted(t.id for c in stored.values() for t in c.turns if t.role == "assistant") == \
        sorted(a["turn_id"] for a in answered)
    assert all(len(c.turns) in (0, 2) for c in stored.values())  # refused callers left no question behind
