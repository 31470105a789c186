"""Retrieval at size: search latency at 100,000 passages (HNSW vs exact) and updating one article of 1,000.

Run from the project root::

    python -m bench.retrieval_scale [--passages 100000] [--articles 1000] [--out bench/results]

1. Synthetic index: ``--passages`` unit vectors of the embedder's dimension around 500 random centres, each with a
   synthetic text (words of a made-up vocabulary and a code) so that BM25 has work to do. The same vectors in the
   product's automatic index (HNSW above :data:`retrieval.ann.ANN_THRESHOLD`) and in an exact flat index. 200
   queries (perturbed passage vectors, with three of the passage's words as their text; query embeddings are
   pre-filled, so only search is timed), each method timed in turn per query (alternating), 1 thread: the dense
   FAISS search (k 10), the product's hybrid ``search`` and ``search_conversation`` with one earlier turn (k 4).
   The perturbation (Gaussian, sigma :data:`QUERY_NOISE` per dimension) puts a query at a median cosine of 0.46
   from its passage, as close as real questions are to their answer (DSTC11 questions and their gold FAQ with the
   default embedder: median 0.465). recall@10 of HNSW against exact search for those queries and, as a stress
   case, for queries at sigma :data:`HARD_NOISE` (median cosine 0.10 from their passage: below the abstention
   threshold, near-ties everywhere), which the previous version of this bench used for every row.
2. Update: a knowledge base of ``--articles`` Markdown articles (synthetic text), built once; then one article is
   changed and ``KnowledgeIndex.load_or_build`` updates the saved index, three times (different articles): wall
   time and the passages embedded.

Writes ``<out>/retrieval_scale.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.settings import PROJECT_ROOT
from retrieval import ann
from retrieval.embedder import load_embedder, normalise
from retrieval.index import KnowledgeIndex, index_dir_for
from retrieval.types import Passage

log = logging.getLogger("bench.retrieval_scale")
DIM = 384
QUERY_NOISE, HARD_NOISE = 0.1, 0.5


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Passage], list[str]]:
    vocab = [f"w{i:04d}" for i in range(5000)]
    centres = rng.normal(size=(500, DIM))
    topic = rng.integers(0, 500, n)
    vectors = normalise(centres[topic] + 0.7 * rng.normal(size=(n, DIM)))
    passages = []
    for i in range(n):
        words = [vocab[(topic[i] * 10 + j) % 5000] for j in range(4)] + list(rng.choice(vocab, 8))
        passages.append(Passage(id=f"p{i}", doc_id=f"d{i // 5}", title=f"Article {i // 5}",
                                text=" ".join(words) + f" code K-{i:06d}", source=f"d{i // 5}"))
    return vectors, passages, vocab


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def run_search(n: int, model, rng: np.random.Generator) -> dict:
    vectors, passages, _ = synthetic(n, rng)
    t0 = time.perf_counter()
    auto = KnowledgeIndex.from_vectors(passages, vectors, model, {"version": "synthetic"})
    build_auto = time.perf_counter() - t0
    exact = KnowledgeIndex(passages, ann.make_index(vectors, threshold=n + 1)[0], model, {"version": "exact"})
    exact._vectors = vectors
    t0 = time.perf_counter()
    auto.lexical()
    exact._lexical = auto.lexical()
    build_bm25 = time.perf_counter() - t0
    picks = rng.choice(n, 200, replace=False)
    queries = normalise(vectors[picks] + QUERY_NOISE * rng.normal(size=(200, DIM)))
    hard = normalise(vectors[picks] + HARD_NOISE * rng.normal(size=(200, DIM)))
    texts = [" ".join(passages[i].text.split()[:3]) for i in picks]
    for ix in (auto, exact):
        ix._query_cache.update({t: q for t, q in zip(texts, queries)})
        ix._query_cache["tell me about that article"] = queries[0]
        ix.check()
    times: dict[str, list[float]] = {}
    recall = []
    methods = {
        f"dense, {auto.meta['faiss']} (k 10)": lambda q, t: auto.search_vector(q, 10),
        "dense, exact flat (k 10)": lambda q, t: exact.search_vector(q, 10),
        f"hybrid search, {auto.meta['faiss']} (k 4)": lambda q, t: auto.search(t, 4),
        "hybrid search, exact flat (k 4)": lambda q, t: exact.search(t, 4),
        f"search_conversation + 1 turn, {auto.meta['faiss']} (k 4)":
            lambda q, t: auto.search_conversation(t, ["tell me about that article"], 4),
    }
    for q, t in zip(queries, texts):
        results = {}
        for name, fn in methods.items():  # alternating: every method once per query
            t0 = time.perf_counter()
            results[name] = fn(q, t)
            times.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        got = {h.passage.id for h in results[next(iter(methods))]}
        want = {h.passage.id for h in results["dense, exact flat (k 10)"]}
        recall.append(len(got & want) / 10)
    hard_recall = [len({h.passage.id for h in auto.search_vector(q, 10)}
                       & {h.passage.id for h in exact.search_vector(q, 10)}) / 10 for q in hard]
    return {"passages": n, "faiss": auto.meta["faiss"], "build_seconds": round(build_auto, 1),
            "hnsw": {"M": ann.HNSW_M, "efConstruction": ann.HNSW_EF_CONSTRUCTION, "efSearch": ann.HNSW_EF_SEARCH,
                     "candidates": ann.CANDIDATES},
            "query_cosine_median": round(float(np.median((queries * vectors[picks]).sum(1))), 3),
            "hard_query_cosine_median": round(float(np.median((hard * vectors[picks]).sum(1))), 3),
            "hard_recall@10_vs_exact": round(float(np.mean(hard_recall)), 4),
            "bm25_build_seconds": round(build_bm25, 1), "recall@10_vs_exact": round(float(np.mean(recall)), 4),
            "ms": {k: {"p50": pct(v, 50), "p95": pct(v, 95), "max": pct(v, 100)} for k, v in times.items()}}


def run_update(articles: int, model, rng: np.random.Generator) -> dict:
    vocab = [f"word{i}" for i in range(3000)]
    with tempfile.TemporaryDirectory() as tmp:
        kb = Path(tmp) / "kb"
        kb.mkdir()
        for a in range(articles):
            body = "\n\n".join(" ".join(rng.choice(vocab, 30)) + "." for _ in range(3))
            (kb / f"article-{a:04d}.md").write_text(f"# Article {a}\n\n## Section\n\n{body}\n", encoding="utf-8")
        idx_dir = index_dir_for(Path(tmp) / "indexes", kb)
        t0 = time.perf_counter()
        first = KnowledgeIndex.load_or_build(kb, idx_dir, progress=True)
        full = time.perf_counter() - t0
        runs = []
        for a in (7, articles // 2, articles - 3):
            path = kb / f"article-{a:04d}.md"
            path.write_text(path.read_text(encoding="utf-8") + "\nOne more sentence about returns.\n", encoding="utf-8")
            t0 = time.perf_counter()
            updated = KnowledgeIndex.load_or_build(kb, idx_dir, progress=False)
            runs.append({"seconds": round(time.perf_counter() - t0, 2), "embedded": updated.meta["n_embedded"],
                         "reused": updated.meta["n_reused"]})
    return {"articles": articles, "passages": len(first), "full_build_seconds": round(full, 1), "updates": runs,
            "median_update_seconds": statistics.median(r["seconds"] for r in runs)}


def markdown(report: dict) -> str:
    s, u = report["search"], report["update"]
    lines = ["# Retrieval at size", "",
             (f"## Search over {s['passages']:,} synthetic passages (dim {DIM}; index `{s['faiss']}` chosen "
              f"automatically, built in {s['build_seconds']} s; BM25 built in {s['bm25_build_seconds']} s)"), "",
             (f"HNSW M {s['hnsw']['M']}, efConstruction {s['hnsw']['efConstruction']}, efSearch "
              f"{s['hnsw']['efSearch']}, {s['hnsw']['candidates']} dense candidates per hybrid search. recall@10 of "
              f"the {s['faiss']} index against exact search: **{s['recall@10_vs_exact']}** (200 queries at a median "
              f"cosine {s['query_cosine_median']} from their passage, as real questions are); "
              f"{s['hard_recall@10_vs_exact']} for 200 stress queries at median cosine "
              f"{s['hard_query_cosine_median']} (below the abstention threshold). Times: the first 200."),
             "", "| method | p50 ms | p95 ms | max ms |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {k} | {v['p50']} | {v['p95']} | {v['max']} |" for k, v in s["ms"].items()]
    lines += ["", (f"## Updating one article of {u['articles']:,} ({u['passages']:,} passages; full build "
                   f"{u['full_build_seconds']} s)"), "", "| run | seconds | passages embedded | re-used |",
              "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {i} | {r['seconds']} | {r['embedded']} | {r['reused']} |" for i, r in enumerate(u["updates"], 1)]
    lines += ["", (f"Median update {u['median_update_seconds']} s. Run time {report['seconds']:.0f} s on "
              f"{report['machine']} (shared, loaded), 1 thread.")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    model, rng = load_embedder(), np.random.default_rng(0)
    report = {"search": run_search(args.passages, model, rng), "update": run_update(args.articles, model, rng)}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval_scale.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "retrieval_scale.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
