"""The words a stored conversation is described with, defined once: channels, statuses, ratings, reasons; and the
store's one reading default (the weak-retrieval threshold).

The store validates against these (:mod:`agent.store.models`), the CLI offers them as choices, the review tab as
drop-downs. Each vocabulary is a ``Literal`` type (for annotations and validation) and the tuple of its values. This
module imports nothing, so the command line can offer the choices without loading the store.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Where a conversation came from: the Gradio chat tab, the ``/ask`` API endpoint, or ``moments ask``.
Channel = Literal["ui", "api", "cli"]
ConversationStatus = Literal["open", "abstained", "escalated", "resolved"]
Role = Literal["user", "assistant"]
#: ``abstained``: Moments handed over instead of answering; ``error``: the turn failed (its error is stored).
TurnStatus = Literal["ok", "abstained", "error"]
FeedbackSource = Literal["operator", "reviewer", "api"]
Rating = Literal["up", "down"]
Reason = Literal["wrong source", "incomplete", "outdated", "other", "wrong fact", "tone"]
#: What a signed-in user may do: operator (chats, sees own conversations), reviewer (+ Review tab, every
#: conversation, ratings, corrections, export), admin (+ users and API keys). Each role includes the ones before it.
UserRole = Literal["operator", "reviewer", "admin"]

CHANNELS: tuple[str, ...] = get_args(Channel)
CONVERSATION_STATUSES: tuple[str, ...] = get_args(ConversationStatus)
TURN_STATUSES: tuple[str, ...] = get_args(TurnStatus)
FEEDBACK_SOURCES: tuple[str, ...] = get_args(FeedbackSource)
RATINGS: tuple[str, ...] = get_args(Rating)
REASONS: tuple[str, ...] = get_args(Reason)
USER_ROLES: tuple[str, ...] = get_args(UserRole)
#: Conversation statuses that an abstained answer does not overwrite.
FINAL_STATUSES: tuple[str, ...] = ("escalated", "resolved")
#: Best-passage score (cosine) under which an answer counts as weakly retrieved (``moments logs stats``).
WEAK_SCORE = 0.5
