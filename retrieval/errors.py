"""Retrieval's user-facing errors, and the base class every Moments error shares.

:class:`MomentsError` lives here, in the lowest layer, so that the agent's errors (:mod:`agent.errors`) and
retrieval's share one base that the CLI and the UI catch, while retrieval imports nothing from the layers above it.
"""


class MomentsError(Exception):
    """Base class for errors whose message is meant for the user."""


class ProvisioningError(MomentsError):
    """A model or embedder could not be obtained, verified or converted."""


class KnowledgeBaseError(MomentsError):
    """A knowledge-base file is missing or malformed (the message names the file and line)."""


class CorruptIndexError(KnowledgeBaseError):
    """A saved index holds damaged vectors (NaN, infinite, not of unit length) or gave an impossible score; the
    message names the index folder and how to rebuild it."""
