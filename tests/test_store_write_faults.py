"""A store that stops taking writes, before or during a turn: the customer still gets the answer, the turn is stored
whole or reported as not stored (``result.stored`` / ``not_stored``), never a question without its answer.

Faults are real: an SQLite file made immutable with ``chattr +i`` (root ignores ``chmod``), and a PostgreSQL server
stopped and started again (a private server in a temporary folder, so that the shared one on port 5432 that other
test sessions use is never stopped). The turns themselves come from a scripted agent (no model: what is under test
is the runner and the store); ``tests/test_store_faults_cli.py`` runs the real ``moments ask`` against the same
faults.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from agent.conversation import ConversationRunner
from agent.errors import StoreError
from agent.pipeline import Agent, TurnEvent
from agent.store import Store
from agent.turn import TurnResult
from retrieval.types import Hit, Passage
from tests.conftest import make_settings

ANSWER = "You have 30 days to return an item [1]."
PASSAGE = Passage(id="returns#0", doc_id="returns", title="Returns", text="Items can be returned within 30 days.")


class ScriptedAgent(Agent):
    """An agent that answers every question with :data:`ANSWER` (tokens, then ``done``) and calls ``midway`` after
    the first token: the fault strikes while the turn is in flight."""

    def __init__(self, home: Path, midway: Callable[[], None] | None = None, fail: bool = False) -> None:
        super().__init__(make_settings(home, threads=0), generator=object(), index=object())
        self.midway, self.fail = midway, fail

    def stream(self, question, history=(), *, explain=False, method="shapley") -> Iterator[TurnEvent]:
        hits = [Hit(PASSAGE, 0.71, 1)]
        yield TurnEvent("retrieved", hits=hits)
        words = ANSWER.split(" ")
        for i, word in enumerate(words):
            yield TurnEvent("token", text=word if i == 0 else " " + word)
            if i == 0 and self.midway is not None:
                self.midway()
            if i == 1 and self.fail:
                raise RuntimeError("generator crashed")
        yield TurnEvent("done", result=TurnResult(question=question, answer=ANSWER, hits=hits,
                                                  timings={"retrieval_ms": 1.0}))


def _counts(store: Store) -> dict[str, int]:
    with store.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                for t in ("conversation", "turn", "retrieved_passage")}


# --- SQLite made read-only ----------------------------------------------------------------------------------------


def _chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


def _database_files(path: Path) -> list[Path]:
    """The SQLite file and its write-ahead log (WAL mode writes go to the log first). Not the shared-memory file:
    SQLite writes it through a memory map, and an immutable one kills the process (SIGBUS), not just the write."""
    return [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """The SQLite database at ``path`` cannot be written, even by root (nor through open files), until the block
    ends."""
    files = _database_files(path)
    for p in files:
        _chattr("+i", p)
    try:
        yield
    finally:
        for p in files:
            _chattr("-i", p)


@pytest.fixture
def sqlite_file(tmp_path) -> Iterator[Path]:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    path = tmp_path / "moments.db"
    Store(f"sqlite:///{path}").close()
    try:
        _chattr("+i", path)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"this file system does not take chattr +i: {exc.stderr.decode().strip()}")
    _chattr("-i", path)
    yield path
    for p in _database_files(path):  # whatever a failed test left
        subprocess.run(["chattr", "-i", str(p)], check=False, capture_output=True)


def _final(events: Iterator[TurnEvent]) -> tuple[str, TurnResult]:
    """What the customer saw (the streamed tokens) and the done event's result."""
    shown, result = "", None
    for event in events:
        if event.kind == "token":
            shown += event.text
        elif event.kind == "done":
            result = event.result
    assert result is not None
    return shown, result


def test_a_read_only_sqlite_store_answers_and_says_the_turn_was_not_stored(sqlite_file, tmp_path):
    store = Store(f"sqlite:///{sqlite_file}")
    runner = ConversationRunner(ScriptedAgent(tmp_path), store)
    cid = runner.start(channel="cli")
    before = _counts(store)
    with immutable(sqlite_file):
        shown, result = _final(runner.stream(cid, "How long do I have to return an item?"))
        assert shown == ANSWER and result.answer == ANSWER  # the customer has the answer
        assert result.stored is False and result.turn_id is None
        assert "refuses writes" in result.not_stored and "writable" in result.not_stored
        assert "database server is running" not in result.not_stored  # SQLite has no server
        assert result.to_dict()["stored"] is False and result.to_dict()["not_stored"] == result.not_stored
        # opening a new conversation is refused too: the turn is still answered, and says why it is not stored
        new, why = runner.open(channel="cli")
        assert new is None and "refuses writes" in why
        _, unopened = _final(runner.stream(new, "And for electronics?", not_stored=why))
        assert unopened.answer == ANSWER and not unopened.stored and unopened.not_stored == why
        assert _counts(store) == before  # nothing half-written
    _, again = _final(runner.stream(cid, "How long do I have to return an item?"))  # writable again
    assert again.stored and again.turn_id is not None and again.not_stored is None
    turns = store.get_conversation(cid).turns
    assert [(t.role, t.text) for t in turns] == [("user", "How long do I have to return an item?"),
                                                 ("assistant", ANSWER)]
    assert turns[1].reply_to_id == turns[0].id
    store.close()


def test_a_store_made_read_only_mid_turn_leaves_no_orphan_question(sqlite_file, tmp_path):
    store = Store(f"sqlite:///{sqlite_file}")
    cid = store.start_conversation(channel="ui")
    lock = immutable(sqlite_file)
    runner = ConversationRunner(ScriptedAgent(tmp_path, midway=lock.__enter__), store)
    try:
        shown, result = _final(runner.stream(cid, "Where is my parcel?"))
    finally:
        lock.__exit__(None, None, None)
    assert shown == ANSWER and result.answer == ANSWER and not result.stored and "refuses writes" in result.not_stored
    assert store.get_conversation(cid).turns == []  # neither the question nor the answer: no orphan user turn


def test_a_turn_that_fails_is_stored_with_its_question_or_not_at_all(sqlite_file, tmp_path):
    store = Store(f"sqlite:///{sqlite_file}")
    cid = store.start_conversation(channel="api")
    runner = ConversationRunner(ScriptedAgent(tmp_path, fail=True), store)
    with pytest.raises(RuntimeError, match="generator crashed"):
        _final(runner.stream(cid, "Can I change my booking?"))
    assert [(t.role, t.status) for t in store.get_conversation(cid).turns] == [("user", "ok"), ("assistant", "error")]
    with immutable(sqlite_file), pytest.raises(RuntimeError, match="generator crashed"):  # the original error,
        _final(runner.stream(cid, "Hello?"))  # not the store's
    assert len(store.get_conversation(cid).turns) == 2


def test_a_client_that_leaves_mid_turn_leaves_nothing_behind(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'moments.db'}") as store:
        cid = store.start_conversation(channel="api")
        events = ConversationRunner(ScriptedAgent(tmp_path), store).stream(cid, "Where is my parcel?")
        assert next(events).kind == "retrieved" and next(events).kind == "token"
        events.close()  # the client disconnected: the turn was never answered, so it is not kept
        assert store.get_conversation(cid).turns == []


def test_the_chat_tab_shows_the_answer_and_says_it_was_not_stored(sqlite_file, tmp_path):
    from ui.app import MomentsApp, new_state

    settings = make_settings(tmp_path, threads=0, database_url=f"sqlite:///{sqlite_file}")
    store = Store(settings.db_url)
    app = MomentsApp(settings, ScriptedAgent(tmp_path), store)
    with immutable(sqlite_file):  # even the conversation cannot be opened
        *_, last = app.chat("How long do I have to return an item?", [], new_state(), False)
        _, messages, _, _, state, status, _, _ = last
        assert "30 days" in messages[-1]["content"] and "NOT stored" in status and "refuses writes" in status
        assert state["conversation_id"] is None and state["turn_ids"] == {}
        out = app.ask("How long do I have to return an item?")  # the typed API the same way
        assert out["answer"] == ANSWER and out["stored"] is False and "refuses writes" in out["not_stored"]
        assert out["conversation_id"] == "" and out["turn_id"] is None
    out = app.ask("How long do I have to return an item?")
    assert out["stored"] is True and out["not_stored"] == "" and out["turn_id"] is not None
    store.close()


# --- PostgreSQL stopped and started again ---------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL server of its own (initdb in a temporary folder, run as the ``postgres`` user), to stop and
    start without touching the shared server."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="moments-pg-"))
        self.data, self.port = self.folder / "data", _free_port()
        shutil.chown(self.folder, "postgres")
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.folder / "log", "-w", "start")

    def stop(self) -> None:
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15's initdb and runuser (Debian's postgresql-15)")
    try:
        server = PrivatePostgres()
        server.start()
    except (subprocess.CalledProcessError, LookupError, PermissionError) as exc:
        pytest.skip(f"cannot run a private PostgreSQL server here: {exc}")
    try:
        yield server
    finally:
        server.remove()


@pytest.mark.postgres
def test_postgresql_stopped_mid_run_answers_and_keeps_every_acknowledged_turn(private_postgres, tmp_path):
    server = private_postgres
    store = Store(server.url, retry_deadline_s=2.0)
    runner = ConversationRunner(ScriptedAgent(tmp_path), store)
    cid = runner.start(channel="api")
    acknowledged: list[int] = []
    results = []
    try:
        for i in range(3):
            results.append(_final(runner.stream(cid, f"question {i}"))[1])
        server.stop()  # the server goes away between turns ...
        started = time.monotonic()
        results.append(_final(runner.stream(cid, "question 3"))[1])
        assert time.monotonic() - started < 30
        new, why = runner.open(channel="api")
        assert new is None and "cannot reach the conversation store" in why
    finally:
        server.start()  # ... and comes back
    lock = _Stopper(server)
    runner.agent = ScriptedAgent(tmp_path, midway=lock.stop)  # ... and away again while a turn is in flight
    try:
        results.append(_final(runner.stream(cid, "question 4"))[1])
    finally:
        lock.restart()
    runner.agent = ScriptedAgent(tmp_path)
    results.append(_final(runner.stream(cid, "question 5"))[1])  # the pool reconnects by itself
    assert all(r.answer == ANSWER for r in results)  # every customer got the answer
    assert [r.stored for r in results] == [True, True, True, False, False, True]
    for r in results:
        if r.stored:
            acknowledged.append(r.turn_id)
        else:
            assert "cannot reach the conversation store" in r.not_stored and "MOMENTS_DATABASE_URL" in r.not_stored
    with Store(server.url) as fresh:  # read back from a new connection: every acknowledged turn, nothing else
        turns = fresh.get_conversation(cid).turns
        answers = [t.id for t in turns if t.role == "assistant"]
        assert answers == acknowledged
        assert [t.text for t in turns if t.role == "user"] == ["question 0", "question 1", "question 2",
                                                                "question 5"]
        assert _counts(fresh)["retrieved_passage"] == len(acknowledged)
    store.close()


class _Stopper:
    """Stops the server once (from inside a turn) and starts it again."""

    def __init__(self, server: PrivatePostgres) -> None:
        self.server, self.stopped = server, False

    def stop(self) -> None:
        self.server.stop()
        self.stopped = True

    def restart(self) -> None:
        if self.stopped:
            self.server.start()


def test_an_unknown_conversation_is_still_the_callers_error(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'moments.db'}") as store:
        runner = ConversationRunner(ScriptedAgent(tmp_path), store)
        with pytest.raises(StoreError, match="no conversation"):
            _final(runner.stream(uuid.uuid4(), "Where is my parcel?"))
