"""Reply text → sentences with character spans and token ranges, and sentence-level passage citations.

Contract
--------
* :func:`token_offsets` maps the per-token texts (``"".join(texts)`` is the reply) to character spans; tokens that
  add no text (a byte-level piece of a longer character) get an empty span at the current offset.
* :func:`split_sentences` cuts the reply after ``.``, ``!`` or ``?`` followed by whitespace (``$5.95`` is not a cut),
  and at line breaks; ``[n]`` markers right after the punctuation stay with the sentence they follow. Spans exclude
  surrounding whitespace.
* :func:`citation_spans` finds ``[n]`` markers; :func:`cite` picks, from a sentence's summed credit per passage, the
  passages to cite: score at least ``min_score`` nats and at least ``min_ratio`` × the best score, at most
  ``max_cites``, strongest first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(?:\s*\[\d+\])*(?=\s|$)|\n+")
MARKER = re.compile(r"\[(\d+)\]")


def token_offsets(texts: Sequence[str]) -> list[tuple[int, int]]:
    """``(start, end)`` character span of each token in the reply."""
    spans, pos = [], 0
    for t in texts:
        spans.append((pos, pos + len(t)))
        pos += len(t)
    return spans


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        _add(spans, text, start, m.end())
        start = m.end()
    _add(spans, text, start, len(text))
    return spans


def _add(spans: list[tuple[int, int]], text: str, a: int, b: int) -> None:
    piece = text[a:b]
    stripped = piece.strip()
    if not stripped:
        return
    a += len(piece) - len(piece.lstrip())
    spans.append((a, a + len(stripped)))


def token_range(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """The tokens ``[first, last)`` whose span starts inside ``[start, end)`` (or, for empty ones, sits there)."""
    inside = [i for i, (a, b) in enumerate(offsets) if start <= a < end or (a == b and start < a <= end)]
    if not inside:
        return (0, 0)
    return inside[0], inside[-1] + 1


def citation_spans(text: str) -> list[tuple[int, int, int]]:
    """``(start, end, n)`` for each ``[n]`` marker in ``text``."""
    return [(m.start(), m.end(), int(m.group(1))) for m in MARKER.finditer(text)]


def model_citations(sentence: str, k: int) -> list[int]:
    """0-based passages the model cited in ``sentence`` with ``[n]`` markers (only ``1 <= n <= k``), in order."""
    seen: list[int] = []
    for _, _, n in citation_spans(sentence):
        if 1 <= n <= k and n - 1 not in seen:
            seen.append(n - 1)
    return seen


def cite(scores: Sequence[float], *, min_score: float = 1.0, min_ratio: float = 0.5, max_cites: int = 2) -> list[int]:
    """The passages a sentence cites, from its summed credit per passage (see module docstring)."""
    if not scores:
        return []
    best = max(scores)
    order = sorted(range(len(scores)), key=lambda j: -scores[j])
    return [j for j in order if scores[j] >= min_score and scores[j] >= min_ratio * best][:max_cites]
