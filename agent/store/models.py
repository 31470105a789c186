"""The conversation store's schema: SQLModel families ``XBase`` → ``X(table=True)`` → ``XPublic`` (and ``XCreate``).

* ``XBase``: the fields a caller provides, shared by every member of the family.
* ``X(table=True)``: the table (ids, foreign keys, timestamps added).
* ``XCreate``: validated input (allowed values checked before anything is written).
* ``XPublic``: what the store returns; it never hands out live ORM objects.

All tables live in :data:`StoreModel.metadata` (not SQLModel's global one). Datetimes are timezone-aware UTC on both
back ends (:class:`UTCDateTime`); JSON columns use SQLAlchemy's portable ``JSON`` type. The schema is created and
changed only by the Alembic revisions in ``agent/store/migrations/versions`` (keep them in step with this module:
``tests/test_store_migrations.py`` compares the two). The table of explanations is :class:`ExplanationRow` (the
explanation value itself is :class:`agent.attribution.explanation.Explanation`, kept in its ``data`` column).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import field_validator, model_validator
from sqlalchemy import (
    JSON,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from agent.store.types import FiniteFloat, JsonDict, UTCDateTime, utcnow
from agent.vocabulary import (  # noqa: F401 - re-exported: the store's vocabularies are the project's
    CHANNELS,
    CONVERSATION_STATUSES,
    FEEDBACK_SOURCES,
    RATINGS,
    REASONS,
    TURN_STATUSES,
    Channel,
    ConversationStatus,
    FeedbackSource,
    Rating,
    Reason,
    TurnStatus,
)


class StoreModel(SQLModel):
    """Base of every store model; its tables are kept apart from other SQLModel tables in the process."""

    metadata: ClassVar[MetaData] = MetaData()


# --- Conversation ---------------------------------------------------------------------------------------------


class ConversationBase(StoreModel):
    channel: str = Field(sa_type=String(16), index=True)
    operator: str | None = Field(default=None, max_length=255, index=True)
    title: str | None = Field(default=None, sa_type=Text)
    status: str = Field(default="open", sa_type=String(16), index=True)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)


class Conversation(ConversationBase, table=True):
    __tablename__ = "conversation"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class ConversationCreate(ConversationBase):
    channel: Channel
    status: ConversationStatus = "open"


class ConversationPublic(ConversationBase):
    """A conversation with a summary of its turns (what ``moments logs`` lists)."""

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    turn_count: int = 0
    last_question: str | None = None
    last_answer: str | None = None
    last_answer_status: str | None = None
    #: explanation summary of the last answer (None until its attribution is stored)
    last_confidence: float | None = None
    last_grounded_share: float | None = None
    last_top_doc_id: str | None = None


# --- Turn -----------------------------------------------------------------------------------------------------


class TurnBase(StoreModel):
    role: str = Field(sa_type=String(16))
    text: str = Field(sa_type=Text)
    status: str = Field(default="ok", sa_type=String(16), index=True)
    error: str | None = Field(default=None, sa_type=Text)
    #: retrieval_ms, generation_ms, attribution_ms (and whatever else the pipeline measured)
    latency: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    #: base_model, adapter, adapter_hash, embedder, index_version, prompt_version, generation parameters
    versions: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class Turn(TurnBase, table=True):
    __tablename__ = "turn"
    __table_args__ = (UniqueConstraint("conversation_id", "index", name="uq_turn_conversation_index"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: uuid.UUID = Field(foreign_key="conversation.id", ondelete="CASCADE")
    #: position in the conversation, from 0, allocated by the store (unique per conversation)
    index: int
    #: for an assistant turn: the user turn it answers
    reply_to_id: int | None = Field(default=None, foreign_key="turn.id", ondelete="SET NULL", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    #: best retrieval score among the turn's passages (revision 0002), for "weak retrieval" queries
    best_score: float | None = Field(default=None, index=True)


class AssistantTurnCreate(StoreModel):
    text: str
    status: TurnStatus = "ok"
    error: str | None = None
    latency: JsonDict = Field(default_factory=dict)
    versions: JsonDict = Field(default_factory=dict)
    reply_to_id: int | None = None


# --- RetrievedPassage -----------------------------------------------------------------------------------------


class PassageBase(StoreModel):
    rank: int
    doc_id: str = Field(max_length=255, index=True)
    #: the chunk id in the index (``doc_id#n``), the ``id`` key of a retrieval hit
    passage_id: str | None = Field(default=None, max_length=255)
    title: str = Field(default="", sa_type=Text)
    #: snapshot of the passage as the model saw it (the knowledge base may change later)
    text: str = Field(sa_type=Text)
    score: float
    source: str | None = Field(default=None, sa_type=Text)
    line: int | None = None


class RetrievedPassage(PassageBase, table=True):
    __tablename__ = "retrieved_passage"
    __table_args__ = (UniqueConstraint("turn_id", "rank", name="uq_retrieved_passage_turn_rank"),)

    id: int | None = Field(default=None, primary_key=True)
    turn_id: int = Field(foreign_key="turn.id", ondelete="CASCADE")


class PassageCreate(PassageBase):
    """A retrieval hit as the pipeline has it (``Hit.to_dict()``): its ``id`` key becomes ``passage_id``; its score
    must be finite (NaN or ±inf is refused)."""

    score: FiniteFloat

    @model_validator(mode="before")
    @classmethod
    def _rename_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "id" in data and "passage_id" not in data:
            data = {**data, "passage_id": data["id"]}
            data.pop("id")
        return data

    @field_validator("passage_id", "source", mode="before")
    @classmethod
    def _text_or_none(cls, value: Any) -> Any:
        return None if value in ("", None) else str(value)


class PassagePublic(PassageBase):
    id: int
    turn_id: int


# --- Explanation ----------------------------------------------------------------------------------------------


class ExplanationBase(StoreModel):
    method: str = Field(sa_type=String(64))
    #: the full per-token explanation, as the attribution produced it
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    confidence: float | None = Field(default=None, index=True)
    grounded_share: float | None = None
    top_doc_id: str | None = Field(default=None, max_length=255, index=True)


class ExplanationRow(ExplanationBase, table=True):
    """The table of explanations (named apart from the value :class:`agent.attribution.explanation.Explanation`,
    which its ``data`` column holds as JSON)."""

    __tablename__ = "explanation"

    id: int | None = Field(default=None, primary_key=True)
    turn_id: int = Field(foreign_key="turn.id", ondelete="CASCADE", unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ExplanationCreate(ExplanationBase):
    data: JsonDict = Field(default_factory=dict)
    confidence: FiniteFloat | None = None
    grounded_share: FiniteFloat | None = None


class ExplanationPublic(ExplanationBase):
    id: int
    turn_id: int
    created_at: datetime


# --- TurnTokens -----------------------------------------------------------------------------------------------


class TurnTokensBase(StoreModel):
    """What an answer needs to be explained again later without the model's 2^k passes (revision 0003)."""

    #: the prompt's token ids, and the ``[start, end)`` token span of each passage's content in it
    prompt_ids: list[int] = Field(default_factory=list, sa_type=JSON)
    passage_spans: list[list[int]] = Field(default_factory=list, sa_type=JSON)
    #: the reply's token ids (no stop token) and the text each one added
    reply_ids: list[int] = Field(default_factory=list, sa_type=JSON)
    reply_texts: list[str] = Field(default_factory=list, sa_type=JSON)
    #: log p of every reply token under each scored passage subset (:func:`agent.attribution.rescoring.pack_table`:
    #: float16, compressed); None when the turn was not explained with a table-based method
    subsets: bytes | None = Field(default=None, sa_type=LargeBinary)


class TurnTokens(TurnTokensBase, table=True):
    __tablename__ = "turn_tokens"

    id: int | None = Field(default=None, primary_key=True)
    turn_id: int = Field(foreign_key="turn.id", ondelete="CASCADE", unique=True, index=True)


class TurnTokensCreate(TurnTokensBase):
    pass


class TurnTokensPublic(TurnTokensBase):
    id: int
    turn_id: int


# --- Feedback -------------------------------------------------------------------------------------------------


class FeedbackBase(StoreModel):
    """``author``: the signed-in user or API key who gave it (revision 0004; None before, or without sign-in)."""
    source: str = Field(sa_type=String(16))
    rating: str | None = Field(default=None, sa_type=String(8), index=True)
    reasons: list[str] = Field(default_factory=list, sa_type=JSON)
    comment: str | None = Field(default=None, sa_type=Text)
    corrected_answer: str | None = Field(default=None, sa_type=Text)
    reviewed: bool = Field(default=False, index=True)
    reviewer: str | None = Field(default=None, max_length=255)
    author: str | None = Field(default=None, max_length=255)


class Feedback(FeedbackBase, table=True):
    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    turn_id: int = Field(foreign_key="turn.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    reviewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class FeedbackCreate(FeedbackBase):
    source: FeedbackSource
    rating: Rating | None = None
    reasons: list[Reason] = Field(default_factory=list)

    @field_validator("reasons", mode="before")
    @classmethod
    def _normalise_reasons(cls, value: Any) -> Any:
        """Accept ``wrong_source``, ``Wrong-Source`` ... for ``wrong source``."""
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        return [" ".join(str(r).replace("_", " ").replace("-", " ").lower().split()) for r in value]


class FeedbackPublic(FeedbackBase):
    id: int
    turn_id: int
    created_at: datetime
    reviewed_at: datetime | None = None


# --- User and ApiKey (revision 0004) ----------------------------------------------------------------------
class User(StoreModel, table=True):
    """A person who may sign in: a unique name, a role (:data:`agent.vocabulary.USER_ROLES`), an argon2 hash."""
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255, unique=True, index=True)
    role: str = Field(sa_type=String(16))
    password_hash: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(StoreModel):
    """A user as the store hands it out (never the hash)."""
    name: str
    role: str
    created_at: datetime


class ApiKey(StoreModel, table=True):
    """An app's API key: public id (``key-…``), SHA-256 of its secret; revoked ones stay, with ``revoked_at``."""
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(max_length=32, unique=True, index=True)
    secret_hash: str = Field(max_length=64)
    label: str = Field(max_length=255)
    created_by: str | None = Field(default=None, max_length=255)
    channel: str = Field(default="api", sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiKeyPublic(StoreModel):
    """An API key as the store hands it out (never the secret or its hash)."""
    key_id: str
    label: str
    created_by: str | None
    channel: str
    created_at: datetime
    revoked_at: datetime | None


# --- Read models with children --------------------------------------------------------------------------------


class TurnPublic(TurnBase):
    id: int
    conversation_id: uuid.UUID
    index: int
    reply_to_id: int | None = None
    created_at: datetime
    best_score: float | None = None
    passages: list[PassagePublic] = Field(default_factory=list)
    explanation: ExplanationPublic | None = None
    feedback: list[FeedbackPublic] = Field(default_factory=list)


class ConversationDetail(ConversationPublic):
    """One conversation with all its turns, each with its passages, explanation and feedback (a replay)."""

    turns: list[TurnPublic] = Field(default_factory=list)


# --- Statistics -----------------------------------------------------------------------------------------------


class DocumentCount(StoreModel):
    doc_id: str
    answers: int


class WeakRetrieval(StoreModel):
    """An answer whose best passage scored below the weak-retrieval threshold, with the question it answered."""

    conversation_id: str
    turn_id: int
    question: str | None
    best_score: float


class StatsPublic(StoreModel):
    """Aggregate figures over a set of conversations (``moments logs stats``, the review tab's summary line).
    Rates are None when there is nothing to divide by; ``thumbs_ratio`` is up ÷ (up + down)."""

    conversations: int
    turns: int
    questions: int
    answers: int
    abstained: int
    abstain_rate: float | None
    errors: int
    error_rate: float | None
    escalated: int
    escalation_rate: float | None
    thumbs_up: int
    thumbs_down: int
    thumbs_ratio: float | None
    mean_confidence: float | None
    mean_grounded_share: float | None
    top_cited_documents: list[DocumentCount]
    top_retrieved_documents: list[DocumentCount]
    weak_retrieval_threshold: float
    weak_retrieval: list[WeakRetrieval]
