"""The conversation store: every turn, its retrieved passages, explanation and feedback, kept, searchable and
replayable, in SQLite (default, a file in the data home) or PostgreSQL (``MOMENTS_DATABASE_URL``).

    from agent.store import Store
    store = Store(settings.db_url)            # connects and upgrades the schema
    cid = store.start_conversation(channel="ui", operator="alice")
    store.add_user_turn(cid, text=question)   # committed before generation starts
    turn_id = store.add_assistant_turn(cid, text=answer, passages=[...], latency={...}, versions={...})

Modules: ``models`` (SQLModel schema families), ``crud`` (writes of an open session), ``queries`` (filters, lists,
statistics), ``export`` (JSONL, CSV, fine-tuning writers), ``db`` (engines, retries), ``migrate`` (Alembic, with the
revisions in ``migrations/versions``), ``store`` (the :class:`Store` facade), ``errors``, ``testing`` (test helpers).
"""

from agent.store.errors import InvalidInputError, NotFoundError
from agent.store.models import (
    CHANNELS,
    CONVERSATION_STATUSES,
    FEEDBACK_SOURCES,
    RATINGS,
    REASONS,
    TURN_STATUSES,
    ConversationDetail,
    ConversationPublic,
    ExplanationPublic,
    FeedbackPublic,
    PassagePublic,
    TurnPublic,
)
from agent.store.queries import ConversationFilter
from agent.store.store import Store

__all__ = [
    "CHANNELS",
    "CONVERSATION_STATUSES",
    "FEEDBACK_SOURCES",
    "RATINGS",
    "REASONS",
    "TURN_STATUSES",
    "ConversationDetail",
    "ConversationFilter",
    "ConversationPublic",
    "ExplanationPublic",
    "FeedbackPublic",
    "InvalidInputError",
    "NotFoundError",
    "PassagePublic",
    "Store",
    "TurnPublic",
]
