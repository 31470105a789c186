"""User-facing exceptions: each message says what is wrong and what to do about it.

:class:`MomentsError` (the base), :class:`ProvisioningError`, :class:`KnowledgeBaseError` and its
:class:`CorruptIndexError` are defined by the retrieval layer (:mod:`retrieval.errors`) and re-exported here, so the
agent and its callers import every error from one place. The one exception is :class:`agent.settings.SettingsError`,
defined beside the settings it describes (the settings sit below this module, so they cannot import it).
"""

from retrieval.errors import (
    CorruptIndexError,
    KnowledgeBaseError,
    MomentsError,
    ProvisioningError,
)

__all__ = ["CorruptIndexError", "InputError", "KnowledgeBaseError", "MomentsError", "ProvisioningError",
           "StoreError"]


class InputError(MomentsError):
    """The user's message cannot be answered as given (empty, too long, ...)."""


class StoreError(MomentsError):
    """The conversation store cannot be reached or written."""
