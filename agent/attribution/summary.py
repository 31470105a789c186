"""Token flags and reply-level figures: content tokens, grounded share, top document, confidence.

Contract
--------
* A *content token* has a letter or digit, is not a stop word, and is not part of a ``[n]`` citation marker.
* ``grounded_share`` = grounded content tokens ÷ content tokens (0 when the reply has no content token).
* ``retrieval_support`` = the retrieval scores of the passages with positive total credit, weighted by that credit,
  mapped linearly from ``score_floor`` (→ 0) to ``score_ceiling`` (→ 1) and clipped; 0 when no passage has positive
  credit; 1 (and no penalty) when the retrieval scores are unknown.
* ``confidence`` = ``grounded_share × retrieval_support``: high only when the reply's content comes from the
  passages *and* those passages matched the question well. A fluent answer from the model's prior, or one built on
  weak matches, gets a low confidence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

STOP_WORDS = frozenset((
    "a", "an", "the", "and", "or", "but", "if", "then", "so", "of", "to", "in", "on", "at", "by", "for", "with",
    "from", "as", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "have", "has",
    "had", "i", "you", "he", "she", "it", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his",
    "its", "our", "their", "this", "that", "these", "those", "there", "here", "can", "could", "will", "would",
    "shall", "should", "may", "might", "must", "not", "no", "yes", "please", "thanks", "thank", "just", "also",
    "too", "very", "than", "into", "out", "up", "about", "over", "after", "before", "any", "all", "some",
    "each", "more", "most", "such", "only", "own", "same", "other", "what", "which", "who", "whom", "when",
    "where", "why", "how",
))
_WORD = re.compile(r"[A-Za-z0-9]")


def is_content(text: str, in_marker: bool) -> bool:
    """A token that carries content (see module docstring)."""
    word = text.strip().lower()
    return bool(_WORD.search(word)) and word not in STOP_WORDS and not in_marker


def grounded_share(flags: Sequence[str], content: Sequence[bool]) -> float:
    n = sum(content)
    return sum(1 for f, c in zip(flags, content) if c and f == "grounded") / n if n else 0.0


def retrieval_support(scores: Sequence[float | None], credit: Sequence[float], *, floor: float,
                      ceiling: float) -> float | None:
    """Credit-weighted, ramped retrieval score of the passages the reply leans on (None when scores are unknown)."""
    known = [(s, c) for s, c in zip(scores, credit) if s is not None and not math.isnan(s)]
    if not known:
        return None
    weighted = [(s, c) for s, c in known if c > 0]
    if not weighted:
        return 0.0
    mean = sum(s * c for s, c in weighted) / sum(c for _, c in weighted)
    return min(1.0, max(0.0, (mean - floor) / (ceiling - floor)))


def confidence(share: float, support: float | None) -> float:
    """``grounded_share × retrieval_support`` (support 1 when unknown)."""
    return share * (1.0 if support is None else support)
