"""Compare every LoRA training run kept in ``bench/results`` on the same evaluation prompts.

Reads ``lora_eval_preds_tuned-v<N>.jsonl`` (and ``lora_eval_preds_tuned.jsonl``, the shipped adapter), the run
records ``lora_train_run-v<N>.json`` / ``lora_train_run.json`` and the cached prompts written by
``bench/lora_eval.py`` (``~/.cache/moments/train/lora_eval_items.jsonl``), scores them with
:func:`bench.lora_eval.score`, and writes ``bench/results/lora_runs.md``. Usage: ``python -m bench.lora_runs``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bench.lora_eval import score

RESULTS = Path(__file__).resolve().parent / "results"
COLS = [("heldout_token_f1", "held-out F1"), ("kb_token_f1", "kb F1"), ("kb_fact_accuracy", "kb facts"),
        ("false_abstention_rate", "false hand-overs"), ("abstain_precision", "abst. precision"),
        ("abstain_recall", "abst. recall"), ("heldout_citation_precision", "citations on gold (held-out)")]


def _recipe(run: dict) -> str:
    c = run.get("config", {})
    return (f"{run.get('steps')} steps, lr {c.get('lr')}, top {c.get('lora_layers')} layers, unanswerable "
            f"{c.get('unanswerable_rate')}, hand-over chit-chat {c.get('handover_chitchat', True)}, grounded Bitext "
            f"{c.get('bitext_grounded', False)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=Path, default=Path("~/.cache/moments/train/lora_eval_items.jsonl").expanduser())
    args = p.parse_args(argv)
    items = [json.loads(x) for x in args.items.read_text().splitlines() if x.strip()]
    rows = []
    for name in ("base", "qwen"):
        rows.append((name, "untuned", RESULTS / f"lora_eval_preds_{name}.jsonl"))
    for path in sorted(RESULTS.glob("lora_eval_preds_tuned-v*.jsonl"), key=lambda q: int(re.findall(r"\d+", q.name)[-1])):
        tag = path.stem.rsplit("-", 1)[1]
        run_path = RESULTS / f"lora_train_run-{tag}.json"
        rows.append((tag, _recipe(json.loads(run_path.read_text())) if run_path.is_file() else "",
                     path))
    shipped = RESULTS / "lora_eval_preds_tuned.jsonl"
    rows.append(("shipped", _recipe(json.loads((RESULTS / "lora_train_run.json").read_text())), shipped))
    lines = ["# LoRA runs compared on the same prompts", "",
             f"{len(items)} prompts of `bench/lora_eval.py` (greedy, max_new_tokens 48). `python -m bench.lora_runs`.", "",
             ("v4 and v5 trained on one or two fixed hand-over strings; from v6 on, the hand-over, abstention and closing "
             "replies are varied pools (`agent/training/data.py`). `shipped` is `data/adapters/smollm2-135m-support` "
             "(run v8)."), "",
             "| run | recipe | " + " | ".join(c for _, c in COLS) + " |", "|---" * (len(COLS) + 2) + "|"]
    for tag, recipe, path in rows:
        preds = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        s = score(items, preds)
        lines.append(f"| {tag} | {recipe} | " + " | ".join(str(s.get(k)) for k, _ in COLS) + " |")
    (RESULTS / "lora_runs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
