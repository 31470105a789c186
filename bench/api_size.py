"""Size of an explained ``/ask`` answer, per reply token, for a quoted reply and a generated one, as an API caller
receives it: the app launched on localhost and called through ``gradio_client`` at each detail level of the compact
explanation format, against the turn's full JSON (``TurnResult.to_dict``: full-precision floats, Shapley values
repeated as credit) read back from the store.

Run: ``python -m bench.api_size [--max-new-tokens 160]``. Two apps share the default model and knowledge base: the
default answer mode (``quote``) and ``answer_mode=generate``; both explain with the default method (the instant
estimate, the exact explanation following in the background). Uses the chat tab's example questions (not the
evaluation sets); sizes are deterministic for a given reply (greedy decoding, no timing in the counted JSON: the
``timings`` field is dropped before counting). Writes ``bench/results/api_size.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's packages, not an installed copy (also as `python bench/api_size.py`)
QUESTIONS = ["How long do I have to return an item?", "How much does express shipping cost?",
             "Do gift cards expire?"]
DETAILS = ("summary", "tokens", "full")
MODES = ("quote", "generate")


def _size(value: dict) -> int:
    return len(json.dumps({k: v for k, v in value.items() if k != "timings"}))


def measure(max_new_tokens: int) -> list[dict]:
    from gradio_client import Client
    from tqdm import tqdm

    from agent.pipeline import Agent
    from agent.settings import Settings
    from agent.store import Store
    from ui.app import build_app
    from ui.render import CSS

    base = Agent(Settings(max_new_tokens=max_new_tokens, auth="none"))
    base.warm_up()
    rows = []
    with tempfile.TemporaryDirectory(prefix="moments-api-size-") as tmp:
        for mode in MODES:
            settings = Settings(max_new_tokens=max_new_tokens, answer_mode=mode, auth="none",
                                database_url=f"sqlite:///{tmp}/{mode}.db")
            store = Store(settings.db_url)
            agent = Agent(settings, generator=base.generator, index=base.index)
            demo = build_app(settings, agent=agent, store=store)
            demo.queue(default_concurrency_limit=1)
            _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True)
            try:
                client = Client(url, verbose=False)
                for question in tqdm(QUESTIONS, desc=f"explained /ask ({mode})"):
                    row: dict = {"mode": mode, "question": question}
                    for detail in DETAILS:
                        out = client.predict(question, "", True, detail, api_name="/ask")
                        row[detail] = _size(out)
                        if detail == "tokens":
                            row["reply_tokens"] = len(out["explanation"]["tokens"])
                            row["answer_method"] = out["answer_method"]
                            row["estimator"] = out["explanation"]["estimator"]
                            row["old"] = _size(store.get_result(out["turn_id"]).to_dict())
                    rows.append(row)
            finally:
                demo.close()
    return rows


def report(rows: list[dict]) -> str:
    out = ["# Explained /ask: JSON size per reply token", "",
           ("Measured through `gradio_client` against the launched app (`python -m bench.api_size`), the chat tab's "
            "three example questions, the default explanation (the instant estimate), `timings` left out; passage "
            "texts are in every format. *old* = the turn's full JSON (`TurnResult.to_dict`)."), ""]
    for mode in MODES:
        sub = [r for r in rows if r["mode"] == mode]
        if not sub:
            continue
        tokens = ", ".join(str(r["reply_tokens"]) for r in sub)
        methods = ", ".join(sorted({r["answer_method"] for r in sub}))
        estimators = ", ".join(sorted({r["estimator"] for r in sub}))
        out += [f"## answer_mode={mode}: replies of {tokens} tokens (answer_method {methods}, explanation {estimators})",
                "",
                "| format | bytes per reply token (median) | range | bytes (median) |", "| --- | --- | --- | --- |"]
        for key in ("old", *DETAILS):
            per = [r[key] / max(1, r["reply_tokens"]) for r in sub]
            out.append(f"| {key} | {statistics.median(per):.0f} | {min(per):.0f}–{max(per):.0f} | "
                       f"{statistics.median(r[key] for r in sub):.0f} |")
        out.append("")
    return "\n".join(out)


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
