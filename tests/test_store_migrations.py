"""Alembic: a database created at the first revision keeps its data when the app upgrades it; the revisions and the
SQLModel models describe the same schema; downgrades work."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agent.store import Store
from agent.store.db import make_engine, writer
from agent.store.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from agent.store.models import StoreModel
from agent.store.textsearch import is_search_object

# The 0001 schema as plain table descriptions (what an old version of the app wrote).
conversation = sa.table(
    "conversation", sa.column("id", sa.Uuid()), sa.column("channel"), sa.column("operator"), sa.column("title"),
    sa.column("status"), sa.column("tags", sa.JSON()), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
turn = sa.table(
    "turn", sa.column("id", sa.Integer()), sa.column("conversation_id", sa.Uuid()), sa.column("index"),
    sa.column("role"), sa.column("text"), sa.column("status"), sa.column("error"), sa.column("latency", sa.JSON()),
    sa.column("versions", sa.JSON()), sa.column("reply_to_id"), sa.column("created_at", sa.DateTime(timezone=True)),
)
passage = sa.table(
    "retrieved_passage", sa.column("id"), sa.column("turn_id"), sa.column("rank"), sa.column("doc_id"),
    sa.column("passage_id"), sa.column("title"), sa.column("text"), sa.column("score"), sa.column("source"),
    sa.column("line"),
)
explanation = sa.table(
    "explanation", sa.column("id"), sa.column("turn_id"), sa.column("method"), sa.column("data", sa.JSON()),
    sa.column("confidence"), sa.column("grounded_share"), sa.column("top_doc_id"),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
feedback = sa.table(
    "feedback", sa.column("id"), sa.column("turn_id"), sa.column("source"), sa.column("rating"),
    sa.column("reasons", sa.JSON()), sa.column("comment"), sa.column("corrected_answer"), sa.column("reviewed"),
    sa.column("reviewer"), sa.column("created_at", sa.DateTime(timezone=True)), sa.column("reviewed_at"),
)


def _at(engine: sa.Engine, revision: str) -> None:
    with writer(engine).begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def test_a_database_created_at_the_first_revision_keeps_its_data_when_upgraded(db_url):
    engine = make_engine(db_url)
    try:
        _at(engine, "0001")
        cid = uuid.uuid4()
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        stamp = when.replace(tzinfo=None) if engine.dialect.name == "sqlite" else when
        with writer(engine).begin() as conn:
            assert current_revision(conn) == "0001"
            conn.execute(conversation.insert(), [{
                "id": cid, "channel": "ui", "operator": "alice", "title": "Pets?", "status": "open",
                "tags": ["legacy"], "created_at": stamp, "updated_at": stamp}])
            conn.execute(turn.insert(), [
                {"id": 1, "conversation_id": cid, "index": 0, "role": "user", "text": "Pets?", "status": "ok",
                 "error": None, "latency": {}, "versions": {}, "reply_to_id": None, "created_at": stamp},
                {"id": 2, "conversation_id": cid, "index": 1, "role": "assistant", "text": "Yes [1].",
                 "status": "ok", "error": None, "latency": {"generation_ms": 5.0}, "versions": {"base_model": "m"},
                 "reply_to_id": 1, "created_at": stamp},
            ])
            conn.execute(passage.insert(), [
                {"id": 1, "turn_id": 2, "rank": 1, "doc_id": "pets", "passage_id": "pets#0", "title": "Pets",
                 "text": "Dogs welcome.", "score": 0.64, "source": None, "line": None},
                {"id": 2, "turn_id": 2, "rank": 2, "doc_id": "rooms", "passage_id": None, "title": "Rooms",
                 "text": "Rooms.", "score": 0.31, "source": None, "line": None},
            ])
            conn.execute(explanation.insert(), [{
                "id": 1, "turn_id": 2, "method": "loo", "data": {"tokens": ["Yes"]}, "confidence": 0.7,
                "grounded_share": 1.0, "top_doc_id": "pets", "created_at": stamp}])
            conn.execute(feedback.insert(), [{
                "id": 1, "turn_id": 2, "source": "operator", "rating": "up", "reasons": [], "comment": None,
                "corrected_answer": None, "reviewed": False, "reviewer": None, "created_at": stamp,
                "reviewed_at": None}])
            if engine.dialect.name == "postgresql":  # explicit ids above: move the sequences past them
                for table in ("turn", "retrieved_passage", "explanation", "feedback"):
                    conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)"))
    finally:
        engine.dispose()

    with Store(db_url) as store:  # the app upgrades the schema on start
        assert store.schema_revision() == head_revision() != "0001"
        c = store.get_conversation(cid)
        assert (c.title, c.operator, c.tags, c.created_at) == ("Pets?", "alice", ["legacy"], when)
        assert [(t.index, t.role, t.text) for t in c.turns] == [(0, "user", "Pets?"), (1, "assistant", "Yes [1].")]
        answer = c.turns[1]
        assert answer.best_score == pytest.approx(0.64)  # revision 0002 backfilled it from the passages
        assert [x.id for x in store.list_conversations(text="pets")] == [cid]  # 0006 indexed the old turns' text
        assert [p.text for p in answer.passages] == ["Dogs welcome.", "Rooms."]
        assert answer.explanation.data == {"tokens": ["Yes"]} and answer.feedback[0].rating == "up"
        assert answer.versions == {"base_model": "m"} and answer.reply_to_id == 1
        assert [w.turn_id for w in store.stats(weak_score=0.7).weak_retrieval] == [2]
        store.add_user_turn(cid, text="And cats?")  # and the old conversation goes on
        assert [t.index for t in store.get_conversation(cid).turns] == [0, 1, 2]


def test_the_revisions_build_exactly_the_schema_the_models_describe(db_url):
    with Store(db_url) as store, store.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _model_object})
        diff = compare_metadata(context, StoreModel.metadata)
    assert diff == []


def _model_object(name, type_, parent_names) -> bool:
    """Everything but the full-text index's own objects (FTS5 tables, the GIN index), which no model describes."""
    return not is_search_object(name, type_, parent_names)


def test_downgrade_to_the_first_revision_and_back(db_url):
    with Store(db_url) as store:
        cid = store.start_conversation(channel="cli")
        store.add_user_turn(cid, text="hello")
    engine = make_engine(db_url)
    try:
        with writer(engine).begin() as conn:
            downgrade(conn, "0001")
        with engine.connect() as conn:
            assert current_revision(conn) == "0001"
            assert "best_score" not in {c["name"] for c in sa.inspect(conn).get_columns("turn")}
            assert conn.execute(sa.text("SELECT COUNT(*) FROM turn")).scalar_one() == 1
        with writer(engine).begin() as conn:
            upgrade(conn)
            assert current_revision(conn) == head_revision()
    finally:
        engine.dispose()
    with Store(db_url) as store:
        assert store.get_conversation(cid).turns[0].text == "hello"


def test_replicas_starting_together_upgrade_the_schema_once(db_url):
    import threading

    revisions, errors = [], []

    def start() -> None:
        try:
            with Store(db_url) as store:
                revisions.append(store.schema_revision())
        except Exception as exc:  # noqa: BLE001 - any failure in a worker thread is reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and revisions == [head_revision()] * 4
