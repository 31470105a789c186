"""Retrieval recall on DSTC9 Track 1 (and the project KB), with and without conversation history.

Run from the project root::

    python bench/retrieval_dstc9.py [--data ../shared/data/dstc9] [--out bench/results] [--no-kb]

DSTC9: one passage per knowledge snippet (title ``"<entity name>: <snippet question>"``, text = the answer;
taxi and train snippets have no entity name, the domain stands in), indexed with the product's embedder and
:class:`retrieval.index.KnowledgeIndex`, searched with the product's query code
(:func:`retrieval.followup.search_with_history`). For every validation turn with ``target: true`` a search counts
as a hit at k when any gold ``{domain, entity_id, doc_id}`` is among the top k. Variants: no history (the last
user turn alone), the default conversation method, and a few alternatives.

Project KB (``data/kb`` with ``data/eval``, skipped if absent or with ``--no-kb``): article recall of the
answerable questions asked alone, the same questions asked after an unrelated question (a topic switch: the
history must not hurt), and the follow-ups with their history.

Writes ``<out>/retrieval_dstc9.json`` and ``<out>/retrieval_dstc9.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.settings import DEFAULT_KB, PROJECT_ROOT, SHARED_DATA
from retrieval.embedder import PACKAGED_EMBEDDER, load_embedder
from retrieval.followup import (
    DEFAULT_METHOD,
    HistoryMethod,
    build_query,
    search_with_history,
)
from retrieval.index import KnowledgeIndex
from retrieval.types import Passage

log = logging.getLogger("bench.retrieval_dstc9")

KS = (1, 5)


@dataclass(frozen=True)
class Variant:
    """One way of searching: which earlier turns it sees and the history method."""

    name: str
    method: HistoryMethod
    speakers: tuple[str, ...] = ("U",)  # DSTC9 speakers whose earlier turns count as history


VARIANTS: tuple[Variant, ...] = (
    Variant("no history (last user turn only)", HistoryMethod(kind="none")),
    Variant("context, question only (no history)", DEFAULT_METHOD, speakers=()),
    Variant("**context (default)**: user turns, weight 1, decay 0.8, 3 turns", DEFAULT_METHOD),
    Variant("context without the question among the turns", HistoryMethod(include_question=False)),
    Variant("context, weight 0.5", HistoryMethod(weight=0.5)),
    Variant("vector sum q + 0.5·Σ 0.5^i u_i, 3 turns", HistoryMethod(kind="vector_sum", weight=0.5, decay=0.5)),
    Variant("concat last user turn + question", HistoryMethod(kind="concat", turns=1)),
    Variant("context (default) over user **and system** turns", DEFAULT_METHOD, speakers=("U", "S")),
)
#: Variants also run on the project KB (no system turns there).
KB_VARIANTS = tuple(v for v in VARIANTS if v.speakers == ("U",) or v.method.kind == "none")


# ------------------------------------------------------------------------------------------------ DSTC9


def dstc9_passages(knowledge: dict) -> list[Passage]:
    """One passage per snippet; ``doc_id`` = ``domain/entity_id/doc_id``; grouped (``source``) by entity."""
    passages = []
    for domain, entities in knowledge.items():
        for entity_id, entity in entities.items():
            name = entity.get("name") or domain.capitalize()
            for doc_id, doc in entity["docs"].items():
                key = f"{domain}/{entity_id}/{doc_id}"
                passages.append(
                    Passage(
                        id=key,
                        doc_id=key,
                        title=f"{name}: {doc['title']}",
                        text=doc["body"],
                        source=f"dstc9:{domain}/{entity_id}",
                    )
                )
    return passages


def dstc9_turns(data: Path) -> list[dict]:
    """Target turns: ``{question, history: {speaker: [...]}, gold: {doc keys}, domain}``."""
    logs = json.loads((data / "val_logs.json").read_text(encoding="utf-8"))
    labels = json.loads((data / "val_labels.json").read_text(encoding="utf-8"))
    if len(logs) != len(labels):
        raise SystemExit(f"{data}: {len(logs)} dialogues but {len(labels)} labels; the files do not match.")
    turns = []
    for dialogue, label in zip(logs, labels):
        if not label.get("target"):
            continue
        gold = {f"{g['domain']}/{g['entity_id']}/{g['doc_id']}" for g in label["knowledge"]}
        turns.append(
            {
                "question": dialogue[-1]["text"],
                "earlier": [(u["speaker"], u["text"]) for u in dialogue[:-1]],
                "gold": gold,
                "domain": label["knowledge"][0]["domain"],
            }
        )
    return turns


def evaluate(
    index: KnowledgeIndex,
    items: Sequence[tuple[str, list[str], set[str], str]],
    method: HistoryMethod,
    key: Callable[[Passage], str],
    desc: str,
) -> dict:
    """Recall@k over ``items`` = (question, history, gold keys, group); ``key`` maps a passage to a gold key."""
    from tqdm.auto import tqdm

    queries = [build_query(question, history, method) for question, history, _, _ in items]
    if method.kind == "concat":
        texts = {q.text if q.turns else q.question for q in queries}
    else:
        texts = {t for q in queries for t in (q.question, *q.turns)}
    index.embed_queries(sorted(texts))  # one batched pass; the searches below hit the index's query cache
    hits = {k: 0 for k in KS}
    by_group: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for question, history, gold, group in tqdm(items, desc=desc, unit="turn", leave=False):
        found = [key(h.passage) in gold for h in search_with_history(index, question, history, max(KS), method)]
        for k in KS:
            hits[k] += any(found[:k])
        by_group[group][0] += any(found[: max(KS)])
        by_group[group][1] += 1
    n = len(items)
    return {
        "n": n,
        **{f"recall@{k}": round(hits[k] / n, 3) if n else None for k in KS},
        f"recall@{max(KS)}_by_group": {g: round(a / b, 3) for g, (a, b) in sorted(by_group.items())},
    }


def run_dstc9(data: Path, model) -> dict:
    knowledge = json.loads((data / "knowledge.json").read_text(encoding="utf-8"))
    passages = dstc9_passages(knowledge)
    t0 = time.perf_counter()
    index = KnowledgeIndex.from_passages(passages, model, progress=True)
    log.info("Indexed %d DSTC9 snippets in %.1f s", len(passages), time.perf_counter() - t0)
    turns = dstc9_turns(data)
    results = {}
    for v in VARIANTS:
        items = [
            (t["question"], [text for spk, text in t["earlier"] if spk in v.speakers], t["gold"], t["domain"])
            for t in turns
        ]
        results[v.name] = {"method": asdict(v.method), "speakers": list(v.speakers)}
        results[v.name] |= evaluate(index, items, v.method, key=lambda p: p.doc_id, desc=v.name[:40])
        log.info("%s: %s", v.name, results[v.name])
    return {"passages": len(passages), "turns": len(turns), "variants": results}


# ----------------------------------------------------------------------------------------- project KB


def run_kb(kb: Path, eval_dir: Path, model) -> dict:
    questions = [json.loads(x) for x in (eval_dir / "kb_questions.jsonl").read_text().splitlines() if x.strip()]
    followups = [json.loads(x) for x in (eval_dir / "kb_followups.jsonl").read_text().splitlines() if x.strip()]
    answerable = [q for q in questions if q.get("answerable")]
    index = KnowledgeIndex.build(kb, PACKAGED_EMBEDDER, chunk_tokens=180, progress=True, model=model)
    alone = [(q["question"], [], {q["article"]}, "alone") for q in answerable]
    switch = []  # the same questions after a question about another article
    for i, q in enumerate(answerable):
        j = (i + 7) % len(answerable)
        while answerable[j]["article"] == q["article"]:
            j = (j + 1) % len(answerable)
        switch.append((q["question"], [answerable[j]["question"]], {q["article"]}, "switch"))
    follow = [(f["question"], f["history"], {f["article"]}, "follow-up") for f in followups]
    out = {"passages": len(index), "variants": {}}
    for v in KB_VARIANTS:
        row = {}
        for label, items in (("alone", alone), ("topic switch", switch), ("follow-ups", follow)):
            r = evaluate(index, items, v.method, key=lambda p: p.doc_id, desc=f"kb {label}")
            row[label] = {k: r[k] for k in ("n", "recall@1", "recall@5")}
        out["variants"][v.name] = row
    return out


# ---------------------------------------------------------------------------------------------- report

CHOICE = """**Chosen: `context` (the default of `retrieval.followup`).** Score = cos(question, passage) + the best
(decayed, centred) similarity of the question or a recent user turn to the passage's *document* centroid. The
document signal carries the entity or article named earlier, which a passage-level mix (vector sum,
concatenation) dilutes: +0.19 recall@5 on DSTC9 over no history, against +0.05 for the vector sum. Keeping the
question among the context turns costs little on DSTC9 (0.824 vs 0.841) but is what keeps a topic switch safe
on the project KB (the switch column); a lower weight (0.5) is safer still on switches but weaker on
follow-ups. System turns help DSTC9 (the system often names the hotel), but the product passes user turns only.
"""


def markdown(report: dict) -> str:
    d = report["dstc9"]
    lines = [
        "# Retrieval recall: DSTC9 Track 1 validation (target turns) and the project KB",
        "",
        (f"Embedder `{report['embedder']}`, FAISS IndexFlatIP; {d['passages']} snippets, {d['turns']} target turns. "
         "A hit = a gold snippet among the top k. Per-domain column: recall@5."),
        "",
        "| variant | recall@1 | recall@5 | hotel @5 | restaurant @5 | train @5 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in d["variants"].items():
        g = r["recall@5_by_group"]
        cols = [g.get(x, "–") for x in ("hotel", "restaurant", "train")]
        lines.append(f"| {name} | {r['recall@1']:.3f} | {r['recall@5']:.3f} | " + " | ".join(map(str, cols)) + " |")
    kb = report.get("kb")
    if kb:
        lines += [
            "",
            f"## Project KB (`data/kb`, {kb['passages']} passages): article recall@1 / recall@5",
            "",
            "| variant | alone | after an unrelated question (topic switch) | follow-ups with history |",
            "| --- | --- | --- | --- |",
        ]
        for name, row in kb["variants"].items():
            cells = [f"{row[c]['recall@1']:.3f} / {row[c]['recall@5']:.3f}" for c in ("alone", "topic switch", "follow-ups")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        first = next(iter(kb["variants"].values()))
        lines.append(
            f"\n(n = {first['alone']['n']} answerable questions, {first['follow-ups']['n']} follow-ups.)"
        )
    lines += ["", CHOICE, f"Run time {report['seconds']:.0f} s on {report['machine']} (shared, loaded)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "dstc9", help="DSTC9 folder")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--no-kb", action="store_true", help="skip the project-KB section")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not (args.data / "knowledge.json").is_file():
        parser.error(f"{args.data} has no knowledge.json; pass --data <dstc9 folder>")
    import os
    import platform

    t0 = time.perf_counter()
    model = load_embedder(PACKAGED_EMBEDDER)
    report: dict = {"embedder": PACKAGED_EMBEDDER, "data": str(args.data), "dstc9": run_dstc9(args.data, model)}
    eval_dir = PROJECT_ROOT / "data" / "eval"
    if not args.no_kb and DEFAULT_KB.is_dir() and (eval_dir / "kb_questions.jsonl").is_file():
        report["kb"] = run_kb(DEFAULT_KB, eval_dir, model)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval_dstc9.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "retrieval_dstc9.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
