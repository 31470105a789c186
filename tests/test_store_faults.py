"""Faults: an unreachable or unusable database, a write that fails halfway, an error turn, a locked SQLite file."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from agent.errors import StoreError
from agent.store import Store
from agent.store.testing import empty_database


def test_an_unreachable_server_names_the_url_with_the_password_masked():
    url = "postgresql+psycopg://moments:s3cr3t-pw@127.0.0.1:1/moments"
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        Store(url)
    message = str(caught.value)
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in repr(caught.value.__cause__ or "")
    assert "postgresql+psycopg://moments:***@127.0.0.1:1/moments" in message
    assert "MOMENTS_DATABASE_URL" in message  # says what to do
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://moments:s3cr3t-pw@no-such-host.invalid:5432/moments",  # a host that does not resolve
    "postgresql://postgres:s3cr3t-pw@127.0.0.1:5432/no_such_database_here",  # plain postgresql:// means psycopg
])
def test_other_unreachable_databases_are_store_errors_too(url):
    with pytest.raises(StoreError, match="cannot reach the conversation store at postgresql") as caught:
        Store(url)
    assert "s3cr3t-pw" not in str(caught.value) and ":***@" in str(caught.value)


def test_unusable_urls_and_paths_raise_store_errors(tmp_path):
    with pytest.raises(StoreError, match="not a database URL"):
        Store("this is not a url")
    with pytest.raises(StoreError, match="unsupported database"):
        Store("mysql://root:pw@localhost/db")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store(f"sqlite:///{blocker / 'sub' / 'moments.db'}")


def test_a_schema_newer_than_the_code_is_refused(db_url):
    with Store(db_url) as s, s.connect() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        conn.commit()
    with pytest.raises(StoreError, match="revision 9999, newer"):
        Store(db_url)


def _row_counts(store: Store) -> dict[str, int]:
    with store.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                for t in ("conversation", "turn", "retrieved_passage", "explanation", "feedback")}


def test_a_failure_inside_a_write_leaves_nothing_half_written(store):
    cid = store.start_conversation(channel="ui")
    store.add_user_turn(cid, text="Where is my parcel?")
    before = _row_counts(store)
    updated = store.get_conversation(cid).updated_at
    good = [{"rank": 1, "doc_id": "a", "text": "A", "score": 0.5}]
    # two passages with the same rank: the database rejects the second after the turn and the first were written
    duplicate_rank = [*good, {"rank": 1, "doc_id": "b", "text": "B", "score": 0.4}]
    with pytest.raises(StoreError, match="could not store the answer"):
        store.add_assistant_turn(cid, text="It is on its way.", passages=duplicate_rank,
                                 explanation={"tokens": ["It"]}, explanation_method="loo")
    assert _row_counts(store) == before
    assert store.get_conversation(cid).updated_at == updated
    # data that cannot be stored at all is refused before the transaction starts
    with pytest.raises(TypeError, match="cannot store a object"):
        store.add_assistant_turn(cid, text="It is on its way.", passages=good, explanation={"tensor": object()})
    assert _row_counts(store) == before
    turn_id = store.add_assistant_turn(cid, text="It is on its way.", passages=good)  # the conversation goes on
    assert [t.index for t in store.get_conversation(cid).turns] == [0, 1]
    assert store.get_turn(turn_id).index == 1


def test_a_failure_after_the_first_statements_rolls_back_everything(store, monkeypatch):
    """A crash between writing the turn and its explanation (simulated) leaves no partial turn."""
    from agent.store import crud

    cid = store.start_conversation(channel="ui")
    store.add_user_turn(cid, text="Where is my parcel?")
    before = _row_counts(store)

    def crash(**kwargs):
        raise RuntimeError("attribution store crashed")

    monkeypatch.setattr(crud, "upsert_explanation", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        store.add_assistant_turn(cid, text="On its way.", passages=[{"rank": 1, "doc_id": "a", "text": "A",
                                                                      "score": 0.5}],
                                 explanation={"x": 1}, explanation_method="loo")
    assert _row_counts(store) == before


def test_an_error_during_generation_is_stored_and_the_conversation_continues(store):
    cid = store.start_conversation(channel="ui")
    store.add_user_turn(cid, text="Can I change my booking?")
    failed = store.add_assistant_turn(cid, text="", status="error", error="RuntimeError: generator crashed",
                                      latency={"retrieval_ms": 9.0}, versions={}, passages=[])
    store.add_user_turn(cid, text="Hello?")
    ok = store.add_assistant_turn(cid, text="Yes, up to 24 hours before [1].",
                                  passages=[{"rank": 1, "doc_id": "booking", "text": "...", "score": 0.7}])
    c = store.get_conversation(cid)
    assert [(t.role, t.status) for t in c.turns] == [("user", "ok"), ("assistant", "error"), ("user", "ok"),
                                                     ("assistant", "ok")]
    assert c.turns[1].id == failed and c.turns[1].error == "RuntimeError: generator crashed"
    assert c.turns[3].id == ok and c.turns[3].reply_to_id == c.turns[2].id
    assert c.status == "open" and store.stats().error_rate == 0.5


def _hold_write_lock(path, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE conversation SET title = title")
    locked.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_a_locked_sqlite_database_makes_writers_wait_not_fail(tmp_path):
    path = tmp_path / "moments.db"
    url = f"sqlite:///{path}"
    with Store(url, busy_timeout_s=0.05) as store:  # a short busy timeout: the store's own retries must cover it
        cid = store.start_conversation(channel="ui")
        locked = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, 0.8, locked))
        holder.start()
        assert locked.wait(5)
        started = time.monotonic()
        assert store.list_conversations()[0].id == cid  # readers are not blocked (WAL)
        turn_id = store.add_user_turn(cid, text="Still there?")  # waits for the lock, then commits
        waited = time.monotonic() - started
        holder.join()
        assert waited > 0.3
        assert store.get_turn(turn_id).text == "Still there?"


def test_a_lock_held_too_long_gives_a_clear_error_without_database_is_locked(tmp_path):
    path = tmp_path / "moments.db"
    with Store(f"sqlite:///{path}", busy_timeout_s=0.05, retry_deadline_s=0.3) as store:
        cid = store.start_conversation(channel="ui")
        locked = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, 1.2, locked))
        holder.start()
        assert locked.wait(5)
        with pytest.raises(StoreError) as caught:
            store.add_user_turn(cid, text="hello")
        holder.join()
        assert "stayed busy" in str(caught.value) and "database is locked" not in str(caught.value)
        assert store.get_conversation(cid).turn_count == 0
        store.add_user_turn(cid, text="hello")  # and it works once the lock is gone


@pytest.mark.postgres
def test_a_dropped_postgresql_connection_is_replaced_without_losing_the_write(tmp_path):
    import psycopg

    from agent.store.testing import TEST_POSTGRES_URL, libpq_url

    with empty_database("postgresql", tmp_path) as url, Store(url) as store:
        cid = store.start_conversation(channel="api")
        with store.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(libpq_url(TEST_POSTGRES_URL), autocommit=True) as admin:  # e.g. a server restart
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        turn_id = store.add_user_turn(cid, text="still there?")
        assert store.get_turn(turn_id).text == "still there?"
