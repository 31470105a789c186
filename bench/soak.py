"""Soak: a steady load on the launched app for a bounded time; memory, errors, and every acknowledged turn stored
(issue 14, load).

Run: ``nice -n 10 python -m bench.soak [--clients 4] [--minutes 10] [--interval-s 60] [--drain-s 300]``. Writes
``bench/results/soak.{json,md,png}`` (``--name``: another stem). ``--malloc-arenas N`` sets the server's
``MOMENTS_MALLOC_ARENAS`` (default: the setting's own default, 2; 0: glibc's default, for the control run).

The app runs as ``moments serve`` in a subprocess (:class:`bench.load.Server`: loopback only, ``MOMENTS_AUTH=none``,
its own data home with a fresh SQLite store, the shared converted models, the default answer mode and explanation
method: instant estimate, exact explanation in the in-process background worker). ``--clients`` gradio_client
callers, their starts spread over one interval, each ask one explained turn through ``/ask_stream`` every
``--interval-s`` seconds (a conversation of 5 turns, then a new one) until ``--minutes`` have passed: a steady rate
of clients / interval turns per second, well below what the app can answer, so the run measures staying power, not
queueing. Every 5 s the server's resident memory (RSS) and the ``exact_job`` rows by status are sampled. When the
load ends, the background worker is given up to ``--drain-s`` seconds to finish the exact explanations it was
handed; then the server stops and the store is read back (:func:`bench.load.check_store`): every acknowledged turn
(a ``done`` event with ``stored`` true) must be there with its question and explanation, and nothing else.

Memory verdict: the RSS floor (lowest sample) and peak of each minute of the load; the first half of the load is
warm-up (caches and allocator pools fill over the first turns), and the verdict is on the floors of the second
half: "no growth of the floor" when the last minute's floor is less than :data:`GROWTH_MB` above the first's (a
leak raises the floor; transient peaks that are given back do not). The floor's least-squares slope is reported
too: it bounds the leak a run this short cannot exclude. The bound stated is the largest RSS seen.
``--report-only`` recomputes the report and plot from ``bench/results/soak.json``. The machine is shared: the
figures are wall-clock times on it and move with its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import QUESTIONS, RESULTS, Server, _pct, _turn, check_store

#: The memory verdict's threshold (see the module docstring).
GROWTH_MB = 50.0
TURNS_PER_CONVERSATION = 5


def exact_counts(db: Path) -> dict[str, int]:
    """``exact_job`` rows by status (read-only; empty before the first turn creates the table's rows)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return dict(con.execute("select status, count(*) from exact_job group by status").fetchall())
    except sqlite3.Error:
        return {}


class Sampler:
    """Every ``every_s`` seconds: (seconds since start, server RSS in MB, exact jobs by status, turns done)."""

    def __init__(self, server: Server, record: dict, every_s: float = 5.0) -> None:
        import psutil

        self.proc, self.db, self.record, self.every_s = psutil.Process(server.proc.pid), server.home / "moments.db", \
            record, every_s
        self.samples: list[dict] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append({"t_s": round(time.monotonic() - self.t0, 1),
                                 "rss_mb": round(self.proc.memory_info().rss / 2**20, 1),
                                 "exact": exact_counts(self.db), "turns": len(self.record["turns"])})
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_load(url: str, clients: int, seconds: float, interval_s: float, record: dict) -> dict:
    """The steady load (see the module docstring): the turns, busy refusals and errors it met, into ``record``."""
    from gradio_client import Client

    record.update(busy=0, errors=[], turns=[])
    jobs: dict = {}
    t0 = time.monotonic()
    deadline = t0 + seconds

    def caller(i: int) -> None:
        client = Client(url, verbose=False)
        time.sleep(i * interval_s / clients)  # starts spread over one interval: a steady rate, not bursts
        cid, n = "", 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            question = QUESTIONS[(3 * i + n) % len(QUESTIONS)]
            try:
                out = _turn(client, question, cid if n % TURNS_PER_CONVERSATION else "", jobs, i, record)
                result = out["result"]
                cid = result["conversation_id"]
                record["turns"].append({"at_s": round(started - t0, 1), "first_token_s": out["first_token_s"],
                                        "done_s": out["done_s"], "stored": bool(result["stored"]),
                                        "conversation_id": cid, "turn_id": result["turn_id"]})
            except Exception as exc:  # noqa: BLE001 - counted and reported
                record["errors"].append({"at_s": round(started - t0, 1), "error": f"{type(exc).__name__}: {exc}"})
            n += 1
            time.sleep(max(0.0, started + interval_s - time.monotonic()))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    record["wall_s"] = round(time.monotonic() - t0, 1)
    return record


def drain(db: Path, seconds: float) -> float:
    """Wait (at most ``seconds``) until no exact job is queued or running; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        counts = exact_counts(db)
        if not counts.get("queued") and not counts.get("running"):
            break
        time.sleep(5)
    return round(time.monotonic() - started, 1)


def memory_verdict(samples: list[dict], load_s: float) -> dict:
    """RSS figures over the load (see the module docstring): per-minute floors and peaks, and the verdict on the
    floors of the second half."""
    import numpy as np

    minutes = []
    for m in range(int(load_s // 60)):
        window = [s["rss_mb"] for s in samples if m * 60 <= s["t_s"] < (m + 1) * 60]
        if window:
            minutes.append({"minute": m, "floor_mb": min(window), "peak_mb": max(window)})
    out = {"rss_start_mb": samples[0]["rss_mb"] if samples else None,
           "rss_max_mb": max(s["rss_mb"] for s in samples) if samples else None,
           "rss_end_of_load_mb": next((s["rss_mb"] for s in reversed(samples) if s["t_s"] <= load_s), None),
           "per_minute": minutes}
    second = minutes[len(minutes) // 2:]
    if len(second) < 2:
        return {**out, "verdict": "too short to judge"}
    floors = [m["floor_mb"] for m in second]
    slope = float(np.polyfit([m["minute"] for m in second], floors, 1)[0])
    growth = floors[-1] - floors[0]
    return {**out, "second_half_floor_growth_mb": round(growth, 1), "second_half_floor_slope_mb_per_min":
            round(slope, 2), "second_half_peak_mb": max(m["peak_mb"] for m in second),
            "verdict": "no growth of the floor" if growth < GROWTH_MB else "the floor grows"}


def server_log_problems(log: Path) -> list[str]:
    """Lines of the server's log that report an error (tracebacks and ERROR records)."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return [line for line in lines if "Traceback" in line or " ERROR " in line or line.startswith("ERROR")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval-s", type=float, default=60.0, help="seconds between one client's turns")
    ap.add_argument("--queue-max", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--drain-s", type=float, default=300.0)
    ap.add_argument("--keep-home", action="store_true")
    ap.add_argument("--malloc-arenas", type=int, default=None,
                    help="MOMENTS_MALLOC_ARENAS for the server (default: the setting's default, 2; 0: glibc's own)")
    ap.add_argument("--name", default="soak", help="results file stem under bench/results/")
    ap.add_argument("--report-only", action="store_true", help="rewrite NAME.md and NAME.png from NAME.json")
    args = ap.parse_args()
    if args.report_only:
        out = json.loads((RESULTS / f"{args.name}.json").read_text())
        out["memory"] = memory_verdict(out["samples"], out["settings"]["minutes"] * 60)
        write(out, args.name)
        return
    home = Path(tempfile.mkdtemp(prefix="moments-soak-"))
    extra = {} if args.malloc_arenas is None else {"MOMENTS_MALLOC_ARENAS": str(args.malloc_arenas)}
    server = Server(home, args.queue_max, args.max_new_tokens, env=extra)
    out: dict = {"settings": {**vars(args), "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX")}}
    try:
        out["startup_s"] = round(server.wait_ready(), 1)
        load: dict = {"turns": []}
        sampler = Sampler(server, load).start()
        run_load(server.url, args.clients, args.minutes * 60, args.interval_s, load)
        out["drain_s"] = drain(home / "moments.db", args.drain_s)
        sampler.stop()
        out["exact_after_drain"] = exact_counts(home / "moments.db")
    finally:
        server.stop()
    turns = load["turns"]
    out["load"] = {"wall_s": load["wall_s"], "turns": len(turns), "busy_refusals": load["busy"],
                   "errors": load["errors"], "stored": sum(t["stored"] for t in turns),
                   **{f"{name}_p{int(q * 100)}": _pct([t[key] for t in turns if t[key] is not None], q)
                      for name, key in (("first_token_s", "first_token_s"), ("explained_s", "done_s"))
                      for q in (0.5, 0.95)}}
    out["memory"] = memory_verdict(sampler.samples, args.minutes * 60)
    out["store"] = check_store(home, [(t["conversation_id"], t["turn_id"]) for t in turns if t["stored"]])
    out["server_log_errors"] = server_log_problems(home / "server.log")[:20]
    out["samples"] = sampler.samples
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}), flush=True)
    write(out, args.name)
    if not args.keep_home:
        shutil.rmtree(home, ignore_errors=True)


def write(out: dict, name: str = "soak") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    plot(out, RESULTS / f"{name}.png")
    (RESULTS / f"{name}.md").write_text(report(out))


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, load_s = out["samples"], out["settings"]["minutes"] * 60
    t = [s["t_s"] / 60 for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(t, [s["rss_mb"] for s in samples], color="tab:blue")
    top.set_ylabel("server RSS (MB)")
    top.axvline(load_s / 60, color="grey", linestyle=":", label="load ends")
    top.legend(loc="lower right")
    top.set_title(f"Soak: {out['settings']['clients']} clients, one turn each per {out['settings']['interval_s']:.0f} s")
    bottom.plot(t, [s["turns"] for s in samples], label="turns answered")
    bottom.plot(t, [s["exact"].get("done", 0) for s in samples], label="exact explanations done")
    bottom.plot(t, [s["exact"].get("queued", 0) + s["exact"].get("running", 0) for s in samples],
                label="exact explanations waiting")
    bottom.axvline(load_s / 60, color="grey", linestyle=":")
    bottom.set_xlabel("minutes")
    bottom.set_ylabel("count")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _arenas(s: dict) -> str:
    n = s.get("malloc_arenas")
    if s.get("MALLOC_ARENA_MAX"):
        return f"MALLOC_ARENA_MAX={s['MALLOC_ARENA_MAX']} in the environment"
    return "the default MOMENTS_MALLOC_ARENAS=2" if n is None else f"MOMENTS_MALLOC_ARENAS={n}" + (
        " (glibc's own limit)" if n == 0 else "")


def report(out: dict) -> str:
    s, ld, mem, st = out["settings"], out["load"], out["memory"], out["store"]
    exact = out.get("exact_after_drain", {})
    lines = [
        "# Soak: a steady load on `moments serve` (`python -m bench.soak`)", "",
        (f"`moments serve` (MOMENTS_AUTH=none, MOMENTS_QUEUE_MAX={s['queue_max']}, MOMENTS_MAX_NEW_TOKENS="
         f"{s['max_new_tokens']}, default answer mode and explanations: instant estimate, exact one in the "
         f"background; malloc arenas: {_arenas(s)}), started in {out.get('startup_s')} s. {s['clients']} gradio_client callers, each one explained "
         f"turn through `/ask_stream` every {s['interval_s']:.0f} s (conversations of {TURNS_PER_CONVERSATION} turns) "
         f"for {s['minutes']:.0f} min; then up to {s['drain_s']:.0f} s for the background worker to finish. Times in "
         "seconds from submitting a turn, on the shared 2-core machine (run niced)."), "",
        "| turns | errors | busy refusals | stored | first token p50 / p95 | explained p50 / p95 |",
        "| --- | --- | --- | --- | --- | --- |",
        (f"| {ld['turns']} | {len(ld['errors'])} | {ld['busy_refusals']} | {ld['stored']} | {ld['first_token_s_p50']} / "
         f"{ld['first_token_s_p95']} | {ld['explained_s_p50']} / {ld['explained_s_p95']} |"), "",
        (f"Store afterwards: {st['acknowledged']} acknowledged turns, {st['stored_answers']} answers and "
         f"{st['stored_questions']} questions stored; missing {len(st['missing'])}, stored but not acknowledged "
         f"{len(st['unacknowledged'])}, without explanation {len(st['without_explanation'])}, answers without their "
         f"question {len(st['answers_without_question'])}. Exact explanations after {out.get('drain_s')} s of "
         f"draining: {exact}."),
        (f"Memory (server RSS, sampled every 5 s): {mem.get('rss_start_mb')} MB when the load began, "
         f"{mem.get('rss_end_of_load_mb')} MB when it ended, **at most {mem.get('rss_max_mb')} MB** (the bound seen). "
         f"Second half of the load (the first is warm-up): the floor moved {mem.get('second_half_floor_growth_mb')} MB "
         f"(least-squares slope {mem.get('second_half_floor_slope_mb_per_min')} MB/min), peaks up to "
         f"{mem.get('second_half_peak_mb')} MB were given back: **{mem['verdict']}** (threshold {GROWTH_MB:.0f} MB). "
         "A run this short cannot exclude a leak slower than that slope."), "",
        "| minute | " + " | ".join(str(m["minute"] + 1) for m in mem["per_minute"]) + " |",
        "| --- | " + " | ".join("---" for _ in mem["per_minute"]) + " |",
        "| RSS floor (MB) | " + " | ".join(f"{m['floor_mb']:.0f}" for m in mem["per_minute"]) + " |",
        "| RSS peak (MB) | " + " | ".join(f"{m['peak_mb']:.0f}" for m in mem["per_minute"]) + " |", "",
        f"Server log: {len(out['server_log_errors'])} error lines.", "",
        "![RSS, turns and exact explanations over the run](soak.png)", ""]
    if ld["errors"] or out["server_log_errors"]:
        lines += ["Errors:", ""] + [f"- {e}" for e in [*ld["errors"], *out["server_log_errors"]][:20]] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
