"""Size of an explained ``/ask`` answer: the old JSON (``TurnResult.to_dict``: full-precision floats, Shapley values
repeated as credit) against the compact API format at each detail level, in bytes per reply token.

Run: ``python bench/api_size.py [--max-new-tokens 160]``. Uses the chat tab's example questions (not the evaluation
sets), the default model and knowledge base; sizes are deterministic for a given reply (no timing involved). Writes
``bench/results/api_size.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's packages, not an installed copy
QUESTIONS = ["How long do I have to return an item?", "How much does express shipping cost?",
             "Do gift cards expire?"]


def measure(max_new_tokens: int) -> list[dict]:
    from tqdm import tqdm

    from agent.conversation import ConversationRunner
    from agent.pipeline import Agent
    from agent.settings import Settings
    from ui.api import MomentsApi

    settings = Settings(max_new_tokens=max_new_tokens)
    agent = Agent(settings)
    api = MomentsApi(settings, ConversationRunner(agent, None))
    rows = []
    for question in tqdm(QUESTIONS, desc="explained answers"):
        result = agent.ask(question, explain=True)
        n = max(1, len(result.token_ids))
        row = {"question": question, "reply_tokens": n, "old": len(json.dumps(result.to_dict()))}
        for detail in ("summary", "tokens", "full"):
            row[detail] = len(json.dumps(api.turn_out(result, detail)))
        rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    lines = ["| format | bytes per reply token (median) | range |", "| --- | --- | --- |"]
    for key in ("old", "summary", "tokens", "full"):
        per = [r[key] / r["reply_tokens"] for r in rows]
        lines.append(f"| {key} | {statistics.median(per):.0f} | {min(per):.0f}–{max(per):.0f} |")
    tokens = ", ".join(str(r["reply_tokens"]) for r in rows)
    note = f"Replies of {tokens} tokens (`python bench/api_size.py`); passage texts included in every format."
    return "\n".join(["# Explained /ask: JSON size", "", note, "", *lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    rows = measure(args.max_new_tokens)
    out = ROOT / "bench" / "results"
    (out / "api_size.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "api_size.md").write_text(report(rows))
    print(report(rows))


if __name__ == "__main__":
    main()
