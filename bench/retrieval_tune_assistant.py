"""Tuning how much the assistant's turns count in follow-up search, on DSTC11 dialogues only (never DSTC9 or data/eval).

Run from the project root::

    python -m bench.retrieval_tune_assistant [--data ../shared/data/dstc11] [--out bench/results]

The same DSTC11 FAQ passages and FAQ-grounded target turns as ``bench/retrieval_tune.py``. The history is passed
as the product now passes it: user turns and the assistant's (system) turns, typed
(:class:`retrieval.types.Turn`). For each (``assistant``, ``decay``) of a small grid (the hybrid weights of
:data:`retrieval.followup.DEFAULT_METHOD` otherwise) the product's ranking (:func:`retrieval.followup.ranking_scores`
on the dense ``context`` score) is scored by recall@1 / @5 on (a) the follow-ups: each target turn after its own
dialogue, and (b) topic switches: every target turn whose question names its entity, asked after the history of
another dialogue about another entity (whose assistant turns name that other entity): a weight that lets the
assistant's last words outvote a question naming a new subject fails here. The objective is the mean recall@1 of
(a) and (b). ``assistant = 0`` is the previous behaviour (assistant turns ignored).

Writes ``<out>/retrieval_tune_assistant.json`` and ``.md``.
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
from bench.retrieval_tune import dstc11_faqs
from retrieval.embedder import load_embedder
from retrieval.followup import (
    DEFAULT_METHOD,
    HistoryMethod,
    build_query,
    context_scores,
    ranking_scores,
)
from retrieval.index import KnowledgeIndex
from retrieval.types import Turn

log = logging.getLogger("bench.retrieval_tune_assistant")
ASSISTANT = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
DECAY = (0.6, 0.8, 1.0)


def typed(earlier: Sequence[tuple[str, str]]) -> list[Turn]:
    """DSTC speaker labels (U / S) as typed turns."""
    return [Turn(text, "assistant" if speaker == "S" else "user") for speaker, text in earlier]


def recall(index: KnowledgeIndex, turns, method: HistoryMethod) -> tuple[float, float]:
    """Recall@1 and @5 of the product's ranking with typed user + assistant history."""
    keys = [p.doc_id for p in index.passages]
    r1 = r5 = 0
    for question, earlier, gold in turns:
        q = build_query(question, typed(earlier), method)
        vecs = index.embed_queries([q.question, *q.turns])
        dense, _, _ = context_scores(index, vecs[0], vecs[1:], np.asarray(q.weights, np.float32), method)
        scores = ranking_scores(index, dense, q.question, q.turns, q.weights, method)
        found = [keys[i] in gold for i in np.argsort(-scores, kind="stable")[:5]]
        r1, r5 = r1 + found[0], r5 + any(found)
    return round(r1 / len(turns), 3), round(r5 / len(turns), 3)


def topic_switches(passages, turns) -> list:
    """Target turns whose question names their entity, each asked after the history of the next dialogue (in
    order) that is about another entity."""
    names = {p.source: p.title.split(":", 1)[0].strip().lower() for p in passages}
    entity = {p.doc_id: p.source for p in passages}
    out = []
    for i, (question, _, gold) in enumerate(turns):
        mine = {entity[g] for g in gold}
        if not any(names[e] and names[e] in question.lower() for e in mine):
            continue
        for j in range(i + 1, i + len(turns)):
            other_q, other_history, other_gold = turns[j % len(turns)]
            if not mine & {entity[g] for g in other_gold}:
                out.append((question, [*other_history, ("U", other_q)], gold))
                break
    return out


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
    texts = {q for q, _, _ in turns} | {t for _, e, _ in turns for _, t in e[-8:]}
    index.embed_queries(sorted(texts))
    log.info("%d topic switches", len(topic_switches(passages, turns)))
    switches = topic_switches(passages, turns)
    rows = []
    for assistant, decay in itertools.product(ASSISTANT, DECAY):
        method = replace(DEFAULT_METHOD, assistant=assistant, decay=decay)
        follow, switch = recall(index, turns, method), recall(index, switches, method)
        rows.append({"assistant": assistant, "decay": decay, "follow-ups": follow, "topic switch": switch,
                     "objective": round((follow[0] + switch[0]) / 2, 4)})
        log.info("%s", rows[-1])
    best = max(rows, key=lambda r: (r["objective"], r["follow-ups"][1]))
    report = {"passages": len(passages), "turns": len(turns), "switches": len(switches), "rows": rows, "best": best,
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval_tune_assistant.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [(f"# Assistant turns in follow-up search, tuned on DSTC11 ({len(passages)} FAQ passages, "
              f"{len(turns)} FAQ-grounded turns, {len(switches)} topic switches)"), "",
             ("History = user and assistant turns, typed; hybrid weights of the default otherwise. recall@1 / @5; "
              "objective = mean recall@1 of the two columns."), "",
             "| assistant | decay | follow-ups | topic switch | objective |", "| ---: | ---: | --- | --- | ---: |"]
    lines += [(f"| {r['assistant']} | {r['decay']} | {r['follow-ups'][0]:.3f} / {r['follow-ups'][1]:.3f} | "
               f"{r['topic switch'][0]:.3f} / {r['topic switch'][1]:.3f} | {r['objective']} |")
              for r in sorted(rows, key=lambda r: -r["objective"])]
    lines += ["", f"Best: assistant {best['assistant']}, decay {best['decay']}. Run time {report['seconds']:.0f} s."]
    (args.out / "retrieval_tune_assistant.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
