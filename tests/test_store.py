"""The conversation store's API, on SQLite (a tmp file) and the real PostgreSQL server (a fresh schema per test)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from agent.errors import StoreError
from agent.store import ConversationFilter, InvalidInputError, NotFoundError, Store
from agent.store.migrate import head_revision


def passages(*docs: tuple[str, float]) -> list[dict]:
    """Retrieval hits shaped like ``Hit.to_dict()``."""
    return [
        {"rank": i, "score": score, "id": f"{doc}#0", "doc_id": doc, "title": doc.title(),
         "text": f"What {doc} says.", "source": f"kb/{doc}.md", "line": 1}
        for i, (doc, score) in enumerate(docs, start=1)
    ]


def exchange(store: Store, cid, question: str, answer: str, *, docs=(("pets", 0.8),), status="ok",
             confidence: float | None = 0.7, top_doc_id: str | None = None) -> int:
    store.add_user_turn(cid, text=question)
    return store.add_assistant_turn(
        cid, text=answer, status=status, latency={"retrieval_ms": 10.0, "generation_ms": 900.0},
        versions={"base_model": "smollm2-135m", "adapter": "support-v1", "prompt_version": "p1"},
        passages=passages(*docs),
        explanation=None if confidence is None else {"tokens": answer.split(), "method": "loo"},
        explanation_method=None if confidence is None else "loo",
        confidence=confidence, grounded_share=None if confidence is None else 0.5,
        top_doc_id=top_doc_id or (docs[0][0] if docs else None),
    )


def test_open_creates_the_schema_and_reopens_with_the_data(db_url):
    with Store(db_url) as first:
        assert first.schema_revision() == head_revision()
        cid = first.start_conversation(channel="ui")
    with Store(db_url) as second:
        assert second.get_conversation(cid) is not None


def test_a_turn_round_trips_with_passages_explanation_versions_and_feedback(store):
    cid = store.start_conversation(channel="api", operator="alice", tags=["vip"])
    q = store.add_user_turn(cid, text="Do you allow pets at the Harbour Hotel?")
    explanation = {"tokens": ["Yes", "."], "loo": [[0.4, 0.1], [0.0, 0.0]], "flags": ["grounded", "prior"]}
    a = store.add_assistant_turn(
        cid, text="Yes [1].", latency={"retrieval_ms": 12.5, "generation_ms": 800.0, "attribution_ms": 0.0},
        versions={"base_model": "smollm2-135m", "adapter_hash": "abc123", "temperature": 0.0},
        passages=passages(("pets", 0.71), ("rooms", 0.42)), explanation=explanation, explanation_method="shapley",
        confidence=0.83, grounded_share=0.5, top_doc_id="pets",
    )
    fb = store.add_feedback(a, source="operator", rating="up", reasons=["Wrong_Source", "other"], comment="fine")

    c = store.get_conversation(cid)
    assert c is not None and c.channel == "api" and c.operator == "alice" and c.tags == ["vip"]
    assert c.title == "Do you allow pets at the Harbour Hotel?"  # from the first question
    assert [(t.id, t.index, t.role) for t in c.turns] == [(q, 0, "user"), (a, 1, "assistant")]
    answer = c.turns[1]
    assert answer.reply_to_id == q and answer.status == "ok" and answer.best_score == pytest.approx(0.71)
    assert answer.latency["retrieval_ms"] == 12.5 and answer.versions["adapter_hash"] == "abc123"
    assert [(p.rank, p.doc_id, p.passage_id, p.text) for p in answer.passages] == [
        (1, "pets", "pets#0", "What pets says."), (2, "rooms", "rooms#0", "What rooms says.")]
    assert answer.explanation is not None and answer.explanation.data == explanation
    assert (answer.explanation.method, answer.explanation.top_doc_id) == ("shapley", "pets")
    assert [(f.id, f.rating, f.reasons, f.reviewed) for f in answer.feedback] == [
        (fb, "up", ["wrong source", "other"], False)]
    for stamp in (c.created_at, c.updated_at, answer.created_at, answer.feedback[0].created_at):
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert c.updated_at == answer.created_at
    assert store.get_turn(a).explanation.confidence == pytest.approx(0.83)


def test_the_question_is_committed_before_the_answer_exists(store, db_url):
    cid = store.start_conversation(channel="ui")
    turn_id = store.add_user_turn(cid, text="Where is my order?")
    with Store(db_url) as other:  # another process (replica) sees it at once
        seen = other.get_conversation(cid)
    assert [t.id for t in seen.turns] == [turn_id]
    assert seen.last_question == "Where is my order?" and seen.last_answer is None


def test_abstaining_marks_an_open_conversation_but_not_an_escalated_one(store):
    open_one = store.start_conversation(channel="ui")
    exchange(store, open_one, "What is the meaning of life?", "I don't know.", status="abstained", docs=[("x", 0.1)])
    assert store.get_conversation(open_one).status == "abstained"

    escalated = store.start_conversation(channel="ui")
    store.set_status(escalated, "escalated")
    exchange(store, escalated, "Still there?", "I don't know.", status="abstained")
    assert store.get_conversation(escalated).status == "escalated"
    with pytest.raises(ValueError, match="escalated"):
        store.set_status(escalated, "closed")
    with pytest.raises(NotFoundError):
        store.set_status(uuid.uuid4(), "resolved")


def test_an_explanation_arriving_later_is_attached_and_replaced(store):
    cid = store.start_conversation(channel="cli")
    turn_id = exchange(store, cid, "Refunds?", "Within 30 days [1].", confidence=None)
    assert store.get_turn(turn_id).explanation is None

    first = store.add_explanation(turn_id, method="loo", explanation={"v": 1}, confidence=0.4, attribution_ms=1500)
    second = store.add_explanation(turn_id, method="shapley", explanation={"v": 2}, confidence=0.9,
                                   grounded_share=0.7, top_doc_id="refunds")
    turn = store.get_turn(turn_id)
    assert first == second and turn.explanation.data == {"v": 2} and turn.explanation.method == "shapley"
    assert turn.latency == {"retrieval_ms": 10.0, "generation_ms": 900.0, "attribution_ms": 1500.0}
    assert store.list_conversations()[0].last_confidence == pytest.approx(0.9)
    with pytest.raises(NotFoundError):
        store.add_explanation(10_000, method="loo", explanation={})


def test_invalid_arguments_are_refused_before_anything_is_written(store):
    cid = store.start_conversation(channel="ui")
    turn_id = exchange(store, cid, "Hi", "Hello")
    with pytest.raises(ValueError):
        store.start_conversation(channel="email")
    with pytest.raises(ValueError):
        store.add_feedback(turn_id, source="operator", rating="meh")
    with pytest.raises(ValueError):
        store.add_feedback(turn_id, source="customer", rating="up")
    with pytest.raises(InvalidInputError, match=r"reasons\.0: Input should be 'wrong source'") as caught:
        store.add_feedback(turn_id, source="operator", reasons=["too polite"])
    assert isinstance(caught.value, StoreError)  # user-facing: the UI shows the message
    with pytest.raises(ValueError):
        store.add_assistant_turn(cid, text="x", status="great")
    with pytest.raises(ValueError):
        store.add_user_turn("not-a-uuid", text="x")
    with pytest.raises(NotFoundError):
        store.add_user_turn(uuid.uuid4(), text="x")
    with pytest.raises(NotFoundError):
        store.add_feedback(10_000, source="api", rating="up")
    assert store.get_conversation(cid).turn_count == 2
    assert store.get_turn(turn_id).feedback == []


def test_review_marks_feedback_reviewed(store):
    cid = store.start_conversation(channel="ui")
    turn_id = exchange(store, cid, "Hi", "Hello")
    fb = store.add_feedback(turn_id, source="operator", rating="down", reasons=["incomplete"])
    store.review_feedback(fb, reviewer="carol", corrected_answer="Hello! How can I help?")
    [f] = store.get_turn(turn_id).feedback
    assert f.reviewed and f.reviewer == "carol" and f.reviewed_at is not None
    assert f.corrected_answer == "Hello! How can I help?"


@pytest.fixture
def sample(store):
    """Five conversations with different operators, channels, states, feedback and documents."""
    ids = {}
    ids["pets"] = store.start_conversation(channel="ui", operator="alice")
    t = exchange(store, ids["pets"], "Do you allow pets?", "Yes, dogs [1].", docs=[("pets", 0.82)], confidence=0.9)
    store.add_feedback(t, source="operator", rating="up")

    ids["refund"] = store.start_conversation(channel="api", operator="bob")
    t = exchange(store, ids["refund"], "How do refunds work?", "Within 30 days [1].",
                 docs=[("refunds", 0.61), ("pets", 0.2)], confidence=0.3)
    store.add_feedback(t, source="reviewer", rating="down", reasons=["outdated"], reviewed=True, reviewer="carol",
                       corrected_answer="Within 14 days.")

    ids["weak"] = store.start_conversation(channel="cli")
    exchange(store, ids["weak"], "Is there a 50% discount?", "I don't know.", status="abstained",
             docs=[("prices", 0.21)], confidence=None)

    ids["escalated"] = store.start_conversation(channel="ui", operator="alice")
    exchange(store, ids["escalated"], "I want a human", "Let me hand you over.", docs=[("contact", 0.55)],
             confidence=0.6)
    store.set_status(ids["escalated"], "escalated")

    ids["empty"] = store.start_conversation(channel="api", operator="bob")
    return ids


def test_list_is_newest_first_and_pages(store, sample):
    listed = [c.id for c in store.list_conversations()]
    assert listed == [sample[k] for k in ("empty", "escalated", "weak", "refund", "pets")]
    assert [c.id for c in store.list_conversations(limit=2, offset=1)] == [sample["escalated"], sample["weak"]]
    assert store.count_conversations() == 5
    pets = store.list_conversations(operator="alice")[-1]
    assert (pets.turn_count, pets.last_question, pets.last_answer) == (2, "Do you allow pets?", "Yes, dogs [1].")
    assert (pets.last_confidence, pets.last_top_doc_id, pets.last_answer_status) == (0.9, "pets", "ok")


FILTER_CASES = [
    ({"operator": "alice"}, {"pets", "escalated"}),
    ({"channel": "api"}, {"refund", "empty"}),
    ({"status": "abstained"}, {"weak"}),
    ({"status": "escalated"}, {"escalated"}),
    ({"rating": "down"}, {"refund"}),
    ({"rating": "up"}, {"pets"}),
    ({"reviewed": True}, {"refund"}),
    ({"reviewed": False}, {"pets", "weak", "escalated", "empty"}),
    ({"confidence_below": 0.5}, {"refund"}),
    ({"cites_doc": "pets"}, {"pets", "refund"}),
    ({"score_below": 0.3}, {"weak"}),
    # text: full-text search (revision 0006): words, stemmed, in order; no word characters: a literal substring
    ({"text": "REFUND"}, {"refund"}),
    ({"text": "refunded"}, {"refund"}),
    ({"text": "dogs"}, {"pets"}),
    ({"text": "yes dogs"}, {"pets"}),
    ({"text": "dogs yes"}, set()),
    ({"text": "hand you over"}, {"escalated"}),
    ({"text": "50%"}, {"weak"}),
    ({"text": "0%"}, set()),  # "0" is not a word of "50%"
    ({"text": "%"}, {"weak"}),  # % and _ are literal characters, not wildcards
    ({"text": "_"}, set()),
    ({"text": 'say "hi'}, set()),  # a stray quote is text, not FTS syntax
    ({"operator": "alice", "rating": "up"}, {"pets"}),
    ({"operator": "alice", "rating": "down"}, set()),
]


def test_filters(store, sample):
    for filters, expected in FILTER_CASES:
        found = {c.id for c in store.list_conversations(**filters)}
        assert found == {sample[k] for k in expected}, filters
        assert store.count_conversations(ConversationFilter(**filters)) == len(expected), filters


def test_text_search_follows_deleted_and_changed_turns(store):
    """The full-text index (revision 0006) is kept in step with the turns: a purged conversation is not found any
    more, not even through a reused row id, and a changed text is found by its new words only."""
    import time

    old = store.start_conversation(channel="cli")
    exchange(store, old, "Do you allow pets?", "Yes, dogs [1].")
    time.sleep(0.01)
    assert store.purge(timedelta(microseconds=1)) == 1
    new = store.start_conversation(channel="cli")
    exchange(store, new, "Do you sell cats?", "No [1].")
    assert store.list_conversations(text="pets") == []
    assert [c.id for c in store.list_conversations(text="cats")] == [new]
    with store.connect() as conn:
        conn.execute(text("UPDATE turn SET text = 'Do you sell hamsters?' WHERE text = 'Do you sell cats?'"))
        if conn.dialect.name == "sqlite":  # FTS5 compares its index with the turn table and raises when they differ
            conn.execute(text("INSERT INTO turn_fts(turn_fts) VALUES ('integrity-check')"))
        conn.commit()
    assert store.list_conversations(text="cats") == []
    assert [c.id for c in store.list_conversations(text="hamster")] == [new]


def test_date_range_filter(store, sample):
    now = datetime.now(UTC)
    assert len(store.list_conversations(since=now - timedelta(minutes=5))) == 5
    assert store.list_conversations(since=now + timedelta(minutes=5)) == []
    assert store.list_conversations(until=now - timedelta(minutes=5)) == []
    with store.connect() as conn:  # the pets conversation happened last month
        conn.execute(text("UPDATE conversation SET created_at = :t, updated_at = :t WHERE id = :id"),
                     {"t": (now - timedelta(days=30)).replace(tzinfo=None), "id": _db_id(store, sample["pets"])})
        conn.commit()
    recent = {c.id for c in store.list_conversations(since=now - timedelta(days=7))}
    assert sample["pets"] not in recent and len(recent) == 4
    old = store.list_conversations(since=now - timedelta(days=40), until=now - timedelta(days=20))
    assert [c.id for c in old] == [sample["pets"]]
    with pytest.raises(TypeError, match="unknown conversation filter"):
        store.list_conversations(colour="red")
    with pytest.raises(ValueError):
        store.list_conversations(status="closed")


def _db_id(store: Store, cid: uuid.UUID):
    """A conversation id as a raw SQL parameter (SQLite keeps UUIDs as 32 hex digits)."""
    return cid.hex if store.backend == "sqlite" else cid


def test_stats(store, sample):
    s = store.stats()
    assert (s.conversations, s.turns, s.questions, s.answers) == (5, 8, 4, 4)
    assert s.abstain_rate == pytest.approx(1 / 4) and s.escalation_rate == pytest.approx(1 / 5)
    assert (s.thumbs_up, s.thumbs_down, s.thumbs_ratio) == (1, 1, 0.5)
    assert s.mean_confidence == pytest.approx((0.9 + 0.3 + 0.6) / 3)
    assert {d.doc_id for d in s.top_cited_documents} == {"pets", "refunds", "contact"}
    assert s.top_retrieved_documents[0].model_dump() == {"doc_id": "pets", "answers": 2}
    assert [(w.question, w.best_score) for w in s.weak_retrieval] == [("Is there a 50% discount?", 0.21)]
    assert len(store.stats(weak_score=0.65).weak_retrieval) == 3
    alice = store.stats(operator="alice")
    assert (alice.conversations, alice.answers, alice.thumbs_ratio) == (2, 2, 1.0)
    nothing = store.stats(operator="nobody")
    assert nothing.turns == 0 and nothing.abstain_rate is None and nothing.mean_confidence is None


def test_exports(store, sample):
    buf = io.StringIO()
    assert store.export_jsonl(buf) == 5
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    refund = next(c for c in lines if c["id"] == str(sample["refund"]))
    assert refund["turns"][1]["explanation"]["data"]["method"] == "loo"
    assert refund["turns"][1]["passages"][0]["text"] == "What refunds says."
    assert refund["turns"][1]["feedback"][0]["corrected_answer"] == "Within 14 days."

    buf = io.StringIO()
    assert store.export_csv(buf, operator="alice") == 4
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    answer = next(r for r in rows if r["role"] == "assistant" and r["conversation_id"] == str(sample["pets"]))
    assert (answer["question"], answer["rating"], answer["passage_doc_ids"]) == ("Do you allow pets?", "up", "pets")
    assert float(answer["confidence"]) == 0.9 and answer["base_model"] == "smollm2-135m"

    buf = io.StringIO()
    assert store.export_finetune(buf) == 1
    [example] = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert example["messages"] == [{"role": "user", "content": "How do refunds work?"},
                                   {"role": "assistant", "content": "Within 14 days."}]
    assert [p["doc_id"] for p in example["passages"]] == ["refunds", "pets"]
    assert example["metadata"]["original_answer"] == "Within 30 days [1]." and example["metadata"]["reviewed"]
    assert store.export_finetune(io.StringIO(), operator="alice") == 0


def test_purge_deletes_old_conversations_with_everything_in_them(store, sample):
    old = datetime.now(UTC) - timedelta(days=120)
    with store.connect() as conn:
        for key in ("pets", "refund"):
            conn.execute(text("UPDATE conversation SET updated_at = :t WHERE id = :id"),
                         {"t": old.replace(tzinfo=None), "id": _db_id(store, sample[key])})
        conn.commit()
    assert store.purge(timedelta(days=90)) == 2
    assert store.get_conversation(sample["pets"]) is None and store.get_conversation(sample["refund"]) is None
    with store.connect() as conn:
        counts = {table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                  for table in ("conversation", "turn", "retrieved_passage", "explanation", "feedback")}
        orphans = conn.execute(text("SELECT COUNT(*) FROM turn WHERE conversation_id NOT IN "
                                    "(SELECT id FROM conversation)")).scalar_one()
    # left: weak (2 turns, 1 passage), escalated (2 turns, 1 passage, 1 explanation), empty
    assert counts == {"conversation": 3, "turn": 4, "retrieved_passage": 2, "explanation": 1, "feedback": 0}
    assert orphans == 0
    assert store.purge(timedelta(days=90)) == 0
    with pytest.raises(ValueError):
        store.purge(timedelta(0))


def test_ids_resolve_from_a_prefix_and_history_reads_back(store):
    cid = store.start_conversation(channel="cli")
    for i in range(4):
        exchange(store, cid, f"question {i}", f"answer {i}")
    assert store.resolve_conversation_id(str(cid)[:8]) == cid
    assert store.resolve_conversation_id(str(cid).upper()) == cid
    with pytest.raises(NotFoundError):
        store.resolve_conversation_id("zz")
    history = store.recent_turns(cid, limit=3)
    assert [(t.index, t.text) for t in history] == [(5, "answer 2"), (6, "question 3"), (7, "answer 3")]


def test_json_columns_take_numpy_values_and_non_finite_numbers(store):
    cid = store.start_conversation(channel="ui")
    store.add_user_turn(cid, text="q")
    matrix = np.array([[0.25, np.nan], [np.inf, -1.0]], dtype=np.float32)
    turn_id = store.add_assistant_turn(
        cid, text="a", passages=[{"rank": np.int64(1), "doc_id": "d", "title": "D", "text": "t",
                                  "score": np.float32(0.5)}],
        latency={"generation_ms": np.float64(12.0)}, explanation={"matrix": matrix, "n": np.int64(2)},
        explanation_method="loo", confidence=np.float32(0.25),
    )
    turn = store.get_turn(turn_id)
    assert turn.explanation.data == {"matrix": [[0.25, None], [None, -1.0]], "n": 2}
    assert turn.latency == {"generation_ms": 12.0} and turn.explanation.confidence == 0.25
    assert turn.passages[0].score == 0.5 and turn.best_score == 0.5
    assert store.get_conversation(uuid.uuid4()) is None and store.get_turn(10_000) is None
