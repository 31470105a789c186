"""The :class:`Store`: every conversation turn, its passages, explanation and feedback, kept in SQLite or PostgreSQL.

Contract:

* Opening a store connects, and upgrades the schema to the newest revision (an old database keeps its data). An
  unreachable database raises :class:`~agent.errors.StoreError` naming the URL (password masked) and what to do.
* Every public write is one transaction, committed before the method returns: what it acknowledged (returned an id
  for) is kept; what raised left nothing behind. :meth:`Store.add_exchange` writes a question and its answer
  together, so a turn is stored whole or not at all (never a question without its answer). Contention (SQLite's write lock, PostgreSQL serialization failures
  or deadlocks) is retried with backoff inside the store for up to ``retry_deadline_s``; callers never see
  "database is locked".
* Turn indexes are allocated under a lock on the conversation (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR NO KEY
  UPDATE`` on PostgreSQL) and guarded by a unique (conversation, index) constraint.
* Invalid arguments (unknown status, channel, rating..., a NaN or infinite score or confidence, text holding a lone
  surrogate) raise :class:`InvalidInputError` (a ``StoreError`` and a ``ValueError``) before anything is written; a
  missing conversation or turn raises :class:`NotFoundError` (a ``StoreError`` and a ``LookupError``). Values that
  cannot be stored as JSON at all raise ``TypeError``.
* Reads return public models (``ConversationPublic``, ``ConversationDetail``, ``TurnPublic``, ``StatsPublic``),
  never ORM objects. A finished turn goes in as the agent's :class:`~agent.turn.TurnResult` (:meth:`Store.add_turn`,
  with its prompt/reply token ids and subset table) and comes back as one (:meth:`Store.get_result`);
  :meth:`Store.add_assistant_turn` is the same write from plain values (tools, tests).
* A ``Store`` is safe to share between threads (one engine, a session per call); the store knows no settings.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import IO, Any, Self

from sqlalchemy import Connection, func
from sqlmodel import Session, select

from agent.attribution.explanation import Explanation
from agent.store import crud, export, queries
from agent.store import series as series_
from agent.store import stats as statistics
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
    StatsPublic,
    Turn,
    TurnPublic,
    TurnTokens,
    TurnTokensPublic,
)
from agent.store.queries import ConversationFilter
from agent.store.transactions import Database, validated
from agent.store.turns import AnswerRows, answer_rows, explanation_row, turn_result
from agent.store.types import utcnow
from agent.turn import TurnResult

log = logging.getLogger(__name__)

ConversationId = uuid.UUID | str


def _uuid(value: ConversationId) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInputError(f"{value!r} is not a conversation id (a UUID)") from None


class Store:
    """The conversation store at ``url`` (an SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, upgrade: bool = True, busy_timeout_s: float = 5.0,
                 retry_deadline_s: float = 30.0) -> None:
        self._db = Database(url, upgrade=upgrade, busy_timeout_s=busy_timeout_s, retry_deadline_s=retry_deadline_s)
        self._write, self._read = self._db.write, self._db.read
        #: the URL with its password masked: safe to show and log
        self.url = self._db.url
        self.backend = self._db.backend

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        """Close the store's connections (it reconnects if used again)."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writes -----------------------------------------------------------------------------------------------

    def start_conversation(self, *, channel: str, operator: str | None = None, title: str | None = None,
                           tags: Sequence[str] | None = None) -> uuid.UUID:
        """Open a conversation (``channel``: ui, api or cli); untitled, it takes its first question as title."""
        conversation_in = validated(ConversationCreate, {"channel": channel, "operator": operator, "title": title,
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
        turn_in = validated(AssistantTurnCreate, {"text": text, "status": status, "error": error, "latency": latency,
                                                   "versions": versions, "reply_to_id": reply_to}, "answer")
        passages_in = [validated(PassageCreate, p, "passage") for p in passages]
        explanation_in = None
        if explanation is not None:
            explanation_in = validated(ExplanationCreate, {
                "method": explanation_method or "unspecified", "data": explanation, "confidence": confidence,
                "grounded_share": grounded_share, "top_doc_id": top_doc_id}, "explanation")

        return self._add_answer(cid, AnswerRows(turn=turn_in, passages=passages_in, explanation=explanation_in))

    def add_turn(self, conversation_id: ConversationId, result: TurnResult, *, reply_to: int | None = None) -> int:
        """Record a finished turn in one transaction: the answer, its passages, explanation, prompt and reply tokens
        and the attribution's subset table (see :mod:`agent.store.turns`); its turn id."""
        return self._add_answer(_uuid(conversation_id), answer_rows(result, reply_to=reply_to))

    def add_exchange(self, conversation_id: ConversationId, result: TurnResult) -> tuple[int, int]:
        """Record a whole exchange in one transaction: the question (``result.question``) as the user's turn and
        the finished turn answering it (as :meth:`add_turn`); their turn ids. Both are kept, or neither."""
        cid, rows = _uuid(conversation_id), answer_rows(result)

        def write(session: Session) -> tuple[int, int]:
            conversation = crud.lock_conversation(session=session, conversation_id=cid)
            question = crud.create_user_turn(session=session, conversation=conversation, text=result.question)
            rows.turn.reply_to_id = question.id
            answer = crud.create_assistant_turn(session=session, conversation=conversation, turn_in=rows.turn,
                                                passages=rows.passages, explanation_in=rows.explanation,
                                                tokens_in=rows.tokens)
            assert question.id is not None and answer.id is not None
            return question.id, answer.id

        return self._write("store the exchange", write)

    def _add_answer(self, cid: uuid.UUID, rows: AnswerRows) -> int:
        def write(session: Session) -> int:
            conversation = crud.lock_conversation(session=session, conversation_id=cid)
            turn = crud.create_assistant_turn(session=session, conversation=conversation, turn_in=rows.turn,
                                              passages=rows.passages, explanation_in=rows.explanation,
                                              tokens_in=rows.tokens)
            assert turn.id is not None
            return turn.id

        return self._write("store the answer", write)

    def add_explanation(self, turn_id: int, *, explanation: Explanation | dict[str, Any], method: str | None = None,
                        confidence: float | None = None, grounded_share: float | None = None,
                        top_doc_id: str | None = None, attribution_ms: float | None = None) -> int:
        """Store (or replace) a turn's explanation when it is computed after the turn (explained again from the
        stored subset table, or by a background worker); its id.

        ``explanation``: an :class:`~agent.attribution.explanation.Explanation` (the summary columns come from it),
        or its JSON form with ``method`` and the summary given. ``attribution_ms`` is merged into the turn's latency
        breakdown.
        """
        if isinstance(explanation, Explanation):
            explanation_in = explanation_row(explanation)
        else:
            explanation_in = validated(ExplanationCreate, {
                "method": method or "unspecified", "data": explanation, "confidence": confidence,
                "grounded_share": grounded_share, "top_doc_id": top_doc_id}, "explanation")

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
                     reviewer: str | None = None, author: str | None = None) -> int:
        """Record feedback on a turn (``source``: operator, reviewer or api; ``rating``: up, down or None; ``author``:
        the signed-in user who gave it); its id.

        ``reasons``: any of :data:`agent.vocabulary.REASONS` (wrong source, incomplete, outdated, other,
        wrong fact, tone).
        """
        feedback_in = validated(FeedbackCreate, {
            "source": source, "rating": rating, "reasons": list(reasons), "comment": comment,
            "corrected_answer": corrected_answer, "reviewed": reviewed, "reviewer": reviewer,
            "author": author}, "feedback")

        def write(session: Session) -> int:
            row = crud.create_feedback(session=session, turn_id=turn_id, feedback_in=feedback_in)
            assert row.id is not None
            return row.id

        return self._write("store the feedback", write)

    def remove_feedback(self, feedback_id: int) -> None:
        """Withdraw feedback (an operator un-clicking a thumb); a missing id raises :class:`NotFoundError`."""
        self._write("withdraw the feedback",
                    lambda session: crud.delete_feedback(session=session, feedback_id=feedback_id))

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
                           order: str = "recent", **filter_kwargs: Any) -> list[ConversationPublic]:
        """Matching conversations, most recently active first (or in another of :data:`queries.ORDERS`), with a
        summary of their turns.

        Filters: a :class:`ConversationFilter` and/or its fields as keywords (since, until, operator, channel,
        status, rating, reviewed, confidence_below, cites_doc, score_below, text).
        """
        f = ConversationFilter.of(filters, **filter_kwargs)

        def read(session: Session) -> list[ConversationPublic]:
            ids = queries.conversation_ids(session=session, filters=f, limit=limit, offset=offset, order=order)
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

    def get_result(self, turn_id: int) -> TurnResult | None:
        """A stored answer as the :class:`~agent.turn.TurnResult` it was, with its question and tokens (the subset
        table included): ready to render, serialise or explain again. None if there is no such answer."""

        def read(session: Session) -> TurnResult | None:
            turn = session.get(Turn, turn_id)
            if turn is None or turn.role != "assistant":
                return None
            question = session.get(Turn, turn.reply_to_id) if turn.reply_to_id is not None else None
            tokens = session.exec(select(TurnTokens).where(TurnTokens.turn_id == turn_id)).first()
            return turn_result(queries.turn_details(session=session, turns=[turn])[0],
                               question.text if question is not None else "",
                               TurnTokensPublic.model_validate(tokens) if tokens is not None else None)

        return self._read("read the answer", read)

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

    def stats(self, filters: ConversationFilter | None = None, *, weak_score: float = statistics.WEAK_SCORE,
              **filter_kwargs: Any) -> StatsPublic:
        """Aggregate figures over the matching conversations: turns, abstain/error/escalation rates, thumbs ratio,
        mean confidence, top cited documents, questions with weak retrieval (best passage score < ``weak_score``)."""
        f = ConversationFilter.of(filters, **filter_kwargs)
        return self._read("compute statistics",
                          lambda session: statistics.stats(session=session, filters=f, weak_score=weak_score))

    def series(self, filters: ConversationFilter | None = None, **filter_kwargs: Any) -> series_.SeriesPublic:
        """Daily figures and the confidence histogram of the matching conversations (:mod:`agent.store.series`)."""
        f = ConversationFilter.of(filters, **filter_kwargs)
        return self._read("compute daily figures", lambda session: series_.series(session=session, filters=f))

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
        return self._db.connect()

    def schema_revision(self) -> str | None:
        return self._db.schema_revision()
