"""Retrieval quality on the project's default knowledge base (``data/kb``) and its evaluation set (``data/eval``).

The index is built with the product settings (default embedder, 180-token chunks) through
``KnowledgeIndex.load_or_build`` into pytest's cache folder (a temporary one without the cache plugin),
so reruns reuse it while the KB is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.settings import DEFAULT_KB, PROJECT_ROOT, Settings
from retrieval.index import KnowledgeIndex, index_dir_for

EVAL_DIR = PROJECT_ROOT / "data" / "eval"

pytestmark = pytest.mark.skipif(
    not DEFAULT_KB.is_dir() or not (EVAL_DIR / "kb_questions.jsonl").is_file(),
    reason=f"the default KB ({DEFAULT_KB}) or its evaluation set ({EVAL_DIR}) has not been written yet",
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def kb_index(request, tmp_path_factory) -> KnowledgeIndex:
    settings = Settings()
    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    base = Path(cache.mkdir("retrieval-kb-index")) if cache is not None else tmp_path_factory.mktemp("kb-index")
    return KnowledgeIndex.load_or_build(
        DEFAULT_KB, index_dir_for(base, DEFAULT_KB), settings.embedder, settings.chunk_tokens, progress=False
    )


def recall(index: KnowledgeIndex, items: list[tuple[str, list[str], str]]) -> tuple[float, float, list[str]]:
    """(recall@1, recall@5, misses at 5) of the expected article among the hits of the product search."""
    index.embed_queries(sorted({q for q, _, _ in items} | {t for _, h, _ in items for t in h}))  # one batch, cached
    at1 = at5 = 0
    misses = []
    for question, history, article in items:
        docs = [h.passage.doc_id for h in index.search_conversation(question, history, 5)]
        at1 += docs[:1] == [article]
        at5 += article in docs
        if article not in docs:
            misses.append(f"{question!r} (history {history}) → {docs}, expected {article}")
    return at1 / len(items), at5 / len(items), misses


def test_eval_articles_exist(kb_index):
    doc_ids = {p.doc_id for p in kb_index.passages}
    articles = {q["article"] for q in read_jsonl(EVAL_DIR / "kb_questions.jsonl") if q.get("answerable")}
    articles |= {f["article"] for f in read_jsonl(EVAL_DIR / "kb_followups.jsonl")}
    assert articles, "no expected articles in the evaluation set"
    assert articles <= doc_ids, f"articles missing from data/kb: {sorted(articles - doc_ids)}"


def test_kb_questions_recall(kb_index):
    questions = [q for q in read_jsonl(EVAL_DIR / "kb_questions.jsonl") if q.get("answerable")]
    assert len(questions) >= 20
    r1, r5, misses = recall(kb_index, [(q["question"], [], q["article"]) for q in questions])
    print(f"\nkb_questions (n={len(questions)}): recall@1 {r1:.3f}, recall@5 {r5:.3f}")
    assert r5 >= 0.9, "\n".join(misses)


def test_kb_followups_with_history(kb_index):
    followups = read_jsonl(EVAL_DIR / "kb_followups.jsonl")
    assert len(followups) >= 5
    r1, r5, misses = recall(kb_index, [(f["question"], f["history"], f["article"]) for f in followups])
    b1, b5, _ = recall(kb_index, [(f["question"], [], f["article"]) for f in followups])
    print(f"\nkb_followups (n={len(followups)}): with history recall@1 {r1:.3f}, recall@5 {r5:.3f}; "
          f"question alone recall@1 {b1:.3f}, recall@5 {b5:.3f}")
    assert r5 >= 0.8, "\n".join(misses)
    assert r5 > b5, "history should help on follow-ups that are ambiguous alone"


def test_kb_topic_switch_keeps_standalone_recall(kb_index):
    """A self-contained question after an unrelated one must still find its own article."""
    questions = [q for q in read_jsonl(EVAL_DIR / "kb_questions.jsonl") if q.get("answerable")]
    items = []
    for i, q in enumerate(questions):
        j = (i + 7) % len(questions)
        while questions[j]["article"] == q["article"]:
            j = (j + 1) % len(questions)
        items.append((q["question"], [questions[j]["question"]], q["article"]))
    r1, r5, misses = recall(kb_index, items)
    print(f"\nkb_questions after an unrelated question (n={len(items)}): recall@1 {r1:.3f}, recall@5 {r5:.3f}")
    assert r5 >= 0.85, "\n".join(misses)


def test_follow_up_scores_clear_the_abstention_threshold(kb_index):
    """search_conversation reports cosines: real follow-ups must not fall under the agent's abstention threshold."""
    threshold = Settings().abstain_threshold
    followups = read_jsonl(EVAL_DIR / "kb_followups.jsonl")
    off_topic = [q["question"] for q in read_jsonl(EVAL_DIR / "kb_questions.jsonl") if not q.get("answerable")]
    kb_index.embed_queries(off_topic + [f["question"] for f in followups] + [t for f in followups for t in f["history"]])
    scores = [kb_index.search_conversation(f["question"], f["history"], 1)[0].score for f in followups]
    assert all(-1.0 <= s <= 1.0 + 1e-5 for s in scores)
    passing = sum(s >= threshold for s in scores) / len(scores)
    off_scores = [kb_index.search_conversation(q, followups[i % len(followups)]["history"], 1)[0].score
                  for i, q in enumerate(off_topic)]
    below = sum(s < threshold for s in off_scores) / max(1, len(off_scores))
    print(f"\nfollow-ups with top score >= {threshold}: {passing:.2f}; "
          f"unanswerable questions after a KB topic below it: {below:.2f}")
    assert passing >= 0.75, sorted(zip(scores, [f["question"] for f in followups]))
