"""Retrieval, every method side by side in one run: DSTC9 validation, data/kb and the unseen brightwave KB.

Run from the project root::

    python -m bench.retrieval [--dstc9 ../shared/data/dstc9] [--out bench/results] [--no-dstc9]

Methods (all through the product's search code, :meth:`retrieval.index.KnowledgeIndex.search_conversation`):
dense alone (the previous default), BM25 alone, reciprocal rank fusion, and the hybrid (the default) with
and without each of its parts. Its weights come from DSTC11 (``bench/retrieval_tune.py``); nothing here is
tuned on what it reports.

* DSTC9 validation target turns (``bench/retrieval_dstc9.py`` builds the passages): a hit at k = a gold
  snippet among the top k; history = the user's earlier turns (what the product passes) and, as a second
  column, user and system turns.
* data/kb (``data/eval/kb_questions.jsonl``) and data/eval/brightwave (evaluation only): article recall@1/@5
  of the answerable questions asked alone; "fact in top 4" / "fact in [1]": a passage holding every one of
  the question's ``facts`` (case-insensitive) among the 4 passages the product shows / first; abstention at the
  product's threshold (0.35 on the best hit's cosine): answerable questions handed over, unanswerable ones
  handed over (higher is better). data/kb also: the 18 follow-ups with their history and the answerable
  questions after an unrelated one (topic switch). Median search time per question (query embeddings cached).

Writes ``<out>/retrieval.json`` and ``<out>/retrieval.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.settings import DEFAULT_KB, PROJECT_ROOT, SHARED_DATA, Settings
from bench.retrieval_dstc9 import dstc9_passages, dstc9_turns
from retrieval.embedder import DEFAULT_EMBEDDER, load_embedder
from retrieval.followup import DEFAULT_METHOD, HistoryMethod
from retrieval.index import KnowledgeIndex
from retrieval.types import best_score

log = logging.getLogger("bench.retrieval")

METHODS: dict[str, HistoryMethod] = {
    "dense (previous default)": replace(DEFAULT_METHOD, lexical=0.0, lexical_context=0.0, exact=0.0),
    "BM25 alone": replace(DEFAULT_METHOD, kind="none", fusion="bm25"),
    "RRF dense + BM25 (k 10, BM25 weight 0.5)": replace(DEFAULT_METHOD, fusion="rrf", lexical=0.5),
    "hybrid without lexical context": replace(DEFAULT_METHOD, lexical_context=0.0),
    "hybrid without code terms": replace(DEFAULT_METHOD, exact=0.0),
    "**hybrid (default)**": DEFAULT_METHOD,
}


def recall_at(found: Sequence[bool]) -> tuple[bool, bool]:
    return bool(found[:1] and found[0]), any(found[:5])


def run_dstc9(data: Path, model) -> dict:
    knowledge = json.loads((data / "knowledge.json").read_text(encoding="utf-8"))
    index = KnowledgeIndex.from_passages(dstc9_passages(knowledge), model, progress=True)
    turns = dstc9_turns(data)
    out = {"passages": len(index), "turns": len(turns), "methods": {}}
    for name, method in METHODS.items():
        row = {}
        for label, speakers in (("user turns", ("U",)), ("user + system turns", ("U", "S"))):
            r1 = r5 = 0
            for t in turns:
                history = [text for spk, text in t["earlier"] if spk in speakers]
                hits = index.search_conversation(t["question"], history, 5, method)
                a, b = recall_at([h.passage.doc_id in t["gold"] for h in hits])
                r1, r5 = r1 + a, r5 + b
            row[label] = {"recall@1": round(r1 / len(turns), 3), "recall@5": round(r5 / len(turns), 3)}
        out["methods"][name] = row
        log.info("dstc9 %s: %s", name, row)
    return out


def has_facts(text: str, facts: Sequence[str]) -> bool:
    low = text.lower()
    return bool(facts) and all(f.lower() in low for f in facts)


def questions_row(index: KnowledgeIndex, questions: list[dict], method: HistoryMethod, threshold: float,
                  top_k: int) -> dict:
    """Article recall, fact-bearing passages and abstention for one method over answerable+unanswerable questions."""
    stats = {"r1": 0, "r5": 0, "fact4": 0, "fact1": 0, "ans_abstain": 0, "unans_abstain": 0}
    times = []
    answerable = [q for q in questions if q["answerable"]]
    index.embed_queries([q["question"] for q in questions])  # embedded once: the times below are search alone
    for q in questions:
        t0 = time.perf_counter()
        hits = index.search_conversation(q["question"], [], max(5, top_k), method)
        times.append((time.perf_counter() - t0) * 1000)
        shown = hits[:top_k]
        abstains = not shown or best_score(shown) < threshold
        if not q["answerable"]:
            stats["unans_abstain"] += abstains
            continue
        stats["ans_abstain"] += abstains
        a, b = recall_at([h.passage.doc_id == q["article"] for h in hits])
        stats["r1"] += a
        stats["r5"] += b
        facts = [has_facts(f"{h.passage.title}\n{h.passage.text}", q["facts"]) for h in shown]
        stats["fact4"] += any(facts)
        stats["fact1"] += bool(facts and facts[0])
    n, m = len(answerable), len(questions) - len(answerable)
    return {"n": n, "n_unanswerable": m, "recall@1": round(stats["r1"] / n, 3), "recall@5": round(stats["r5"] / n, 3),
            "fact in top 4": round(stats["fact4"] / n, 3), "fact in [1]": round(stats["fact1"] / n, 3),
            "answerable handed over": round(stats["ans_abstain"] / n, 3),
            "unanswerable handed over": round(stats["unans_abstain"] / m, 3) if m else None,
            "median ms": round(statistics.median(times), 2)}


def conversation_rows(index: KnowledgeIndex, eval_dir: Path, method: HistoryMethod) -> dict:
    """data/kb follow-ups (with history) and topic switches (after an unrelated question)."""
    questions = [json.loads(x) for x in (eval_dir / "kb_questions.jsonl").read_text().splitlines() if x.strip()]
    followups = [json.loads(x) for x in (eval_dir / "kb_followups.jsonl").read_text().splitlines() if x.strip()]
    answerable = [q for q in questions if q["answerable"]]
    switch = []
    for i, q in enumerate(answerable):
        j = (i + 7) % len(answerable)
        while answerable[j]["article"] == q["article"]:
            j = (j + 1) % len(answerable)
        switch.append((q["question"], [answerable[j]["question"]], q["article"]))
    follow = [(f["question"], f["history"], f["article"]) for f in followups]
    out = {}
    for label, items in (("follow-ups", follow), ("topic switch", switch)):
        r1 = r5 = 0
        for question, history, article in items:
            hits = index.search_conversation(question, history, 5, method)
            a, b = recall_at([h.passage.doc_id == article for h in hits])
            r1, r5 = r1 + a, r5 + b
        out[label] = {"n": len(items), "recall@1": round(r1 / len(items), 3), "recall@5": round(r5 / len(items), 3)}
    return out


def run_kb(name: str, kb: Path, questions_file: Path, model, settings: Settings, conversations: bool) -> dict:
    questions = [json.loads(x) for x in questions_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    index = KnowledgeIndex.build(kb, DEFAULT_EMBEDDER, settings.chunk_tokens, progress=False, model=model)
    out = {"passages": len(index), "methods": {}}
    for method_name, method in METHODS.items():
        row = questions_row(index, questions, method, settings.abstain_threshold, settings.top_k)
        if conversations:
            row |= conversation_rows(index, questions_file.parent, method)
        out["methods"][method_name] = row
        log.info("%s %s: %s", name, method_name, row)
    return out


NOTE = """Every method ranks by its own score but reports each hit's dense cosine as its score, so the abstention
threshold (0.35) keeps its meaning: the hand-over columns compare it. Hybrid = dense (with the document-context
bonus of `retrieval.followup`) + 0.3 x the BM25 document-context bonus of the question and earlier user turns +
0.3 x the BM25 score of the question's code-like terms; the passage-level BM25 weight tuned to 0 on DSTC11.
"""


def markdown(report: dict) -> str:
    lines = ["# Retrieval: every method side by side", "",
             (f"Embedder `{report['embedder']}`; hybrid weights from DSTC11 only (`bench/retrieval_tune.py`). "
              "recall@1 / recall@5 unless said otherwise."), ""]
    d = report.get("dstc9")
    if d:
        lines += [f"## DSTC9 validation ({d['passages']} snippets, {d['turns']} target turns)", "",
                  "| method | history = user turns (the product) | history = user + system turns |",
                  "| --- | --- | --- |"]
        for name, row in d["methods"].items():
            cells = [f"{row[c]['recall@1']:.3f} / {row[c]['recall@5']:.3f}" for c in ("user turns", "user + system turns")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    for key, title in (("kb", "data/kb (the default KB)"), ("brightwave", "data/eval/brightwave (unseen, evaluation only)")):
        k = report.get(key)
        if not k:
            continue
        first = next(iter(k["methods"].values()))
        conv = "follow-ups" in first
        lines += [(f"## {title}: {k['passages']} passages, {first['n']} answerable + {first['n_unanswerable']} "
                   "unanswerable questions"), "",
                  "| method | recall@1 / @5 | fact in top 4 | fact in [1] | answerable handed over | unanswerable "
                  "handed over | median ms" + (" | follow-ups | topic switch |" if conv else " |"),
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + (" --- | --- |" if conv else "")]
        for name, r in k["methods"].items():
            cells = [f"{r['recall@1']:.3f} / {r['recall@5']:.3f}", f"{r['fact in top 4']:.3f}", f"{r['fact in [1]']:.3f}",
                     f"{r['answerable handed over']:.3f}", f"{r['unanswerable handed over']:.3f}", f"{r['median ms']}"]
            if conv:
                cells += [f"{r[c]['recall@1']:.3f} / {r[c]['recall@5']:.3f}" for c in ("follow-ups", "topic switch")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [NOTE, f"Run time {report['seconds']:.0f} s on {report['machine']} (shared, loaded), 1 torch thread."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dstc9", type=Path, default=SHARED_DATA / "dstc9", help="DSTC9 folder")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--no-dstc9", action="store_true", help="skip DSTC9")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, settings = load_embedder(DEFAULT_EMBEDDER), Settings()
    report: dict = {"embedder": DEFAULT_EMBEDDER, "methods": {k: asdict(v) for k, v in METHODS.items()}}
    eval_dir = PROJECT_ROOT / "data" / "eval"
    report["kb"] = run_kb("kb", DEFAULT_KB, eval_dir / "kb_questions.jsonl", model, settings, conversations=True)
    bw = eval_dir / "brightwave"
    report["brightwave"] = run_kb("brightwave", bw / "kb", bw / "questions.jsonl", model, settings, conversations=False)
    if not args.no_dstc9 and (args.dstc9 / "knowledge.json").is_file():
        report["dstc9"] = run_dstc9(args.dstc9, model)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "retrieval.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
