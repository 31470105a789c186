"""Reads: conversation filters, the conversation list with turn summaries, full conversations, aggregate figures.

Every query is plain SQL that runs the same on SQLite and PostgreSQL (text search is a case-insensitive substring
match, ``LIKE``/``ILIKE``; there is no full-text index, so it scans the turns of the conversations that pass the other
filters).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    cast,
    false,
    func,
    not_,
)
from sqlmodel import Session, col, select

from agent.store.errors import InvalidInputError
from agent.store.models import (
    CONVERSATION_STATUSES,
    RATINGS,
    Conversation,
    ConversationDetail,
    ConversationPublic,
    ExplanationPublic,
    ExplanationRow,
    Feedback,
    FeedbackPublic,
    PassagePublic,
    RetrievedPassage,
    Turn,
    TurnPublic,
)
from agent.store.textsearch import text_clause


@dataclass(frozen=True)
class ConversationFilter:
    """Which conversations a list, statistic or export covers. Every field narrows; None means any.

    since/until: the conversation was active in [since, until) (created before ``until``, last updated at or after
    ``since``). rating: some answer got this thumb. reviewed: True, some feedback was reviewed; False, none was.
    confidence_below: some answer's explanation confidence is below it. cites_doc: some answer was given a passage of
    this document. score_below: some answer's best passage scored below it. text: a case-insensitive substring of
    any question or answer. conversation_ids: only these.
    """

    since: datetime | None = None
    until: datetime | None = None
    operator: str | None = None
    channel: str | None = None
    status: str | None = None
    rating: str | None = None
    reviewed: bool | None = None
    confidence_below: float | None = None
    cites_doc: str | None = None
    score_below: float | None = None
    text: str | None = None
    conversation_ids: tuple[uuid.UUID, ...] | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in CONVERSATION_STATUSES:
            allowed = ", ".join(CONVERSATION_STATUSES)
            raise InvalidInputError(f"unknown conversation status {self.status!r}; use one of {allowed}")
        if self.rating is not None and self.rating not in RATINGS:
            raise InvalidInputError(f"unknown rating {self.rating!r}; use 'up' or 'down'")

    @classmethod
    def of(cls, filters: ConversationFilter | None = None, **kwargs: Any) -> ConversationFilter:
        """``filters`` with ``kwargs`` applied (unknown names raise TypeError, listing the known ones)."""
        known = {f.name for f in fields(cls)}
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(
                f"unknown conversation filter(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(known))}"
            )
        base = filters or cls()
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        values.update({k: v for k, v in kwargs.items() if v is not None})
        if values["conversation_ids"] is not None:
            values["conversation_ids"] = tuple(uuid.UUID(str(i)) for i in values["conversation_ids"])
        return cls(**values)


def _turn_exists(*conditions: ColumnElement[bool], join: Any = None, onclause: Any = None) -> ColumnElement[bool]:
    """EXISTS (a turn of the current conversation [joined to ``join``] meeting ``conditions``)."""
    statement = select(Turn.id)
    if join is not None:
        statement = statement.join(join, onclause)
    return statement.where(col(Turn.conversation_id) == col(Conversation.id), *conditions).exists()


def filter_clauses(f: ConversationFilter) -> list[ColumnElement[bool]]:
    """WHERE clauses on :class:`Conversation` for the filter."""
    clauses: list[ColumnElement[bool]] = []
    if f.conversation_ids is not None:
        clauses.append(col(Conversation.id).in_(f.conversation_ids) if f.conversation_ids else false())
    if f.since is not None:
        clauses.append(col(Conversation.updated_at) >= f.since)
    if f.until is not None:
        clauses.append(col(Conversation.created_at) < f.until)
    for name in ("operator", "channel", "status"):
        value = getattr(f, name)
        if value is not None:
            clauses.append(getattr(Conversation, name) == value)
    has_feedback = col(Feedback.turn_id) == col(Turn.id)
    if f.rating is not None:
        clauses.append(_turn_exists(col(Feedback.rating) == f.rating, join=Feedback, onclause=has_feedback))
    if f.reviewed is not None:
        reviewed = _turn_exists(col(Feedback.reviewed).is_(True), join=Feedback, onclause=has_feedback)
        clauses.append(reviewed if f.reviewed else not_(reviewed))
    if f.confidence_below is not None:
        clauses.append(_turn_exists(col(ExplanationRow.confidence) < f.confidence_below,
                                    join=ExplanationRow, onclause=col(ExplanationRow.turn_id) == col(Turn.id)))
    if f.cites_doc is not None:
        clauses.append(_turn_exists(col(RetrievedPassage.doc_id) == f.cites_doc,
                                    join=RetrievedPassage, onclause=col(RetrievedPassage.turn_id) == col(Turn.id)))
    if f.score_below is not None:
        clauses.append(_turn_exists(col(Turn.best_score) < f.score_below))
    if f.text:
        clauses.append(_turn_exists(text_clause(f.text)))
    return clauses


#: List orders: most recently active first (the default), least recently active first, lowest answer confidence
#: first (conversations with no explained answer last), most turns first.
ORDERS = ("recent", "oldest", "lowest_confidence", "most_turns")


def _order_by(order: str) -> list[Any]:
    recent = [col(Conversation.updated_at).desc(), col(Conversation.id).desc()]
    mine = col(Turn.conversation_id) == col(Conversation.id)
    if order == "recent":
        return recent
    if order == "oldest":
        return [col(Conversation.updated_at).asc(), col(Conversation.id).asc()]
    if order == "lowest_confidence":
        lowest = (select(func.min(ExplanationRow.confidence)).join(Turn, col(ExplanationRow.turn_id) == col(Turn.id))
                  .where(mine).correlate(Conversation).scalar_subquery())
        return [func.coalesce(lowest, 2.0).asc(), *recent]
    if order == "most_turns":
        return [select(func.count(col(Turn.id))).where(mine).correlate(Conversation).scalar_subquery().desc(),
                *recent]
    raise InvalidInputError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")


def conversation_ids(*, session: Session, filters: ConversationFilter, limit: int | None = None,
                     offset: int = 0, order: str = "recent") -> list[uuid.UUID]:
    """Ids of the matching conversations in ``order`` (see :data:`ORDERS`; most recently active first by default)."""
    statement = (
        select(Conversation.id)
        .where(*filter_clauses(filters))
        .order_by(*_order_by(order))
        .offset(offset)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.exec(statement).all())


def _last_turns(*, session: Session, ids: Sequence[uuid.UUID], role: str) -> dict[uuid.UUID, Turn]:
    last = (
        select(Turn.conversation_id, func.max(Turn.index).label("last_index"))
        .where(col(Turn.conversation_id).in_(ids), Turn.role == role)
        .group_by(col(Turn.conversation_id))
        .subquery()
    )
    statement = select(Turn).join(
        last, and_(col(Turn.conversation_id) == last.c.conversation_id, col(Turn.index) == last.c.last_index)
    )
    return {t.conversation_id: t for t in session.exec(statement).all()}


def summaries(*, session: Session, ids: Sequence[uuid.UUID]) -> list[ConversationPublic]:
    """The conversations ``ids`` (in that order) with their turn summaries."""
    if not ids:
        return []
    conversations = {c.id: c for c in session.exec(select(Conversation).where(col(Conversation.id).in_(ids))).all()}
    counts = dict(
        session.exec(
            select(Turn.conversation_id, func.count(col(Turn.id)))
            .where(col(Turn.conversation_id).in_(ids))
            .group_by(col(Turn.conversation_id))
        ).all()
    )
    questions = _last_turns(session=session, ids=ids, role="user")
    answers = _last_turns(session=session, ids=ids, role="assistant")
    answer_ids = [t.id for t in answers.values()]
    explanations = {
        e.turn_id: e
        for e in session.exec(select(ExplanationRow).where(col(ExplanationRow.turn_id).in_(answer_ids))).all()
    }
    result = []
    for cid in ids:
        conversation = conversations.get(cid)
        if conversation is None:  # deleted meanwhile
            continue
        answer = answers.get(cid)
        explanation = explanations.get(answer.id) if answer is not None else None
        question = questions.get(cid)
        result.append(
            ConversationPublic.model_validate(
                conversation,
                update={
                    "turn_count": counts.get(cid, 0),
                    "last_question": question.text if question else None,
                    "last_answer": answer.text if answer else None,
                    "last_answer_status": answer.status if answer else None,
                    "last_confidence": explanation.confidence if explanation else None,
                    "last_grounded_share": explanation.grounded_share if explanation else None,
                    "last_top_doc_id": explanation.top_doc_id if explanation else None,
                },
            )
        )
    return result


def turn_details(*, session: Session, turns: Sequence[Turn]) -> list[TurnPublic]:
    """The turns with their passages (by rank), explanation and feedback (oldest first)."""
    turn_ids = [t.id for t in turns]
    passages: dict[int, list[PassagePublic]] = defaultdict(list)
    feedback: dict[int, list[FeedbackPublic]] = defaultdict(list)
    explanations: dict[int, ExplanationPublic] = {}
    if turn_ids:
        for p in session.exec(
            select(RetrievedPassage)
            .where(col(RetrievedPassage.turn_id).in_(turn_ids))
            .order_by(col(RetrievedPassage.rank))
        ).all():
            passages[p.turn_id].append(PassagePublic.model_validate(p))
        for e in session.exec(select(ExplanationRow).where(col(ExplanationRow.turn_id).in_(turn_ids))).all():
            explanations[e.turn_id] = ExplanationPublic.model_validate(e)
        for fb in session.exec(
            select(Feedback)
            .where(col(Feedback.turn_id).in_(turn_ids))
            .order_by(col(Feedback.created_at), col(Feedback.id))
        ).all():
            feedback[fb.turn_id].append(FeedbackPublic.model_validate(fb))
    return [
        TurnPublic.model_validate(
            t,
            update={"passages": passages[t.id], "explanation": explanations.get(t.id), "feedback": feedback[t.id]},
        )
        for t in turns
        if t.id is not None
    ]


def details(*, session: Session, ids: Sequence[uuid.UUID]) -> list[ConversationDetail]:
    """Full conversations ``ids`` (in that order): summaries plus every turn with its children."""
    heads = summaries(session=session, ids=ids)
    if not heads:
        return []
    turns = session.exec(
        select(Turn).where(col(Turn.conversation_id).in_(ids)).order_by(col(Turn.conversation_id), col(Turn.index))
    ).all()
    by_conversation: dict[uuid.UUID, list[TurnPublic]] = defaultdict(list)
    for turn in turn_details(session=session, turns=turns):
        by_conversation[turn.conversation_id].append(turn)
    return [ConversationDetail(**head.model_dump(), turns=by_conversation[head.id]) for head in heads]


def recent_turns(*, session: Session, conversation_id: uuid.UUID, limit: int) -> list[Turn]:
    statement = (
        select(Turn).where(Turn.conversation_id == conversation_id).order_by(col(Turn.index).desc()).limit(limit)
    )
    return list(reversed(session.exec(statement).all()))


def resolve_id(*, session: Session, prefix: str) -> list[uuid.UUID]:
    """Conversation ids starting with ``prefix`` (hex digits, dashes ignored), at most two."""
    digits = prefix.replace("-", "").lower()
    if not digits or any(c not in "0123456789abcdef" for c in digits):
        return []
    if len(digits) == 32:
        found = session.exec(select(Conversation.id).where(Conversation.id == uuid.UUID(digits))).first()
        return [found] if found else []
    as_hex = func.replace(func.lower(cast(col(Conversation.id), String)), "-", "")
    return list(session.exec(select(Conversation.id).where(as_hex.like(digits + "%")).limit(2)).all())
