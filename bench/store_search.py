"""The store's text filter at scale: full-text index (revision 0006) against the substring scan it replaced.

    python -m bench.store_search [--conversations 50000] [--out bench/results]

Fills a fresh SQLite file and a fresh PostgreSQL schema (the test server, ``MOMENTS_TEST_POSTGRES_URL``) with
``--conversations`` conversations of one question and one answer each (sentences of the shipped knowledge base,
``data/kb``, shuffled with a fixed seed), then times ``Store.count_conversations`` and one 25-row page of
``Store.list_conversations`` for a fixed list of searches, alternating the two methods round by round (median and
range over the rounds): the full-text match the store uses now, and the case-insensitive substring test
(``icontains``) it used before. It also reports how many conversations each finds: the two do not mean the same
(words, stemmed, in order vs. any substring), so the counts differ where they should.

Writes ``<out>/store_search.json`` and ``<out>/store_search.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.settings import DEFAULT_KB, PROJECT_ROOT
from agent.store import Store, queries
from agent.store.testing import (
    TEST_POSTGRES_URL,
    postgres_unreachable_reason,
    temporary_postgres_schema,
)

log = logging.getLogger("bench.store_search")

SEARCHES = ("refund", "gift cards", "return an item", "NW-12345678", "password reset", "dishwasher", "zebra")


def sentences() -> list[str]:
    out: list[str] = []
    for path in sorted(DEFAULT_KB.glob("*.md")):
        text = re.sub(r"[#*|`>_-]+", " ", path.read_text(encoding="utf-8"))
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.split()) >= 5]
    return out


def fill(store: Store, n: int, seed: int = 0) -> None:
    """``n`` conversations with a question and an answer each, written in bulk (the triggers index the text)."""
    from sqlalchemy import insert
    from tqdm import tqdm

    from agent.store.models import Conversation, Turn

    rng = random.Random(seed)
    pool = sentences()
    now = datetime.now(UTC)
    batch = 2000
    for start in tqdm(range(0, n, batch), desc="filling", unit="batch"):
        convs, turns = [], []
        for _ in range(min(batch, n - start)):
            cid = uuid.uuid4()
            convs.append({"id": cid, "channel": "ui", "status": "open", "tags": [], "created_at": now,
                          "updated_at": now, "title": None, "operator": None})
            question = rng.choice(pool)
            if rng.random() < 0.01:
                question += " My order is NW-12345678."
            turns += [{"conversation_id": cid, "index": 0, "role": "user", "text": question, "status": "ok",
                       "latency": {}, "versions": {}, "created_at": now},
                      {"conversation_id": cid, "index": 1, "role": "assistant", "text": " ".join(rng.sample(pool, 2)),
                       "status": "ok", "latency": {}, "versions": {}, "created_at": now}]
        with store.connect() as conn:
            conn.execute(insert(Conversation), convs)
            conn.execute(insert(Turn), turns)
            conn.commit()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def measure(store: Store, rounds: int) -> dict:
    """Per search and method: median / min / max ms of a count and of a first page, and the count."""
    from sqlmodel import col

    from agent.store.models import Turn

    fulltext = queries.text_clause
    methods = {"full-text (now)": fulltext,
               "substring scan (before)": lambda q: col(Turn.text).icontains(q, autoescape=True)}
    times: dict = {q: {m: {"count": [], "page": []} for m in methods} for q in SEARCHES}
    found: dict = {q: {} for q in SEARCHES}
    try:
        for r in range(rounds):
            order = list(methods) if r % 2 == 0 else list(methods)[::-1]
            for q in SEARCHES:
                for m in order:
                    queries.text_clause = methods[m]
                    ms, n = timed(lambda q=q: store.count_conversations(queries.ConversationFilter(text=q)))
                    times[q][m]["count"].append(ms)
                    ms, _ = timed(lambda q=q: store.list_conversations(text=q, limit=25))
                    times[q][m]["page"].append(ms)
                    found[q][m] = n
    finally:
        queries.text_clause = fulltext
    return {q: {m: {"found": found[q][m],
                    **{k: {"median_ms": round(statistics.median(v), 2), "min_ms": round(min(v), 2),
                           "max_ms": round(max(v), 2)} for k, v in times[q][m].items()}}
                for m in methods} for q in SEARCHES}


def markdown(report: dict) -> str:
    lines = ["# The store's text filter: full-text index vs substring scan", "",
             f"Command: `python -m bench.store_search --conversations {report['conversations']}`  ",
             (f"{report['conversations']} conversations ({2 * report['conversations']} turns: sentences of data/kb), "
              f"{report['rounds']} rounds alternating the methods; median ms (min–max) of `count_conversations` and "
              "of one 25-row page of `list_conversations`; found = conversations matched (full-text: the words, "
              "stemmed, in order; substring: anywhere, so 'refund' also matches 'non-refundable')."), ""]
    for backend, res in report["backends"].items():
        if "skipped" in res:
            lines += [f"## {backend}: skipped ({res['skipped']})", ""]
            continue
        lines += [f"## {backend} (filled in {res['fill_s']} s)", "",
                  "| search | method | found | count ms | page ms |", "| --- | --- | ---: | ---: | ---: |"]
        for q, by in res["searches"].items():
            for m, r in by.items():
                c, p = r["count"], r["page"]
                lines.append(f"| {q} | {m} | {r['found']} | {c['median_ms']} ({c['min_ms']}–{c['max_ms']}) | "
                             f"{p['median_ms']} ({p['min_ms']}–{p['max_ms']}) |")
        lines.append("")
    lines.append(f"Run time {report['seconds']:.0f} s on {report['machine']} (shared machine).")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conversations", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    report: dict = {"conversations": args.conversations, "rounds": args.rounds, "backends": {}}
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="moments-store-search-"))
        urls = {"SQLite": f"sqlite:///{folder}/search.db"}
        reason = postgres_unreachable_reason(TEST_POSTGRES_URL)
        if reason is None:
            urls["PostgreSQL"] = stack.enter_context(temporary_postgres_schema(TEST_POSTGRES_URL))
        else:
            report["backends"]["PostgreSQL"] = {"skipped": reason}
        for backend, url in urls.items():
            with Store(url) as store:
                t1 = time.perf_counter()
                fill(store, args.conversations)
                fill_s = round(time.perf_counter() - t1, 1)
                if backend == "PostgreSQL":
                    with store.connect() as conn:
                        from sqlalchemy import text

                        conn.execute(text("ANALYZE"))
                        conn.commit()
                report["backends"][backend] = {"fill_s": fill_s, "searches": measure(store, args.rounds)}
                log.info("%s done", backend)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "store_search.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (args.out / "store_search.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
