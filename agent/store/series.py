"""Figures over time for the review desk's plots: per UTC day, conversations started (and how many of those are now
escalated), answers (abstained, failed) and thumbs given; and the distribution of the answers' confidence.

Plain SQL that runs the same on SQLite and PostgreSQL (days are bucketed in the database, in UTC, so a large store
is never read row by row); the conversations covered are those a :class:`~agent.store.queries.ConversationFilter`
selects, exactly as for :mod:`agent.store.stats`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func
from sqlmodel import Session, col, select

from agent.store.models import Conversation, ExplanationRow, Feedback, StoreModel, Turn
from agent.store.queries import ConversationFilter, filter_clauses

#: Width of a confidence histogram bin; bins cover [0, 0.1), [0.1, 0.2) ... [0.9, 1.0].
BIN = 0.1
N_BINS = 10


class DayFigures(StoreModel):
    """One UTC day: conversations started (and how many of them are escalated now), answers given (abstained,
    failed) and thumbs given that day."""

    day: str  # YYYY-MM-DD (UTC)
    conversations: int = 0
    escalated: int = 0
    answers: int = 0
    abstained: int = 0
    errors: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0


class SeriesPublic(StoreModel):
    """Daily figures (days with any activity, oldest first) and the answers' confidence histogram (``N_BINS`` counts,
    bin ``i`` holding confidences in ``[i*BIN, (i+1)*BIN)``, the last one including 1.0)."""

    days: list[DayFigures]
    confidence_bins: list[int]


def _day(session: Session, column: Any) -> Any:
    """The UTC day of a timestamp column, as ``YYYY-MM-DD`` text."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite stores UTC (agent.store.types.UTCDateTime)


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _confidence_bins(session: Session, in_scope: Any) -> list[int]:
    conf = col(ExplanationRow.confidence)
    bin_of = case(*((conf < BIN * (i + 1), i) for i in range(N_BINS - 1)), else_=N_BINS - 1)
    rows = session.exec(
        select(bin_of, func.count())
        .join(Turn, col(ExplanationRow.turn_id) == col(Turn.id))
        .where(in_scope, conf.is_not(None))
        .group_by(bin_of)
    ).all()
    bins = [0] * N_BINS
    for i, n in rows:
        bins[int(i)] = int(n)
    return bins


def series(*, session: Session, filters: ConversationFilter) -> SeriesPublic:
    """Daily figures and the confidence histogram over the matching conversations."""
    clauses = filter_clauses(filters)
    in_scope = col(Turn.conversation_id).in_(select(Conversation.id).where(*clauses))
    days: dict[str, DayFigures] = {}

    def day(d: str) -> DayFigures:
        return days.setdefault(str(d), DayFigures(day=str(d)))

    started = _day(session, col(Conversation.created_at))
    for d, n, escalated in session.exec(
        select(started, func.count(), _count(Conversation.status == "escalated")).where(*clauses).group_by(started)
    ).all():
        day(d).conversations, day(d).escalated = int(n), int(escalated)
    answered = _day(session, col(Turn.created_at))
    is_answer = Turn.role == "assistant"
    for d, n, abstained, errors in session.exec(
        select(answered, func.count(), _count(Turn.status == "abstained"), _count(Turn.status == "error"))
        .where(in_scope, is_answer).group_by(answered)
    ).all():
        day(d).answers, day(d).abstained, day(d).errors = int(n), int(abstained), int(errors)
    rated = _day(session, col(Feedback.created_at))
    for d, up, down in session.exec(
        select(rated, _count(Feedback.rating == "up"), _count(Feedback.rating == "down"))
        .join(Turn, col(Feedback.turn_id) == col(Turn.id))
        .where(and_(in_scope, col(Feedback.rating).is_not(None))).group_by(rated)
    ).all():
        day(d).thumbs_up, day(d).thumbs_down = int(up), int(down)
    return SeriesPublic(days=[days[d] for d in sorted(days)], confidence_bins=_confidence_bins(session, in_scope))
