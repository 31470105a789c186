"""User-facing exceptions: each message says what is wrong and what to do about it."""


class MomentsError(Exception):
    """Base class for errors whose message is meant for the user."""


class ProvisioningError(MomentsError):
    """A model or embedder could not be obtained, verified or converted."""


class KnowledgeBaseError(MomentsError):
    """A knowledge-base file is missing or malformed (the message names the file and line)."""


class InputError(MomentsError):
    """The user's message cannot be answered as given (empty, too long, ...)."""


class StoreError(MomentsError):
    """The conversation store cannot be reached or written."""
