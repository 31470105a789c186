"""Which FAISS index holds the passage vectors: exact inner product for small knowledge bases, HNSW above a size.

Contract
--------
* :func:`make_index` returns ``(faiss_index, kind)`` for normalised ``vectors`` ``(n, dim)``: an exact
  ``IndexFlatIP`` (``kind = "flat"``) below :data:`ANN_THRESHOLD` passages, else an ``IndexHNSWFlat`` with
  inner-product metric (``kind = "hnsw"``, :data:`HNSW_M` links, :data:`HNSW_EF_CONSTRUCTION`). Both store the
  vectors exactly, so ``reconstruct_n`` gives them back for exact re-scoring and integrity checks.
* :data:`ANN_POLICY` names the threshold and parameters; it is part of every index version, and the index's
  ``meta["faiss"]`` records the kind chosen.
* :func:`dense_scores` gives every passage a dense score for a query: exact cosines for a flat index; for HNSW
  the cosines of the :data:`CANDIDATES` approximate nearest passages, every other passage getting the lowest of
  those (an upper bound of its cosine, so that lexical evidence can still lift it), which keeps a search's cost
  well below a full pass over 100,000 vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ANN_THRESHOLD = 20_000
#: M 32 / efConstruction 80 (was 48 / 120): half the build time at 100,000 vectors, and with efSearch 384 every
#: top-1 of the ANN test's stress queries still agrees with exact search (efSearch 256 misses some; measured).
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 384
#: Approximate nearest passages scored exactly per query by an HNSW index.
CANDIDATES = 256
ANN_POLICY = f"flat<{ANN_THRESHOLD}<=hnsw-m{HNSW_M}-efc{HNSW_EF_CONSTRUCTION}-efs{HNSW_EF_SEARCH}-c{CANDIDATES}"


def make_index(vectors: np.ndarray, threshold: int | None = None) -> tuple[Any, str]:
    """A FAISS index of ``vectors`` ``(n, dim)`` and its kind (see the module docstring)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if n < (ANN_THRESHOLD if threshold is None else threshold):
        index = faiss.IndexFlatIP(dim)
        kind = "flat"
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        kind = "hnsw"
    index.add(vectors)
    prepare(index)
    return index, kind


def prepare(index: Any) -> None:
    """Set the search parameters of a built or loaded index (HNSW: ``efSearch``)."""
    hnsw = getattr(index, "hnsw", None)
    if hnsw is not None:
        hnsw.efSearch = max(HNSW_EF_SEARCH, CANDIDATES)


def is_approximate(index: Any) -> bool:
    """True for an HNSW index."""
    return getattr(index, "hnsw", None) is not None


def dense_scores(index: Any, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """A dense score for every passage → ``(n,)`` float32 (see the module docstring); ``query`` ``(dim,)``."""
    n = index.ntotal
    if not is_approximate(index) or n <= CANDIDATES:
        return vectors @ query
    sims, ids = index.search(np.asarray(query, dtype=np.float32).reshape(1, -1), CANDIDATES)  # (1, C) each
    found = ids[0] >= 0
    out = np.full(n, float(sims[0][found].min()) if found.any() else -1.0, dtype=np.float32)
    out[ids[0][found]] = sims[0][found]
    return out
