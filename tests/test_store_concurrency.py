"""Many threads (and several Store instances, like app replicas) writing turns and feedback into the same
conversations at once: every acknowledged write is there afterwards, turn indexes are unique and gap-free, and no
"database is locked" reaches a caller."""

from __future__ import annotations

import threading
from collections import defaultdict

from agent.store import Store

THREADS = 8
ROUNDS = 5
CONVERSATIONS = 3


def test_concurrent_writers_lose_nothing(db_url):
    stores = [Store(db_url), Store(db_url)]  # two "replicas", each with its own connection pool
    try:
        conversations = [stores[0].start_conversation(channel="api") for _ in range(CONVERSATIONS)]
        acknowledged: dict[str, list] = defaultdict(list)
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(THREADS)

        def worker(n: int) -> None:
            store = stores[n % 2]
            start.wait()
            try:
                for r in range(ROUNDS):
                    cid = conversations[(n + r) % CONVERSATIONS]
                    q = store.add_user_turn(cid, text=f"question {n}.{r}")
                    a = store.add_assistant_turn(
                        cid, text=f"answer {n}.{r}", reply_to=q, latency={"generation_ms": 1.0},
                        passages=[{"rank": 1, "doc_id": f"doc{n}", "text": "t", "score": 0.5}],
                        explanation={"n": n, "r": r}, explanation_method="loo", confidence=0.5,
                    )
                    f = store.add_feedback(a, source="operator", rating="up" if r % 2 else "down")
                    if r % 3 == 0:
                        store.set_status(cid, "open")
                    with lock:
                        acknowledged["turn"] += [(cid, q, f"question {n}.{r}"), (cid, a, f"answer {n}.{r}")]
                        acknowledged["feedback"].append((a, f))
            except BaseException as exc:  # noqa: BLE001 - any failure in a worker thread is reported below
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, [repr(e) for e in errors]
        assert not any("database is locked" in repr(e) for e in errors)

        with Store(db_url) as reader:
            details = {cid: reader.get_conversation(cid) for cid in conversations}
        turns = {t.id: (cid, t) for cid, c in details.items() for t in c.turns}
        assert len(turns) == len(acknowledged["turn"]) == THREADS * ROUNDS * 2
        for cid, turn_id, text in acknowledged["turn"]:
            assert turns[turn_id][0] == cid and turns[turn_id][1].text == text
        for c in details.values():  # indexes unique and gap-free per conversation
            assert [t.index for t in c.turns] == list(range(len(c.turns)))
            for t in c.turns:
                if t.role == "assistant":  # each answer kept its own question, passages and explanation
                    assert turns[t.reply_to_id][1].text == t.text.replace("answer", "question")
                    assert len(t.passages) == 1 and t.explanation is not None
        feedback = {(t.id, f.id) for _, t in turns.values() for f in t.feedback}
        assert feedback == set(acknowledged["feedback"])
    finally:
        for s in stores:
            s.close()
