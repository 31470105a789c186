"""Names in the conversation: which documents the question and the earlier turns *name* (entity tracking).

Names belong to *entity* documents: a catalogue of hotels, restaurants or products whose passages are FAQ rows
titled ``"<entity>: <question>"`` (``"Acorn Guest House: Is there parking?"``); the name is the part before ``": "``
that all of a document's titles share. A help-centre article's title is not a name here: measured on the
development help centres (``bench/results/retrieval_tune_mention.md``), a bonus for articles named by their title
dragged a new, unnamed question back to an article the customer had named a turn before ("Tell me about Gift
Cards." then "how do I reset my password?"), at every weight and margin tried. A name is only usable when it is
*distinctive*: at least 4 characters and found (as a phrase, case-insensitively) in no other document's passages,
so that it can only point at its own document.

:func:`mention_scores` gives each document the weight of the most recent turn that names it: the question 1, an
earlier turn ``decay ** (u + 1)`` with ``u`` the user turns after it, whoever spoke (the assistant's "the Acorn
Guest House has free parking" names the hotel the customer's next "do they have wifi?" is about; dense context
leaves the assistant's turns out by default because a quoted reply resembles its article so much that it outvotes
a new question's own subject — a name match is far more specific). The search adds ``mention *`` that weight to the
document's passages (:func:`retrieval.followup.ranking_scores`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from retrieval.lexical import LexicalIndex, passage_text, tokenize
from retrieval.types import Passage

MIN_NAME_CHARS = 4


def group_names(passages: Sequence[Passage], group_of: np.ndarray, n_groups: int) -> list[str]:
    """Each entity document's name, lower-cased: the ``"<name>: "`` prefix all its titles share (``""`` for a
    document without one, e.g. a help-centre article)."""
    prefixes: list[set[str]] = [set() for _ in range(n_groups)]
    for p, g in zip(passages, group_of):
        title = " ".join(p.title.split()).lower()
        prefixes[g].add(title.split(": ", 1)[0] if ": " in title else "")
    names = [next(iter(pre)) if len(pre) == 1 else "" for pre in prefixes]
    return [n if len(n) >= MIN_NAME_CHARS else "" for n in names]


def _phrase(name: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(name) + r"(?!\w)")


def distinctive_names(passages: Sequence[Passage], group_of: np.ndarray, names: Sequence[str],
                      lexical: LexicalIndex) -> list[str]:
    """``names`` with ``""`` for each one found in another document's passages (title or text). Candidates come
    from the BM25 index (passages holding every term of the name), then the phrase is checked in their text."""
    out = []
    lowered: dict[int, str] = {}
    for g, name in enumerate(names):
        terms = tokenize(name)
        if not name or not terms:
            out.append("")
            continue
        holding = np.ones(len(passages), dtype=bool)
        for term in set(terms):
            holding &= lexical.scores_terms([term]) > 0
        holding &= group_of != g
        pattern = _phrase(name)
        clash = False
        for i in np.flatnonzero(holding):
            text = lowered.setdefault(int(i), passage_text(passages[i]).lower())
            if pattern.search(text):
                clash = True
                break
        out.append("" if clash else name)
    return out


class NameMatcher:
    """Finds the documents a text names (the longest name wins where names overlap)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.group = {n: g for g, n in enumerate(names) if n}
        ordered = sorted(self.group, key=len, reverse=True)
        self.pattern = (re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in ordered) + r")(?!\w)")
                        if ordered else None)
        self.n_groups = len(names)

    def named(self, text: str) -> set[int]:
        if self.pattern is None or not text:
            return set()
        return {self.group[m.group(1)] for m in self.pattern.finditer(" ".join(text.split()).lower())}


def name_matcher(passages: Sequence[Passage], group_of: np.ndarray, lexical: LexicalIndex) -> NameMatcher:
    """The matcher of an index's distinctive entity names (``group_of``: each passage's document)."""
    names = group_names(passages, group_of, int(group_of.max()) + 1 if len(group_of) else 0)
    return NameMatcher(distinctive_names(passages, group_of, names, lexical))


def mention_scores(matcher: NameMatcher, question: str, turns: Sequence[str], weights: Sequence[float]) -> np.ndarray:
    """Per document, the weight of the most recent turn naming it → ``(n_groups,)``: the question counts 1, each of
    ``turns`` (most recent first) its weight in ``weights``."""
    out = np.zeros(matcher.n_groups, dtype=np.float32)
    for text, w in ((question, 1.0), *zip(turns, weights)):
        for g in matcher.named(text):
            out[g] = max(out[g], w)
    return out


def mention_turns(history: Sequence, decay: float, max_user_turns: int) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The earlier turns (``Turn`` values or strings, oldest first) that may name a document, most recent first, and
    their weights ``decay ** (u + 1)`` (``u``: user turns after it), back to ``max_user_turns`` user turns."""
    texts: list[str] = []
    weights: list[float] = []
    users = 0
    for turn in reversed(history):
        speaker = getattr(turn, "speaker", "user")
        text = (getattr(turn, "text", turn) or "").strip()
        if users >= max_user_turns:
            break
        if text:
            texts.append(text)
            weights.append(decay ** (users + 1))
        users += speaker != "assistant"
    return tuple(texts), tuple(weights)
