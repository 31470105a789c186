"""User-facing exceptions: each message says what is wrong and what to do about it.

:class:`MomentsError` (the base), :class:`ProvisioningError` and :class:`KnowledgeBaseError` are defined by the
retrieval layer (:mod:`retrieval.errors`) and re-exported here, so the agent and its callers import every error
from one place.
"""

from retrieval.errors import KnowledgeBaseError, MomentsError, ProvisioningError

__all__ = ["InputError", "KnowledgeBaseError", "MomentsError", "ProvisioningError", "StoreError"]


class InputError(MomentsError):
    """The user's message cannot be answered as given (empty, too long, ...)."""


class StoreError(MomentsError):
    """The conversation store cannot be reached or written."""
