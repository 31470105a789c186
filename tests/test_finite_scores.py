"""NaN and infinite scores can never be stored or shown (issue 14, integrity).

* The store refuses a NaN or infinite passage score, confidence or grounded share (a clear InvalidInputError, nothing
  written), on SQLite (which would store NaN as NULL) and PostgreSQL (which would store NaN).
* Retrieval never returns one: a saved index whose vectors were damaged on disk is reported, on its first search, as
  a corrupt index naming its folder and the rebuild command, and a turn over it fails with that error, not the
  store's ("NOT NULL constraint failed: retrieved_passage.score" before).

Real components: the real store (the ``store`` fixture: SQLite and PostgreSQL), the packaged embedder, real FAISS
files in tmp_path; no language model.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.conversation import ConversationRunner
from agent.errors import CorruptIndexError, ProvisioningError
from agent.pipeline import Agent
from agent.store import Store
from agent.store.errors import InvalidInputError
from agent.turn import TurnResult
from retrieval.embedder import embedding_dim, load_embedder
from retrieval.index import INDEX_FILE, KnowledgeIndex
from retrieval.integrity import check_hits, check_vectors
from retrieval.persist import HASHES_KEY, META_FILE, content_hashes
from retrieval.types import Hit, Passage
from tests.conftest import make_settings

PASSAGES = [Passage(id=f"doc{i}#0", doc_id=f"doc{i}", title=title, text=text) for i, (title, text) in enumerate([
    ("Returns", "You can return items within 30 days of delivery for a full refund."),
    ("Shipping", "Standard shipping takes 3 to 5 business days; express arrives in 1 to 2."),
    ("Gift cards", "Gift cards never expire and cannot be exchanged for cash."),
    ("Passwords", "Click Forgot password on the sign-in page to get a reset link by email."),
])]
BAD = [math.nan, math.inf, -math.inf]


# --- the store ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("score", BAD, ids=["nan", "inf", "-inf"])
def test_the_store_refuses_a_non_finite_passage_score(store, score):
    cid = store.start_conversation(channel="cli")
    store.add_user_turn(cid, text="How long do I have to return an item?")
    with pytest.raises(InvalidInputError, match="score: .*must be a finite number"):
        store.add_assistant_turn(cid, text="30 days.",
                                 passages=[{"rank": 1, "doc_id": "returns", "text": "30 days.", "score": score}])
    result = TurnResult(question="q", answer="30 days.", hits=[Hit(PASSAGES[0], score, 1)])
    with pytest.raises(InvalidInputError, match="must be a finite number"):
        store.add_turn(cid, result)
    assert [t.role for t in store.get_conversation(cid).turns] == ["user"]  # nothing of either answer was written


@pytest.mark.parametrize("field", ["confidence", "grounded_share"])
def test_the_store_refuses_a_non_finite_explanation_summary(store, field):
    cid = store.start_conversation(channel="cli")
    with pytest.raises(InvalidInputError, match=f"{field}: .*finite"):
        store.add_assistant_turn(cid, text="x", explanation={"tokens": []}, explanation_method="shapley",
                                 **{field: math.nan})
    assert store.get_conversation(cid).turns == []


# --- the index ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return load_embedder()


@pytest.fixture
def saved(tmp_path, model):
    """A real index of four passages saved in tmp_path (its folder)."""
    directory = tmp_path / "index"
    index = KnowledgeIndex.from_passages(PASSAGES, model, meta={"version": "test", "kb_path": "/kb/support"})
    index.save(directory)
    return directory


def damage_vector(directory, row: int, values: np.ndarray) -> None:
    """Overwrite vector ``row`` inside ``index.faiss`` (size kept): an IndexFlatIP keeps its float32 vectors last."""
    path = directory / INDEX_FILE
    data = bytearray(path.read_bytes())
    n, dim = len(PASSAGES), values.shape[0]
    start = len(data) - (n - row) * dim * 4
    data[start:start + dim * 4] = values.astype(np.float32).tobytes()
    path.write_bytes(bytes(data))


def rehash(directory) -> None:
    """Record the folder's current bytes as its content hashes: damage done before the index was written (a bad
    embedder at build time), which the hashes cannot see and the vector checks must."""
    meta = json.loads((directory / META_FILE).read_text())
    meta[HASHES_KEY] = content_hashes(directory)
    (directory / META_FILE).write_text(json.dumps(meta))


def _damage(model, damage: str) -> np.ndarray:
    dim = embedding_dim(model)
    rng = np.random.default_rng(0)
    return np.full(dim, np.nan) if damage == "nan" else np.frombuffer(rng.bytes(dim * 4), dtype=np.float32)


@pytest.mark.parametrize("damage", ["nan", "random"])
def test_a_damaged_index_file_is_refused_on_load_naming_its_folder(saved, model, damage):
    damage_vector(saved, 2, _damage(model, damage))  # random bytes inside index.faiss, its size kept
    with pytest.raises(CorruptIndexError) as info:
        KnowledgeIndex.load(saved, model=model)
    message = str(info.value)
    assert str(saved) in message and "index.faiss does not hold the bytes it was written with" in message
    assert "store" not in message


@pytest.mark.parametrize("damage", ["nan", "random"])
def test_a_damaged_vector_is_a_corrupt_index_naming_its_folder(saved, model, damage):
    damage_vector(saved, 2, _damage(model, damage))
    rehash(saved)
    index = KnowledgeIndex.load(saved, model=model)  # loads fine: the files are as written, the numbers wrong
    for search in (lambda: index.search("Do gift cards expire?", 4),
                   lambda: index.search_conversation("do they expire?", ["I bought a gift card"], 4)):
        with pytest.raises(CorruptIndexError) as info:
            search()
        message = str(info.value)
        assert str(saved) in message and "moments index /kb/support --force" in message
        assert "store" not in message


def test_an_intact_index_searches_with_finite_cosines(saved, model):
    hits = KnowledgeIndex.load(saved, model=model).search("Do gift cards expire?", 4)
    assert hits[0].passage.doc_id == "doc2"
    assert all(math.isfinite(h.score) and -1 <= h.score <= 1 for h in hits)


def test_a_nan_query_vector_blames_the_embedder_not_the_index(saved, model):
    index = KnowledgeIndex.load(saved, model=model)
    with pytest.raises(ProvisioningError, match="embedder"):
        index.search_vector(np.full(index.faiss_index.d, np.nan, dtype=np.float32), 2)


def test_check_hits_refuses_any_score_that_is_not_a_cosine(tmp_path):
    for score in [*BAD, 1.5]:
        with pytest.raises(CorruptIndexError, match=str(tmp_path)):
            check_hits([Hit(PASSAGES[0], score, 1)], tmp_path, None)
    assert check_hits([Hit(PASSAGES[0], -0.2, 1)], tmp_path, None)[0].score == -0.2
    check_vectors(np.zeros((2, 4), np.float32), None, None)  # all-zero rows (nothing embedded) are let through


def test_a_turn_over_a_corrupt_index_fails_naming_the_index_not_the_store(saved, model, tmp_path):
    damage_vector(saved, 0, np.full(embedding_dim(model), np.nan))
    rehash(saved)
    index = KnowledgeIndex.load(saved, model=model)
    with Store(f"sqlite:///{tmp_path / 'moments.db'}") as store:
        agent = Agent(make_settings(tmp_path, threads=0), generator=object(), index=index)  # fails before generation
        runner = ConversationRunner(agent, store)
        cid = runner.start(channel="cli")
        with pytest.raises(CorruptIndexError, match=str(saved)):
            runner.ask(cid, "How long do I have to return an item?")
        _, answer = store.get_conversation(cid).turns
        assert answer.status == "error" and "CorruptIndexError" in answer.error and str(saved) in answer.error
        assert "NOT NULL" not in answer.error and answer.passages == []
