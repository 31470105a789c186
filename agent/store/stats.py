"""Aggregate figures over a set of conversations, as the typed read model :class:`~agent.store.models.StatsPublic`.

Plain SQL that runs the same on SQLite and PostgreSQL; rates are None when there is nothing to divide by.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, distinct, func
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from agent.store.models import (
    Conversation,
    DocumentCount,
    ExplanationRow,
    Feedback,
    RetrievedPassage,
    StatsPublic,
    Turn,
    WeakRetrieval,
)
from agent.store.queries import ConversationFilter, filter_clauses
from agent.vocabulary import WEAK_SCORE


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _turn_counts(session: Session, conversations: Any, in_scope: Any) -> dict[str, Any]:
    """Conversations, turns, answers, abstentions, errors, escalations and thumbs, with their rates."""
    n_conversations, n_escalated = session.exec(
        select(func.count(), _count(Conversation.status == "escalated"))
        .where(col(Conversation.id).in_(select(conversations.c.id)))
    ).one()
    is_answer = Turn.role == "assistant"
    n_turns, n_answers, n_abstained, n_errors = session.exec(
        select(func.count(), _count(is_answer), _count(and_(is_answer, Turn.status == "abstained")),
               _count(and_(is_answer, Turn.status == "error"))).where(in_scope)
    ).one()
    up, down = session.exec(
        select(_count(Feedback.rating == "up"), _count(Feedback.rating == "down"))
        .join(Turn, col(Feedback.turn_id) == col(Turn.id)).where(in_scope)
    ).one()
    return {
        "conversations": n_conversations, "turns": n_turns, "questions": n_turns - n_answers, "answers": n_answers,
        "abstained": n_abstained, "abstain_rate": _rate(n_abstained, n_answers),
        "errors": n_errors, "error_rate": _rate(n_errors, n_answers),
        "escalated": n_escalated, "escalation_rate": _rate(n_escalated, n_conversations),
        "thumbs_up": up, "thumbs_down": down, "thumbs_ratio": _rate(up, up + down),
    }


def _explanations(session: Session, in_scope: Any, top: int) -> dict[str, Any]:
    """Mean confidence and grounded share, and the documents the explanations credit most."""
    mean_confidence, mean_grounded = session.exec(
        select(func.avg(ExplanationRow.confidence), func.avg(ExplanationRow.grounded_share))
        .join(Turn, col(ExplanationRow.turn_id) == col(Turn.id)).where(in_scope)
    ).one()
    cited = session.exec(
        select(ExplanationRow.top_doc_id, func.count().label("n"))
        .join(Turn, col(ExplanationRow.turn_id) == col(Turn.id))
        .where(in_scope, col(ExplanationRow.top_doc_id).is_not(None))
        .group_by(col(ExplanationRow.top_doc_id))
        .order_by(func.count().desc(), col(ExplanationRow.top_doc_id))
        .limit(top)
    ).all()
    return {
        "mean_confidence": None if mean_confidence is None else float(mean_confidence),
        "mean_grounded_share": None if mean_grounded is None else float(mean_grounded),
        "top_cited_documents": [DocumentCount(doc_id=d, answers=n) for d, n in cited],
    }


def _retrieval(session: Session, in_scope: Any, weak_score: float, top: int) -> dict[str, Any]:
    """The documents retrieved most, and the answers whose best passage scored below ``weak_score``."""
    retrieved = session.exec(
        select(RetrievedPassage.doc_id, func.count(distinct(RetrievedPassage.turn_id)).label("n"))
        .join(Turn, col(RetrievedPassage.turn_id) == col(Turn.id))
        .where(in_scope)
        .group_by(col(RetrievedPassage.doc_id))
        .order_by(func.count(distinct(RetrievedPassage.turn_id)).desc(), col(RetrievedPassage.doc_id))
        .limit(top)
    ).all()
    question = aliased(Turn)
    weak = session.exec(
        select(Turn.conversation_id, Turn.id, question.text, Turn.best_score)
        .outerjoin(question, col(Turn.reply_to_id) == question.id)
        .where(in_scope, Turn.role == "assistant", col(Turn.best_score) < weak_score)
        .order_by(col(Turn.best_score), col(Turn.id))
        .limit(max(top, 20))
    ).all()
    return {
        "top_retrieved_documents": [DocumentCount(doc_id=d, answers=n) for d, n in retrieved],
        "weak_retrieval_threshold": weak_score,
        "weak_retrieval": [WeakRetrieval(conversation_id=str(c), turn_id=t, question=q, best_score=s)
                           for c, t, q, s in weak],
    }


def stats(*, session: Session, filters: ConversationFilter, weak_score: float = WEAK_SCORE,
          top: int = 10) -> StatsPublic:
    """Aggregate figures over the matching conversations."""
    conversations = select(Conversation.id).where(*filter_clauses(filters)).subquery()
    in_scope = col(Turn.conversation_id).in_(select(conversations.c.id))
    return StatsPublic(**_turn_counts(session, conversations, in_scope), **_explanations(session, in_scope, top),
                       **_retrieval(session, in_scope, weak_score, top))
