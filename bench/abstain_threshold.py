"""Abstention threshold calibration on data/kb: best retrieval score of answerable vs unanswerable questions.

Run: ``python bench/abstain_threshold.py``. Writes ``bench/results/abstain_threshold.{json,md}``: for each threshold,
the share of answerable questions that would be handed over (false abstentions) and the share of unanswerable ones
that would be (correct abstentions). Retrieval only; the generator is not loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tqdm import tqdm

from agent.settings import Settings


def main() -> None:
    from agent.generation.loading import apply_threads
    from retrieval.index import KnowledgeIndex, index_dir_for

    settings = Settings()
    apply_threads(settings)
    index = KnowledgeIndex.load_or_build(settings.kb_path, index_dir_for(settings.index_dir, settings.kb_path),
                                         settings.embedder, settings.chunk_tokens)
    questions = [json.loads(line) for line in (ROOT / "data/eval/kb_questions.jsonl").read_text().splitlines()]
    best = {True: [], False: []}
    for q in tqdm(questions, desc="questions"):
        hits = index.search_conversation(q["question"], [], settings.top_k)
        best[bool(q["answerable"])].append(hits[0].score)
    rows = []
    for t in [0.25, 0.3, 0.35, 0.4, 0.45, 0.5]:
        rows.append({"threshold": t,
                     "false_abstain": sum(s < t for s in best[True]) / len(best[True]),
                     "correct_abstain": sum(s < t for s in best[False]) / len(best[False])})
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "abstain_threshold.json").write_text(json.dumps({"n_answerable": len(best[True]),
                                                            "n_unanswerable": len(best[False]),
                                                            "index_version": index.version, "rows": rows}, indent=2))
    lines = [f"# Abstention threshold on data/kb ({len(best[True])} answerable, {len(best[False])} unanswerable)",
             "", f"Default threshold: {settings.abstain_threshold}", "",
             "| threshold | answerable handed over | unanswerable handed over |", "| ---: | ---: | ---: |"]
    lines += [f"| {r['threshold']:.2f} | {r['false_abstain']:.1%} | {r['correct_abstain']:.1%} |" for r in rows]
    (out / "abstain_threshold.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
