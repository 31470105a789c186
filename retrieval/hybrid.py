"""Fusion of dense (embedding) and lexical (BM25) evidence into one ranking: the arithmetic of hybrid retrieval.

Contract
--------
Every function works on whole-index arrays, one value per passage (``(n_passages,)``) or per document group
(``(n_groups,)``), so that search, benchmarks and tuning share the exact same formula.

* :func:`unit_scale` divides a query's BM25 scores by their maximum (0..1; all zeros stay zeros), so that a
  weight means the same for short and long queries.
* :func:`lexical_context` is the lexical twin of the dense document-context bonus of :mod:`retrieval.followup`:
  for each context turn ``u_i`` (weight ``w_i``) the best unit-scaled BM25 score of any passage of document ``d``,
  centred over the documents, and the maximum over the turns: ``max_i w_i (G_i(d) - mean_d' G_i(d'))``. A turn
  that names an entity ("the Acorn Guest House") or an article's words lifts that document's passages.
* :func:`fuse` gives the ranking score::

      linear: dense(p) + lexical * unit(BM25(q, p)) + lexical_context * context(d(p)) + exact * unit(BM25(codes(q), p))
      rrf:    1 / (rrf_k + rank_dense(p)) + lexical / (rrf_k + rank_bm25(p))

  where ``dense`` is the dense ranking score (cosine, plus the dense context bonus in a conversation) and
  ``codes(q)`` the question's code-like terms (:func:`retrieval.lexical.is_code`: ``E-204``, ``NW-12345678``).
  ``lexical`` and ``lexical_context`` are tuned on DSTC11 dialogues only (``bench/retrieval_tune.py``); ``exact``
  is set by hand (those dialogues hold no codes), see :mod:`retrieval.followup`.

The ranking score only orders the hits; a hit's reported score stays a cosine (see :mod:`retrieval.followup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def unit_scale(scores: np.ndarray) -> np.ndarray:
    """``scores`` divided by their maximum (all-zero or negative-only input → zeros); float32."""
    scores = np.asarray(scores, dtype=np.float32)
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 0 else np.zeros_like(scores)


def group_max(scores: np.ndarray, group_of: np.ndarray, n_groups: int) -> np.ndarray:
    """The maximum of ``scores`` ``(n_passages,)`` within each group → ``(n_groups,)`` (groups are never empty)."""
    scores = np.asarray(scores, dtype=np.float32)
    if len(group_of) and np.all(group_of[1:] >= group_of[:-1]) and group_of[0] == 0 and group_of[-1] == n_groups - 1:
        starts = np.flatnonzero(np.r_[True, group_of[1:] != group_of[:-1]])  # groups in order, each contiguous
        if len(starts) == n_groups:
            return np.maximum.reduceat(scores, starts)
    out = np.full(n_groups, -np.inf, dtype=np.float32)
    np.maximum.at(out, group_of, scores)
    return out


def lexical_context(
    bm25: Callable[[str], np.ndarray],
    texts: Sequence[str],
    weights: Sequence[float],
    group_of: np.ndarray,
    n_groups: int,
) -> np.ndarray:
    """The lexical document-context bonus of every document → ``(n_groups,)`` (zeros without turns).

    ``bm25(text)`` gives a text's BM25 scores over the passages; ``texts`` are the context turns with their
    ``weights``; ``group_of`` maps each passage to its document.
    """
    best = np.zeros(n_groups, dtype=np.float32)
    first = True
    for text, w in zip(texts, weights):
        g = group_max(unit_scale(bm25(text)), group_of, n_groups)
        g = w * (g - g.mean())
        best = g if first else np.maximum(best, g)
        first = False
    return best


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every entry of ``scores`` (highest first; ties by position) → ``(n,)`` int64."""
    order = np.argsort(-scores, kind="stable")
    out = np.empty(len(scores), dtype=np.int64)
    out[order] = np.arange(1, len(scores) + 1)
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``scores``, best first (ties by position)."""
    k = min(int(k), len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))]


def fuse(
    dense: np.ndarray,
    bm25: np.ndarray,
    context: np.ndarray | float = 0.0,
    codes: np.ndarray | float = 0.0,
    *,
    kind: str = "linear",
    lexical: float = 0.0,
    lexical_context: float = 0.0,
    exact: float = 0.0,
    rrf_k: float = 60.0,
) -> np.ndarray:
    """The hybrid ranking score of every passage (see the module docstring) → ``(n,)`` float32.

    ``dense`` ``(n,)``: dense ranking scores; ``bm25`` ``(n,)``: the question's raw BM25 scores; ``context``
    ``(n,)`` (or 0): each passage's lexical document-context bonus; ``codes`` ``(n,)`` (or 0): the raw BM25 scores
    of the question's code-like terms alone. ``kind="bm25"`` ranks by ``bm25`` alone (for comparison).
    """
    if kind == "bm25":
        return np.asarray(bm25, dtype=np.float32)
    if kind == "rrf":
        fused = 1.0 / (rrf_k + ranks(dense))
        if lexical > 0 and bm25.max(initial=0.0) > 0:
            fused = fused + lexical / (rrf_k + ranks(bm25))
        return fused.astype(np.float32)
    if kind != "linear":
        raise ValueError(f"Unknown fusion {kind!r}; use linear, rrf or bm25.")
    out = np.asarray(dense, dtype=np.float32) + lexical * unit_scale(bm25)
    if lexical_context:
        out = out + lexical_context * np.asarray(context, dtype=np.float32)
    if exact and np.ndim(codes):
        out = out + exact * unit_scale(np.asarray(codes))
    return out.astype(np.float32)
