"""Load: concurrent gradio_client callers against the launched app, and whether every acknowledged turn is stored
(issue 14, load).

Run: ``python -m bench.load [--clients 8,16] [--turns 5] [--queue-max 12] [--soak-s 0]``. Writes
``bench/results/load.{json,md}``.

The app runs as ``moments serve`` in a subprocess (loopback only, ``MOMENTS_AUTH=none``, its own data home with a
fresh SQLite store, the shared converted models, default answer mode, ``MOMENTS_QUEUE_MAX`` = ``--queue-max``).
For each client count, that many threads each hold one ``gradio_client.Client`` and have one conversation of
``--turns`` turns through ``/ask_stream`` (explained, ``summary`` detail), all starting together. Per turn: time to
the first token event, to the last token (the full reply) and to the ``done`` event (the explanation); while
waiting, a watcher polls each job's ``status()`` for its queue position. A caller refused by the full queue
(``QueueError``) is counted and tries again after 2 s, as a well-behaved client would. Afterwards the store is read
back: every acknowledged turn (a ``done`` event with ``stored`` true) must be there with its question and its
explanation, and nothing else (counts equal). The server's resident memory is sampled every second (max reported).
``--soak-s``: then one client asks at a steady rate for that long (memory at start and end, errors).

Questions are generic customer questions written here (not evaluation data). The machine is shared: keep runs
small; the figures are wall-clock times on it and move with its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"

QUESTIONS = [
    "How long do I have to return an item?", "How much does express shipping cost?", "Do gift cards expire?",
    "How do I reset my password?", "Can I change my delivery address after ordering?", "When will I get my refund?",
    "Can I cancel my order?", "Do you ship internationally?", "How do I track my parcel?",
    "What payment methods do you accept?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


class Server:
    """``moments serve`` in a subprocess with its own data home; its memory sampled every second."""

    def __init__(self, home: Path, queue_max: int, max_new_tokens: int, env: dict[str, str] | None = None) -> None:
        self.home, self.port = home, _free_port()
        env = {**os.environ, **(env or {}), "MOMENTS_HOME": str(home), "MOMENTS_AUTH": "none", "MOMENTS_QUEUE_MAX": str(queue_max),
               "MOMENTS_MAX_NEW_TOKENS": str(max_new_tokens), "GRADIO_ANALYTICS_ENABLED": "False",
               "MOMENTS_MODELS_PATH": os.environ.get("MOMENTS_MODELS_PATH",
                                                     str(Path("~/.cache/moments/models").expanduser()))}
        self.log = (home / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "serve", "--port", str(self.port)], cwd=ROOT,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.rss: list[float] = []
        self._stop = threading.Event()

    def wait_ready(self, timeout_s: float = 900) -> float:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.home / 'server.log'}")
            try:
                if httpx.get(self.url + "config", timeout=2).status_code == 200:
                    threading.Thread(target=self._sample, daemon=True).start()
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError("the server did not start")

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process(self.proc.pid)
        while not self._stop.is_set():
            self.rss.append(proc.memory_info().rss / 2**20)
            time.sleep(1)

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _turn(client, question: str, cid: str, jobs: dict, me: int, record: dict) -> dict:
    """One streamed, explained turn; retried after 2 s while the queue is full (polled every 20 ms: the times are
    accurate to that)."""
    from gradio_client.utils import QueueError

    while True:
        started = time.monotonic()
        out = {"first_token_s": None, "reply_s": None, "done_s": None, "max_rank": None}
        job = client.submit(question, cid, True, "summary", api_name="/ask_stream")
        jobs[me] = (job, out)
        seen = 0
        while True:  # polled, not iterated: iterating a job the full queue refused never ends (gradio_client 2.7)
            finished = job.done()
            events = job.outputs()
            now = time.monotonic() - started
            for event in events[seen:]:
                if event["kind"] == "token":
                    out["first_token_s"] = out["first_token_s"] or now
                    out["reply_s"] = now
                elif event["kind"] == "done":
                    out["done_s"], out["result"] = now, event["result"]
            seen = len(events)
            if finished:
                break
            time.sleep(0.02)
        jobs.pop(me, None)
        error = job.exception()
        if isinstance(error, QueueError):
            record["busy"] += 1
            time.sleep(2)
            continue
        if error is not None:
            raise error
        if "result" not in out:
            raise RuntimeError("the turn ended without its done event")
        return out


def _watch(jobs: dict, stop: threading.Event) -> None:
    """Poll the waiting jobs' queue positions."""
    while not stop.is_set():
        for job, out in list(jobs.values()):
            try:
                rank = job.status().rank
            except Exception:  # noqa: BLE001 - a job finishing while polled
                rank = None
            if rank is not None and rank >= 0:
                out["max_rank"] = max(out["max_rank"] or 0, rank)
        time.sleep(0.2)


def run_clients(url: str, n: int, turns: int) -> dict:
    from gradio_client import Client

    record = {"busy": 0, "errors": [], "turns": []}
    jobs: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(jobs, stop), daemon=True)
    barrier = threading.Barrier(n)

    def conversation(i: int) -> None:
        client = Client(url, verbose=False)
        barrier.wait()
        cid = ""
        for t in range(turns):
            try:
                out = _turn(client, QUESTIONS[(i + t) % len(QUESTIONS)], cid, jobs, i, record)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                record["errors"].append(f"{type(exc).__name__}: {exc}")
                return
            cid = out["result"]["conversation_id"]
            record["turns"].append(out)

    started = time.monotonic()
    watcher.start()
    threads = [threading.Thread(target=conversation, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    record["wall_s"] = round(time.monotonic() - started, 1)
    return record


def summarise(n: int, record: dict) -> dict:
    turns = record["turns"]
    done = [t for t in turns if t.get("result")]
    ranks = [t["max_rank"] for t in done if t["max_rank"] is not None]
    return {
        "clients": n, "turns": len(done), "wall_s": record["wall_s"], "busy_refusals": record["busy"],
        "errors": record["errors"], "stored": sum(bool(t["result"]["stored"]) for t in done),
        **{f"{name}_p{int(q * 100)}": _pct([t[key] for t in done if t[key] is not None], q)
           for name, key in (("first_token_s", "first_token_s"), ("reply_s", "reply_s"), ("explained_s", "done_s"))
           for q in (0.5, 0.95)},
        "waited_in_queue": len(ranks), "max_queue_position": max(ranks) if ranks else None,
        "acknowledged": [(t["result"]["conversation_id"], t["result"]["turn_id"]) for t in done
                         if t["result"]["stored"]],
    }


def check_store(home: Path, acknowledged: list[tuple[str, int]]) -> dict:
    """Every acknowledged turn is stored with its question and explanation; nothing else is."""
    from agent.store import Store

    with Store(f"sqlite:///{home / 'moments.db'}") as store:
        convs = [store.get_conversation(c.id) for c in store.list_conversations(limit=100_000)]
    answers = {t.id: t for c in convs for t in c.turns if t.role == "assistant"}
    questions = {t.id for c in convs for t in c.turns if t.role == "user"}
    wanted = {tid for _, tid in acknowledged}
    return {"acknowledged": len(wanted), "stored_answers": len(answers), "stored_questions": len(questions),
            "missing": sorted(wanted - set(answers)), "unacknowledged": sorted(set(answers) - wanted),
            "without_explanation": sorted(t for t in wanted & set(answers) if answers[t].explanation is None),
            "answers_without_question": sorted(t for t, a in answers.items() if a.reply_to_id not in questions)}


def soak(url: str, seconds: float, server: Server) -> dict:
    from gradio_client import Client

    client, errors, n = Client(url, verbose=False), [], 0
    start_rss = server.rss[-1] if server.rss else None
    ended = time.monotonic() + seconds
    cid = ""
    while time.monotonic() < ended:
        t0 = time.monotonic()
        try:
            out = client.predict(QUESTIONS[n % len(QUESTIONS)], cid if n % 5 else "", True, "summary",
                                 api_name="/ask")
            cid, n = out["conversation_id"], n + 1
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))  # a steady rate: one turn every 2 s at most
    return {"seconds": seconds, "turns": n, "errors": errors, "rss_start_mb": start_rss,
            "rss_end_mb": server.rss[-1] if server.rss else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="8,16")
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--queue-max", type=int, default=12)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--soak-s", type=float, default=0.0)
    ap.add_argument("--keep-home", action="store_true")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="moments-load-"))
    server = Server(home, args.queue_max, args.max_new_tokens)
    out: dict = {"settings": vars(args), "runs": []}
    try:
        out["startup_s"] = round(server.wait_ready(), 1)
        for n in (int(c) for c in args.clients.split(",")):
            run = summarise(n, run_clients(server.url, n, args.turns))
            print(json.dumps({k: v for k, v in run.items() if k != "acknowledged"}), flush=True)
            out["runs"].append(run)
        if args.soak_s:
            out["soak"] = soak(server.url, args.soak_s, server)
        out["server_rss_max_mb"] = round(max(server.rss), 1) if server.rss else None
    finally:
        server.stop()
    out["store"] = check_store(home, [a for r in out["runs"] for a in r["acknowledged"]])
    for r in out["runs"]:
        r["acknowledged"] = len(r["acknowledged"])
    print(json.dumps(out["store"]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(out, indent=1))
    (RESULTS / "load.md").write_text(report(out))
    if not args.keep_home:
        shutil.rmtree(home, ignore_errors=True)


def report(out: dict) -> str:
    s = out["settings"]
    lines = [
        "# Load: concurrent gradio_client callers (`python -m bench.load`)", "",
        (f"`moments serve` (MOMENTS_AUTH=none, MOMENTS_QUEUE_MAX={s['queue_max']}, MOMENTS_MAX_NEW_TOKENS="
        f"{s['max_new_tokens']}, default answer mode), started in {out.get('startup_s')} s; each client: one "
        f"conversation of {s['turns']} explained turns through `/ask_stream`, all clients starting together. Times "
        "in seconds from submitting a turn (queue wait included), on the shared 2-core machine; a caller refused by "
        "the full queue retries every 2 s (each refusal counted), and its times run from the accepted attempt. "
        "Quoted replies arrive in one burst, so the full reply follows the first token within milliseconds."), "",
        ("| clients | turns | wall | first token p50 / p95 | full reply p50 / p95 | explained p50 / p95 | waited in "
        "queue | max position | busy refusals | errors | stored |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in out["runs"]:
        lines.append(f"| {r['clients']} | {r['turns']} | {r['wall_s']} | {r['first_token_s_p50']} / "
                     f"{r['first_token_s_p95']} | {r['reply_s_p50']} / {r['reply_s_p95']} | {r['explained_s_p50']} / "
                     f"{r['explained_s_p95']} | {r['waited_in_queue']} | {r['max_queue_position']} | "
                     f"{r['busy_refusals']} | {len(r['errors'])} | {r['stored']} |")
    st = out["store"]
    lines += ["", (f"Store afterwards: {st['acknowledged']} acknowledged turns, {st['stored_answers']} answers and "
              f"{st['stored_questions']} questions stored; missing {len(st['missing'])}, stored but not acknowledged "
              f"{len(st['unacknowledged'])}, without explanation {len(st['without_explanation'])}, answers without "
              f"their question {len(st['answers_without_question'])}."),
              f"Server memory (RSS, sampled each second): max {out.get('server_rss_max_mb')} MB."]
    if "soak" in out:
        so = out["soak"]
        lines.append(f"Soak: {so['seconds']:.0f} s at one turn per 2 s at most: {so['turns']} turns, "
                     f"{len(so['errors'])} errors, RSS {so['rss_start_mb']} -> {so['rss_end_mb']} MB.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
