"""The conversation store: every turn, its retrieved passages, explanation and feedback, kept, searchable and
replayable, in SQLite (default, a file in the data home) or PostgreSQL (``MOMENTS_DATABASE_URL``).

    from agent.store import Store
    store = Store(url)                        # connects and upgrades the schema (the store knows no settings)
    cid = store.start_conversation(channel="ui", operator="alice")
    question_id, turn_id = store.add_exchange(cid, result)  # a finished agent.turn.TurnResult: the question and
                                              # its answer, passages, explanation, prompt/reply tokens and the
                                              # subset table, in one transaction (add_user_turn + add_turn: apart)
    store.get_result(turn_id)                 # ... and back, as the TurnResult it was

Modules: ``models`` (SQLModel schema families and read models), ``turns`` (a TurnResult as rows and back), ``crud``
(writes of an open session), ``queries`` (filters, lists, replays), ``stats`` (aggregate figures), ``export``
(JSONL, CSV, fine-tuning writers), ``db`` (engines, what to retry), ``transactions`` (sessions and retries),
``migrate`` (Alembic, with the revisions in ``migrations/versions``), ``store`` (the :class:`Store` facade),
``errors``, ``testing`` (test helpers), ``users`` (accounts, API keys), ``exactjobs`` (exact explanations computed
in the background).
"""

from agent.store import exactjobs as _exactjobs  # noqa: F401 - registers the exact_job table (revision 0005)
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
    StatsPublic,
    TurnPublic,
    TurnTokensPublic,
)
from agent.store.queries import ConversationFilter
from agent.store.store import Store
from agent.vocabulary import WEAK_SCORE

__all__ = [
    "CHANNELS",
    "CONVERSATION_STATUSES",
    "FEEDBACK_SOURCES",
    "RATINGS",
    "REASONS",
    "TURN_STATUSES",
    "WEAK_SCORE",
    "ConversationDetail",
    "ConversationFilter",
    "ConversationPublic",
    "ExplanationPublic",
    "FeedbackPublic",
    "InvalidInputError",
    "NotFoundError",
    "PassagePublic",
    "StatsPublic",
    "Store",
    "TurnPublic",
    "TurnTokensPublic",
]
