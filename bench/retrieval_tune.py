"""Tuning of the hybrid retrieval weights on DSTC11 dialogues only (never on DSTC9 validation or data/eval).

Run from the project root::

    python -m bench.retrieval_tune [--data ../shared/data/dstc11] [--out bench/results]

DSTC11 Track 5 (validation logs, used here as training data for retrieval: no evaluation set of this project
comes from them): one passage per FAQ (title ``"<entity>: <question>"``, text = the answer), grouped by entity
like DSTC9 in ``bench/retrieval.py``; every knowledge-seeking turn whose gold holds a FAQ. For each
(``lexical``, ``lexical_context``) pair of a small grid the product's fused ranking
(:func:`retrieval.followup.ranking_scores` on top of the dense ``context`` score) is scored by recall@1/@5 with
(a) the user's earlier turns (what the product passes) and (b) user and system turns, and (c) "within entity":
the question alone ranked among its gold entity's FAQs (which FAQ answers it, the help-centre half of the
task). The objective is the mean recall@1 of (a), (b) and (c). ``exact`` (the code-term weight) is not tuned:
these dialogues hold no codes.

Writes ``<out>/retrieval_tune.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.settings import PROJECT_ROOT, SHARED_DATA
from retrieval.embedder import load_embedder
from retrieval.followup import (
    DEFAULT_METHOD,
    build_query,
    context_scores,
    ranking_scores,
)
from retrieval.index import KnowledgeIndex
from retrieval.types import Passage

log = logging.getLogger("bench.retrieval_tune")
LEXICAL = (0.0, 0.05, 0.1, 0.2, 0.3)
CONTEXT = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8)


def dstc11_faqs(data: Path) -> tuple[list[Passage], list[tuple[str, list[tuple[str, str]], set[str]]]]:
    """FAQ passages and the FAQ-grounded target turns ``(question, [(speaker, text), ...], gold keys)``."""
    knowledge = json.loads((data / "knowledge.json").read_text(encoding="utf-8"))
    passages = []
    for domain, entities in knowledge.items():
        for entity_id, entity in entities.items():
            name = entity.get("name") or domain.capitalize()
            for doc_id, faq in entity.get("faqs", {}).items():
                key = f"{domain}/{entity_id}/{doc_id}"
                passages.append(Passage(id=key, doc_id=key, title=f"{name}: {faq['question']}", text=faq["answer"],
                                        source=f"dstc11:{domain}/{entity_id}"))
    logs = json.loads((data / "logs.json").read_text(encoding="utf-8"))
    labels = json.loads((data / "labels.json").read_text(encoding="utf-8"))
    turns = []
    for dialogue, label in zip(logs, labels):
        gold = {f"{g['domain']}/{g['entity_id']}/{g['doc_id']}" for g in label.get("knowledge") or []
                if label.get("target") and g.get("doc_type") == "faq"}
        if gold:
            turns.append((dialogue[-1]["text"], [(u["speaker"], u["text"]) for u in dialogue[:-1]], gold))
    return passages, turns


def recall(index: KnowledgeIndex, turns, speakers: tuple[str, ...], lexical: float, context: float) -> tuple:
    """Recall@1 and @5 of the fused ranking with the earlier turns of ``speakers``."""
    method = replace(DEFAULT_METHOD, lexical=lexical, lexical_context=context)
    keys = [p.doc_id for p in index.passages]
    r1 = r5 = 0
    for question, earlier, gold in turns:
        q = build_query(question, [t for s, t in earlier if s in speakers], method)
        vecs = index.embed_queries([q.question, *q.turns])
        dense, _, _ = context_scores(index, vecs[0], vecs[1:], np.asarray(q.weights, np.float32), method)
        scores = ranking_scores(index, dense, q.question, q.turns, q.weights, method)
        top = np.argsort(-scores, kind="stable")[:5]
        found = [keys[i] in gold for i in top]
        r1, r5 = r1 + found[0], r5 + any(found)
    return round(r1 / len(turns), 3), round(r5 / len(turns), 3)


def within_entity(index: KnowledgeIndex, turns, lexical: float) -> tuple:
    """Recall@1/@5 of the question alone, ranked among its gold entity's FAQs."""
    method = replace(DEFAULT_METHOD, lexical=lexical, lexical_context=0.0)
    _, group_of = index.group_centroids()
    keys = np.array([p.doc_id for p in index.passages])
    vectors = index.vectors()
    r1 = r5 = 0
    for question, _, gold in turns:
        mask = np.isin(keys, list(gold))
        sel = np.flatnonzero(group_of == group_of[np.flatnonzero(mask)[0]])
        dense = vectors @ index.embed_queries([question])[0]
        scores = ranking_scores(index, dense, question, (), (), method)[sel]
        found = mask[sel][np.argsort(-scores, kind="stable")[:5]]
        r1, r5 = r1 + found[0], r5 + found.any()
    return round(r1 / len(turns), 3), round(r5 / len(turns), 3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "dstc11")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    passages, turns = dstc11_faqs(args.data)
    index = KnowledgeIndex.from_passages(passages, load_embedder(), progress=True)
    import retrieval.index as index_module

    index_module.QUERY_CACHE_SIZE = 1_000_000  # every turn's texts stay cached across the grid
    texts = {q for q, _, _ in turns} | {x for _, e, _ in turns for x in [t for _, t in e][-3:]}
    texts |= {x for _, e, _ in turns for x in [t for s, t in e if s == "U"][-3:]}
    index.embed_queries(sorted(texts))
    rows = []
    for lexical, context in itertools.product(LEXICAL, CONTEXT):
        user = recall(index, turns, ("U",), lexical, context)
        both = recall(index, turns, ("U", "S"), lexical, context)
        within = within_entity(index, turns, lexical)
        objective = round((user[0] + both[0] + within[0]) / 3, 4)
        rows.append({"lexical": lexical, "lexical_context": context, "user_turns": user, "user_and_system": both,
                     "within_entity": within, "objective": objective})
        log.info("%s", rows[-1])
    best = max(rows, key=lambda r: r["objective"])
    report = {"passages": len(passages), "turns": len(turns), "rows": rows, "best": best,
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval_tune.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Hybrid weights tuned on DSTC11 ({len(passages)} FAQ passages, {len(turns)} FAQ-grounded turns)", "",
             "recall@1 / recall@5; objective = mean recall@1 of the three columns.", "",
             "| lexical | lexical_context | user turns | user + system turns | within entity | objective |",
             "| ---: | ---: | --- | --- | --- | ---: |"]
    for r in sorted(rows, key=lambda r: -r["objective"]):
        cells = [f"{r[c][0]:.3f} / {r[c][1]:.3f}" for c in ("user_turns", "user_and_system", "within_entity")]
        lines.append(f"| {r['lexical']} | {r['lexical_context']} | " + " | ".join(cells) + f" | {r['objective']} |")
    lines += ["", (f"Best: lexical {best['lexical']}, lexical_context {best['lexical_context']}. "
                   f"Run time {report['seconds']:.0f} s.")]
    (args.out / "retrieval_tune.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
