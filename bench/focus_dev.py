"""Evidence focus on development data: how often the best sentence is the answer, and where to hand over.

Usage (from the project root)::

    python -m bench.focus_dev            # 300 answerable + 200 gold-removed DSTC development prompts

The prompts are the held-out-entity side of the facts recipe (:func:`agent.training.facts.build_facts`, packed
passages of DSTC9/DSTC11 FAQ answers; entities never trained on, and no ``data/eval`` question). Two figures, written
to ``bench/results/focus_dev.{md,json}``:

* **sentence pick**: the share of answerable prompts whose best-scoring sentence (over all passages) is a sentence of
  the gold answer in the gold passage, with each sentence embedded alone or after its title and heading
  (``Focus(context=...)``; the shipped default is ``context=True``);
* **answer threshold**: the best-sentence cosine of answerable prompts against prompts whose answer was removed
  (``unanswerable_rate=1``), the AUC, and the threshold at 1/3/5/10% false hand-overs with the share of unanswerable
  prompts it catches (``Settings.answer_threshold`` = the 3% one, rounded).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def sentence_pick(examples, focus) -> float:
    """Share of ``examples`` whose best sentence over all passages is a gold sentence of a gold passage."""
    ok = 0
    for e in examples:
        scored = focus.unit_scores(e.question, e.passages)
        j, unit, _ = max(((j, u, s) for j, us in enumerate(scored) for u, s in us), key=lambda x: x[2])
        ok += j in e.gold and _norm(unit.text) in _norm(e.reference)
    return ok / len(examples)


def best_scores(examples, focus) -> np.ndarray:
    return np.array([max((s for us in focus.unit_scores(e.question, e.passages) for _, s in us), default=0.0)
                     for e in examples])


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from agent.generation.focus import Focus
    from agent.settings import SHARED_DATA
    from agent.training.facts import FactConfig, build_facts
    from retrieval.embedder import embed, load_embedder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="answerable prompts (gold-removed: 2/3 of it)")
    args = p.parse_args(argv)
    held = build_facts(FactConfig(shared_data=SHARED_DATA, unanswerable_rate=1.0)).eval
    ans = [e for e in held if e.answerable and e.gold]
    unans = [e for e in held if e.source == "facts-unanswerable"]
    random.Random(0).shuffle(ans)
    random.Random(1).shuffle(unans)
    ans, unans = ans[: args.n], unans[: args.n * 2 // 3]
    model = load_embedder()
    report: dict = {"command": "python -m bench.focus_dev " + " ".join(sys.argv[1:] if argv is None else argv),
                    "n_answerable": len(ans), "n_unanswerable": len(unans), "sentence_pick": {}}
    for context in tqdm((False, True), desc="sentence pick", unit="variant"):
        focus = Focus(lambda t: embed(model, list(t)), keep=2, context=context)
        report["sentence_pick"][f"context={context}"] = round(sentence_pick(ans, focus), 3)
    focus = Focus(lambda t: embed(model, list(t)), keep=2, context=True)
    a, u = best_scores(ans, focus), best_scores(unans, focus)
    report["auc"] = round(float((a[:, None] > u[None, :]).mean()), 3)
    report["thresholds"] = {f"{q:.0%}": {"threshold": round(float(np.quantile(a, q)), 3),
                                         "unanswerable_caught": round(float(np.mean(u < np.quantile(a, q))), 3)}
                            for q in (0.01, 0.03, 0.05, 0.10)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "focus_dev.json").write_text(json.dumps(report, indent=1))
    lines = ["# Evidence focus on DSTC development prompts (held-out entities)", "", f"Command: `{report['command']}`",
             "", f"{len(ans)} answerable, {len(unans)} with the answer removed.", "",
             "| sentence embedded | best sentence is the answer |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["sentence_pick"].items()]
    lines += ["", f"Best-sentence cosine, answerable vs answer removed: AUC {report['auc']}.", "",
              "| false hand-overs (answerable) | threshold | unanswerable caught |", "|---|---|---|"]
    lines += [f"| {k} | {v['threshold']} | {v['unanswerable_caught']} |" for k, v in report["thresholds"].items()]
    (RESULTS / "focus_dev.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
