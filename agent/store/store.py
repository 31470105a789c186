"""The :class:`Store`: every conversation turn, its passages, explanation and feedback, kept in SQLite or PostgreSQL.

Contract:

* Opening a store connects, and upgrades the schema to the newest revision (an old database keeps its data). An
  unreachable database raises :class:`~agent.errors.StoreError` naming the URL (password masked) and what to do.
* Every public write is one transaction, committed before the method returns: what it acknowledged (returned an id
  for) is kept; what raised left nothing behind. Contention (SQLite's write lock, PostgreSQL serialization failures
  or deadlocks) is retried with backoff inside the store for up to ``retry_deadline_s``; callers never see
  "database is locked".
* Turn indexes are allocated under a lock on the conversation (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR NO KEY
  UPDATE`` on PostgreSQL) and guarded by a unique (conversation, index) constraint.
* Invalid arguments (unknown status, channel, rating...) raise :class:`InvalidInputError` (a ``StoreError`` and a
  ``ValueError``) before anything is written; a missing conversation or turn raises :class:`NotFoundError` (a
  ``StoreError`` and a ``LookupError``). Values that cannot be stored as JSON at all raise ``TypeError``.
* Reads return public models (``ConversationPublic``, ``ConversationDetail``, ``TurnPublic``), never ORM objects.
* A ``Store`` is safe to share between threads (one engine, a session per call).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from functools import lru_cache
from typing import IO, Any, Self, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from agent.errors import StoreError
from agent.store import crud, export, migrate, queries
from agent.store.db import (
    make_engine,
    mask_url,
    parse_url,
    retryable,
    unreachable,
    writer,
)
from agent.store.errors import InvalidInputError, NotFoundError
from agent.store.models import (
    CONVERSATION_STATUSES,
    AssistantTurnCreate,
    Conversation,
    ConversationCreate,
    ConversationDetail,
    ConversationPublic,
    ExplanationCreate,
    FeedbackCreate,
    PassageCreate,
    Turn,
    TurnPublic,
    utcnow,
)
from agent.store.queries import ConversationFilter

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
ConversationId = uuid.UUID | str


@lru_cache(maxsize=1)
def _revisions() -> tuple[str, frozenset[str]]:
    return migrate.head_revision(), frozenset(migrate.known_revisions())


def _uuid(value: ConversationId) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInputError(f"{value!r} is not a conversation id (a UUID)") from None


def _validated(model: type[M], data: Any, what: str) -> M:
    """``model`` validated from ``data``; invalid values raise :class:`InvalidInputError` saying which and why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise InvalidInputError(f"invalid {what}: {problems}") from None


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


class Store:
    """The conversation store at ``url`` (an SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, upgrade: bool = True, busy_timeout_s: float = 5.0,
                 retry_deadline_s: float = 30.0) -> None:
        #: the URL with its password masked: safe to show and log
        self.url = mask_url(url)
        self.backend = parse_url(url).get_backend_name()
        self.retry_deadline_s = retry_deadline_s
        self._engine = make_engine(url, busy_timeout_s=busy_timeout_s)
        self._writer = writer(self._engine)
        if upgrade:
            try:
                self._retry("open the conversation store", self._upgrade)
            except BaseException:
                self._engine.dispose()
                raise

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        """Close the store's connections (it reconnects if used again)."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _upgrade(self) -> None:
        head, known = _revisions()
        with self._engine.connect() as connection:
            current = migrate.current_revision(connection)
        if current == head:
            return
        if current is not None and current not in known:
            raise StoreError(
                f"the conversation store at {self.url} has schema revision {current}, newer than this version of "
                f"Moments knows (up to {head}); upgrade Moments, or point MOMENTS_DATABASE_URL at another database"
            )
        with self._writer.begin() as connection:
            migrate.upgrade(connection, "head")
        log.info("conversation store %s upgraded from revision %s to %s", self.url, current, head)

    def _error(self, what: str, exc: SQLAlchemyError) -> StoreError:
        if unreachable(exc):
            return StoreError(
                f"cannot reach the conversation store at {self.url} ({_reason(exc)}). Check that the database "
                "server is running and that the URL, user and password are right (MOMENTS_DATABASE_URL or --db); "
                "unset MOMENTS_DATABASE_URL to use the SQLite file in the data home."
            )
        if retryable(exc):
            return StoreError(
                f"could not {what}: the conversation store at {self.url} stayed busy for {self.retry_deadline_s:.0f} s "
                "(another process holds its write lock); try again, or stop the process that holds it"
            )
        return StoreError(f"could not {what} in the conversation store at {self.url}: {_reason(exc)}")

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a whole transaction), again with backoff while the database reports contention."""
        deadline = time.monotonic() + self.retry_deadline_s
        attempt = 0
        while True:
            try:
                return fn()
            except SQLAlchemyError as exc:
                attempt += 1
                if not retryable(exc) or time.monotonic() >= deadline:
                    raise self._error(what, exc) from exc
                delay = min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5)
                log.debug("%s: %s; retry %d in %.3f s", what, _reason(exc), attempt, delay)
                time.sleep(delay)

    def _write(self, what: str, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction and commit it (retried as a whole on contention)."""

        def transaction() -> T:
            with Session(self._writer, expire_on_commit=False) as session:
                result = fn(session)
                session.commit()
                return result

        return self._retry(what, transaction)

    def _read(self, what: str, fn: Callable[[Session], T]) -> T:
        def transaction() -> T:
            with Session(self._engine) as session:
                return fn(session)

        return self._retry(what, transaction)

    # --- writes -----------------------------------------------------------------------------------------------

    def start_conversation(self, *, channel: str, operator: str | None = None, title: str | None = None,
                           tags: Sequence[str] | None = None) -> uuid.UUID:
        """Open a conversation (``channel``: ui, api or cli); untitled, it takes its first question as title."""
        conversation_in = _validated(ConversationCreate, {"channel": channel, "operator": operator, "title": title,
                                                         "tags": list(tags or [])}, "conversation")

        def write(session: Session) -> uuid.UUID:
            return crud.create_conversation(session=session, conversation_in=conversation_in).id

        return self._write("start a conversation", write)

    def add_user_turn(self, conversation_id: ConversationId, *, text: str) -> int:
        """Record the user's message (committed when this returns, before any generation); its turn id."""
        cid = _uuid(conversation_id)

        def write(session: Session) -> int:
            conversation = crud.lock_conversation(session=session, conversation_id=cid)
            turn = crud.create_user_turn(session=session, conversation=conversation, text=text)
            assert turn.id is not None
            return turn.id

        return self._write("store the user's message", write)

    def add_assistant_turn(
        self,
        conversation_id: ConversationId,
        *,
        text: str,
        status: str = "ok",
        error: str | None = None,
        latency: dict[str, Any] | None = None,
        versions: dict[str, Any] | None = None,
        passages: Iterable[dict[str, Any]] = (),
        explanation: dict[str, Any] | None = None,
        explanation_method: str | None = None,
        confidence: float | None = None,
        grounded_share: float | None = None,
        top_doc_id: str | None = None,
        reply_to: int | None = None,
    ) -> int:
        """Record an answer with its passages (and explanation, if ready) in one transaction; its turn id.

        ``status``: ok, abstained (marks an open conversation 'abstained') or error (``error`` says why).
        ``passages``: retrieval hits as dicts (rank, doc_id, title, text, score; optional id, source, line).
        ``reply_to``: the user turn answered (default: the conversation's latest user turn).
        """
        cid = _uuid(conversation_id)
        turn_in = _validated(AssistantTurnCreate, {"text": text, "status": status, "error": error, "latency": latency,
                                                   "versions": versions, "reply_to_id": reply_to}, "answer")
        passages_in = [_validated(PassageCreate, p, "passage") for p in passages]
        explanation_in = None
        if explanation is not None:
            explanation_in = _validated(ExplanationCreate, {
                "method": explanation_method or "unspecified", "data": explanation, "confidence": confidence,
                "grounded_share": grounded_share, "top_doc_id": top_doc_id}, "explanation")

        def write(session: Session) -> int:
            conversation = crud.lock_conversation(session=session, conversation_id=cid)
            turn = crud.create_assistant_turn(session=session, conversation=conversation, turn_in=turn_in,
                                              passages=passages_in, explanation_in=explanation_in)
            assert turn.id is not None
            return turn.id

        return self._write("store the answer", write)

    def add_explanation(self, turn_id: int, *, method: str, explanation: dict[str, Any],
                        confidence: float | None = None, grounded_share: float | None = None,
                        top_doc_id: str | None = None, attribution_ms: float | None = None) -> int:
        """Store (or replace) a turn's explanation when attribution finishes after the turn; its id.

        ``attribution_ms`` is merged into the turn's latency breakdown.
        """
        explanation_in = _validated(ExplanationCreate, {
            "method": method, "data": explanation, "confidence": confidence, "grounded_share": grounded_share,
            "top_doc_id": top_doc_id}, "explanation")

        def write(session: Session) -> int:
            turn = crud.get_turn(session=session, turn_id=turn_id)
            row = crud.upsert_explanation(session=session, turn_id=turn_id, explanation_in=explanation_in)
            if attribution_ms is not None:
                crud.add_latency(session=session, turn=turn, attribution_ms=float(attribution_ms))
            assert row.id is not None
            return row.id

        return self._write("store the explanation", write)

    def add_feedback(self, turn_id: int, *, source: str, rating: str | None = None, reasons: Iterable[str] = (),
                     comment: str | None = None, corrected_answer: str | None = None, reviewed: bool = False,
                     reviewer: str | None = None) -> int:
        """Record feedback on a turn (``source``: operator, reviewer or api; ``rating``: up, down or None); its id.

        ``reasons``: any of 'wrong source', 'incomplete', 'outdated', 'other'.
        """
        feedback_in = _validated(FeedbackCreate, {
            "source": source, "rating": rating, "reasons": list(reasons), "comment": comment,
            "corrected_answer": corrected_answer, "reviewed": reviewed, "reviewer": reviewer}, "feedback")

        def write(session: Session) -> int:
            row = crud.create_feedback(session=session, turn_id=turn_id, feedback_in=feedback_in)
            assert row.id is not None
            return row.id

        return self._write("store the feedback", write)

    def review_feedback(self, feedback_id: int, *, reviewer: str, corrected_answer: str | None = None,
                        comment: str | None = None) -> None:
        """Mark feedback reviewed by ``reviewer`` (optionally with a corrected answer)."""

        def write(session: Session) -> None:
            crud.review_feedback(session=session, feedback_id=feedback_id, reviewer=reviewer,
                                 corrected_answer=corrected_answer, comment=comment)

        self._write("review the feedback", write)

    def set_status(self, conversation_id: ConversationId, status: str) -> None:
        """Set a conversation's status: open, abstained, escalated or resolved."""
        if status not in CONVERSATION_STATUSES:
            allowed = ", ".join(CONVERSATION_STATUSES)
            raise InvalidInputError(f"unknown conversation status {status!r}; use one of {allowed}")
        cid = _uuid(conversation_id)
        self._write("set the conversation status",
                    lambda session: crud.set_conversation_status(session=session, conversation_id=cid, status=status))

    def purge(self, older_than: timedelta) -> int:
        """Delete conversations last active more than ``older_than`` ago, with everything in them; how many."""
        if older_than <= timedelta(0):
            raise InvalidInputError("older_than must be a positive duration, e.g. timedelta(days=90)")
        cutoff = utcnow() - older_than
        n = self._write("purge old conversations",
                        lambda session: crud.delete_conversations_before(session=session, cutoff=cutoff))
        log.info("purged %d conversations last active before %s", n, cutoff.isoformat())
        return n

    # --- reads ------------------------------------------------------------------------------------------------

    def list_conversations(self, filters: ConversationFilter | None = None, *, limit: int = 50, offset: int = 0,
                           **filter_kwargs: Any) -> list[ConversationPublic]:
        """Matching conversations, most recently active first, with a summary of their turns.

        Filters: a :class:`ConversationFilter` and/or its fields as keywords (since, until, operator, channel,
        status, rating, reviewed, confidence_below, cites_doc, score_below, text).
        """
        f = ConversationFilter.of(filters, **filter_kwargs)

        def read(session: Session) -> list[ConversationPublic]:
            ids = queries.conversation_ids(session=session, filters=f, limit=limit, offset=offset)
            return queries.summaries(session=session, ids=ids)

        return self._read("list conversations", read)

    def count_conversations(self, filters: ConversationFilter | None = None, **filter_kwargs: Any) -> int:
        f = ConversationFilter.of(filters, **filter_kwargs)
        statement = select(func.count()).select_from(Conversation).where(*queries.filter_clauses(f))
        return self._read("count conversations", lambda session: session.exec(statement).one())

    def get_conversation(self, conversation_id: ConversationId) -> ConversationDetail | None:
        """One conversation with all its turns, passages, explanations and feedback; None if there is none."""
        cid = _uuid(conversation_id)
        found = self._read("read the conversation", lambda session: queries.details(session=session, ids=[cid]))
        return found[0] if found else None

    def get_turn(self, turn_id: int) -> TurnPublic | None:
        """One turn with its passages, explanation and feedback; None if there is none."""

        def read(session: Session) -> TurnPublic | None:
            turn = session.get(Turn, turn_id)
            return None if turn is None else queries.turn_details(session=session, turns=[turn])[0]

        return self._read("read the turn", read)

    def recent_turns(self, conversation_id: ConversationId, *, limit: int = 6) -> list[TurnPublic]:
        """The conversation's last ``limit`` turns, oldest first, without their children (for prompt history)."""
        cid = _uuid(conversation_id)

        def read(session: Session) -> list[TurnPublic]:
            turns = queries.recent_turns(session=session, conversation_id=cid, limit=limit)
            return [TurnPublic.model_validate(t) for t in turns]

        return self._read("read the conversation history", read)

    def resolve_conversation_id(self, prefix: str) -> uuid.UUID:
        """The conversation whose id starts with ``prefix`` (as ``moments logs`` prints them)."""
        found = self._read("find the conversation", lambda session: queries.resolve_id(session=session, prefix=prefix))
        if not found:
            raise NotFoundError(f"no conversation id starts with {prefix!r}; list them with `moments logs`")
        if len(found) > 1:
            raise NotFoundError(f"several conversation ids start with {prefix!r}; give more characters")
        return found[0]

    def stats(self, filters: ConversationFilter | None = None, *, weak_score: float = queries.WEAK_SCORE,
              **filter_kwargs: Any) -> dict[str, Any]:
        """Aggregate figures over the matching conversations: turns, abstain/error/escalation rates, thumbs ratio,
        mean confidence, top cited documents, questions with weak retrieval (best passage score < ``weak_score``)."""
        f = ConversationFilter.of(filters, **filter_kwargs)
        return self._read("compute statistics",
                          lambda session: queries.stats(session=session, filters=f, weak_score=weak_score))

    def iter_conversations(self, filters: ConversationFilter | None = None, *, batch_size: int = 100,
                           **filter_kwargs: Any) -> Iterator[ConversationDetail]:
        """Every matching conversation in full, most recently active first, read in batches."""
        f = ConversationFilter.of(filters, **filter_kwargs)
        ids = self._read("list conversations", lambda session: queries.conversation_ids(session=session, filters=f))
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            yield from self._read("read conversations",
                                  lambda session, batch=batch: queries.details(session=session, ids=batch))

    def export_jsonl(self, fh: IO[str], filters: ConversationFilter | None = None, **filter_kwargs: Any) -> int:
        """Write the matching conversations as JSON lines, everything included; how many conversations."""
        return export.write_jsonl(fh, self.iter_conversations(filters, **filter_kwargs))

    def export_csv(self, fh: IO[str], filters: ConversationFilter | None = None, **filter_kwargs: Any) -> int:
        """Write one CSV row per turn of the matching conversations; how many rows."""
        return export.write_csv(fh, self.iter_conversations(filters, **filter_kwargs))

    def export_finetune(self, fh: IO[str], filters: ConversationFilter | None = None, **filter_kwargs: Any) -> int:
        """Write the corrected answers as chat fine-tuning examples (JSON lines); how many examples."""
        return export.write_finetune(fh, self.iter_conversations(filters, **filter_kwargs))

    # --- for tests and tools ----------------------------------------------------------------------------------

    def connect(self) -> Connection:
        """A raw connection to the store's database (the caller closes it)."""
        return self._engine.connect()

    def schema_revision(self) -> str | None:
        with self._engine.connect() as connection:
            return migrate.current_revision(connection)
