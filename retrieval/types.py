"""Value types shared by retrieval and the agent: a knowledge-base passage, a retrieved hit, a conversation turn."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

#: Earlier user turns a follow-up search takes into account by default (``agent.settings.Settings.history_turns``,
#: the agent's one history limit, starts from this value and is passed to the search).
DEFAULT_HISTORY_TURNS = 3


@dataclass(frozen=True)
class Passage:
    """One indexed chunk of the knowledge base.

    ``doc_id`` names the article (file stem, or ``file:row`` for FAQ rows); ``id`` is unique per chunk
    (``doc_id#n``); ``title`` is the article title, kept with every chunk; ``text`` is the chunk body
    (section heading included, title not); ``source`` and ``line`` point at where it came from.
    """

    id: str
    doc_id: str
    title: str
    text: str
    source: str = ""
    line: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """A passage returned by a search, with its rank (1-based) and cosine score."""

    passage: Passage
    score: float
    rank: int

    def to_dict(self) -> dict:
        return {"rank": self.rank, "score": round(self.score, 4), **self.passage.to_dict()}


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation, for follow-up search: its text and who said it. A follow-up search's
    history may mix these with plain strings, which are user turns."""

    text: str
    speaker: Literal["user", "assistant"] = "user"


def best_score(hits: Iterable[Hit]) -> float:
    """The best retrieval score among ``hits`` (0 when there is none): what abstention compares with its threshold.

    The best is taken over all hits, not the first one: follow-up search ranks by score plus a context bonus, so a
    lower rank can carry a slightly higher cosine (see :mod:`retrieval.followup`).
    """
    return max((h.score for h in hits), default=0.0)
