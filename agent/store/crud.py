"""Writes, as small functions of an open session (``*, session``). They flush, never commit: the caller
(:class:`agent.store.Store`) owns the transaction, so a turn, its passages and its explanation land together or not
at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from agent.store.errors import NotFoundError
from agent.store.models import (
    AssistantTurnCreate,
    Conversation,
    ConversationCreate,
    ExplanationCreate,
    ExplanationRow,
    Feedback,
    FeedbackCreate,
    PassageCreate,
    RetrievedPassage,
    Turn,
    TurnTokens,
    TurnTokensCreate,
)
from agent.store.types import utcnow
from agent.vocabulary import FINAL_STATUSES

TITLE_CHARS = 120


def create_conversation(*, session: Session, conversation_in: ConversationCreate) -> Conversation:
    conversation = Conversation.model_validate(conversation_in)
    session.add(conversation)
    session.flush()
    return conversation


def lock_conversation(*, session: Session, conversation_id: uuid.UUID) -> Conversation:
    """The conversation, row-locked until the transaction ends (PostgreSQL; SQLite's write lock is already held)."""
    statement = select(Conversation).where(Conversation.id == conversation_id).with_for_update(key_share=True)
    conversation = session.exec(statement).first()
    if conversation is None:
        raise NotFoundError(f"no conversation {conversation_id}")
    return conversation


def next_turn_index(*, session: Session, conversation_id: uuid.UUID) -> int:
    """The next free turn index (call with the conversation locked)."""
    statement = select(func.max(Turn.index)).where(Turn.conversation_id == conversation_id)
    last = session.exec(statement).one()
    return 0 if last is None else last + 1


def last_user_turn_id(*, session: Session, conversation_id: uuid.UUID) -> int | None:
    statement = (
        select(Turn.id)
        .where(Turn.conversation_id == conversation_id, Turn.role == "user")
        .order_by(col(Turn.index).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def _append_turn(*, session: Session, conversation: Conversation, turn: Turn) -> Turn:
    """Add ``turn`` (its index already allocated) and mark the conversation active."""
    session.add(turn)
    conversation.updated_at = turn.created_at
    session.add(conversation)
    session.flush()
    return turn


def create_user_turn(*, session: Session, conversation: Conversation, text: str) -> Turn:
    """Append the user's message; the first one also titles an untitled conversation."""
    index = next_turn_index(session=session, conversation_id=conversation.id)
    turn = Turn(conversation_id=conversation.id, index=index, role="user", text=text, status="ok",
                created_at=utcnow())
    if not conversation.title:
        flat = " ".join(text.split())
        conversation.title = flat[: TITLE_CHARS - 1] + "…" if len(flat) > TITLE_CHARS else flat
    return _append_turn(session=session, conversation=conversation, turn=turn)


def create_assistant_turn(
    *,
    session: Session,
    conversation: Conversation,
    turn_in: AssistantTurnCreate,
    passages: Sequence[PassageCreate],
    explanation_in: ExplanationCreate | None = None,
    tokens_in: TurnTokensCreate | None = None,
) -> Turn:
    """Append an answer with its passages (and explanation, and tokens); an abstained answer marks an open
    conversation."""
    reply_to_id = turn_in.reply_to_id
    if reply_to_id is None:
        reply_to_id = last_user_turn_id(session=session, conversation_id=conversation.id)
    turn = Turn.model_validate(
        turn_in,
        update={
            "conversation_id": conversation.id,
            "index": next_turn_index(session=session, conversation_id=conversation.id),
            "role": "assistant",
            "reply_to_id": reply_to_id,
            "created_at": utcnow(),
            "best_score": max((p.score for p in passages), default=None),
        },
    )
    _append_turn(session=session, conversation=conversation, turn=turn)
    assert turn.id is not None
    create_passages(session=session, turn_id=turn.id, passages=passages)
    if explanation_in is not None:
        upsert_explanation(session=session, turn_id=turn.id, explanation_in=explanation_in)
    if tokens_in is not None:
        session.add(TurnTokens.model_validate(tokens_in, update={"turn_id": turn.id}))
        session.flush()
    if turn.status == "abstained" and conversation.status not in FINAL_STATUSES:
        conversation.status = "abstained"
        session.add(conversation)
        session.flush()
    return turn


def create_passages(
    *, session: Session, turn_id: int, passages: Sequence[PassageCreate]
) -> list[RetrievedPassage]:
    rows = [RetrievedPassage.model_validate(p, update={"turn_id": turn_id}) for p in passages]
    session.add_all(rows)
    session.flush()
    return rows


def get_turn(*, session: Session, turn_id: int) -> Turn:
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise NotFoundError(f"no turn {turn_id}")
    return turn


def upsert_explanation(*, session: Session, turn_id: int, explanation_in: ExplanationCreate) -> ExplanationRow:
    """Store the turn's explanation, replacing an earlier one."""
    explanation = session.exec(select(ExplanationRow).where(ExplanationRow.turn_id == turn_id)).first()
    if explanation is None:
        explanation = ExplanationRow.model_validate(explanation_in, update={"turn_id": turn_id})
    else:
        explanation.sqlmodel_update(explanation_in.model_dump())
        explanation.created_at = utcnow()
    session.add(explanation)
    session.flush()
    return explanation


def add_latency(*, session: Session, turn: Turn, **timings_ms: float) -> None:
    """Merge timings (e.g. ``attribution_ms``) into the turn's latency breakdown."""
    turn.latency = {**(turn.latency or {}), **timings_ms}
    session.add(turn)
    session.flush()


def create_feedback(*, session: Session, turn_id: int, feedback_in: FeedbackCreate) -> Feedback:
    get_turn(session=session, turn_id=turn_id)
    feedback = Feedback.model_validate(
        feedback_in, update={"turn_id": turn_id, "reviewed_at": utcnow() if feedback_in.reviewed else None}
    )
    session.add(feedback)
    session.flush()
    return feedback


def delete_feedback(*, session: Session, feedback_id: int) -> None:
    feedback = session.get(Feedback, feedback_id)
    if feedback is None:
        raise NotFoundError(f"no feedback {feedback_id}")
    session.delete(feedback)
    session.flush()


def review_feedback(
    *,
    session: Session,
    feedback_id: int,
    reviewer: str,
    corrected_answer: str | None = None,
    comment: str | None = None,
) -> Feedback:
    feedback = session.get(Feedback, feedback_id)
    if feedback is None:
        raise NotFoundError(f"no feedback {feedback_id}")
    feedback.reviewed, feedback.reviewer, feedback.reviewed_at = True, reviewer, utcnow()
    if corrected_answer is not None:
        feedback.corrected_answer = corrected_answer
    if comment is not None:
        feedback.comment = comment
    session.add(feedback)
    session.flush()
    return feedback


def set_conversation_status(*, session: Session, conversation_id: uuid.UUID, status: str) -> None:
    result = session.execute(
        update(Conversation).where(col(Conversation.id) == conversation_id).values(status=status, updated_at=utcnow())
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFoundError(f"no conversation {conversation_id}")


def delete_conversations_before(*, session: Session, cutoff: datetime) -> int:
    """Delete conversations last active before ``cutoff``; the database cascades to everything below them."""
    statement = delete(Conversation).where(col(Conversation.updated_at) < cutoff)
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]
