"""The store's errors: both are :class:`~agent.errors.StoreError` (user-facing), so callers can catch either."""

from agent.errors import StoreError


class NotFoundError(StoreError, LookupError):
    """The conversation, turn or feedback named does not exist (or was purged)."""


class InvalidInputError(StoreError, ValueError):
    """A value the store cannot accept (unknown status, rating, reason...); the message lists the allowed ones."""
