"""A question asked while an exact explanation runs: how long it waits, three ways (issue 15, "answering first").

Run: ``python bench/priority.py [--rounds 3]``. Writes ``bench/results/priority.{json,md}``.

In one process (1 torch thread, default settings), a background thread computes the exact explanation of a stored
generated reply; 1 s after it starts, a question is asked (retrieval, quoted reply, instant estimate) and timed
until its first token and until its answer and estimate are done. The scenarios alternate within every round:

* ``yield`` — the default: the job holds the generator as a background job
  (:meth:`agent.generation.priority.GeneratorLock.background`) and gives it to the waiting question between passes;
* ``hold`` — the job holds the generator's lock throughout (what the app did before): the question waits;
* ``copy`` — the job runs on a second fp32 copy of the model (merged adapter) with its own lock, concurrently.

Also measured: the resident memory that second copy costs (RSS before and after loading it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
JOB_QUESTION = "I'm a Gold member, how long do I have to return stuff?"
WARM_UP = "Can I change the delivery address of my order?"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def model_copy(settings, g):
    """A second fp32 copy of the generator's model (adapter merged), with its own lock: what a job would use."""
    from peft import PeftModel

    from agent.generation.loading import load_base_model, resolve_adapter
    from agent.generation.priority import GeneratorLock

    model, _ = load_base_model(g.model_dir)
    adapter = resolve_adapter(settings)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()
    return replace(g, model=model, lock=GeneratorLock(), decoder=None)


def one(scenario: str, question: str, agent, g, copy, job_args) -> dict:
    from agent.attribution import attribute
    from agent.generation.priority import background_hold

    ended: dict = {}

    def job() -> None:
        started = time.perf_counter()
        if scenario == "copy":
            attribute(copy, *job_args, method="shapley")
        else:
            lock = g.lock if scenario == "yield" else None
            hold = background_hold(lock) if lock is not None else g.lock
            with hold:
                attribute(g, *job_args, method="shapley", use_lock=False)
        ended["job"] = time.perf_counter()
        ended["job_s"] = ended["job"] - started

    yields = g.lock.yields
    worker = threading.Thread(target=job)
    worker.start()
    time.sleep(1.0)
    asked = time.perf_counter()
    first = None
    for event in agent.stream(question, explain=True, method="learned"):
        if event.kind == "token" and first is None:
            first = time.perf_counter() - asked
    answered = time.perf_counter()
    worker.join()
    return {"scenario": scenario, "question": question, "first_token_s": first, "answer_s": answered - asked,
            "answered_before_job_end": answered < ended["job"], "job_s": ended["job_s"],
            "yields": g.lock.yields - yields, "loadavg": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--render", action="store_true", help="only re-render priority.md from priority.json")
    args = ap.parse_args()
    if args.render:
        text = markdown(json.loads((RESULTS / "priority.json").read_text()))
        (RESULTS / "priority.md").write_text(text)
        print(text)
        return
    from agent.attribution import attribute
    from agent.generation.loading import load_generator
    from agent.pipeline import Agent
    from agent.settings import Settings

    settings = Settings(threads=1)
    g = load_generator(settings)
    agent = Agent(settings, generator=g)
    agent.ask(WARM_UP, explain=True, method="learned")  # warm-up: index, embedder, estimator
    job_turn = Agent(Settings(threads=1, answer_mode="generate"), generator=g).ask(JOB_QUESTION)
    job_args = (job_turn.layout, job_turn.token_ids, job_turn.token_texts, [h.passage for h in job_turn.hits],
                [h.score for h in job_turn.hits])
    questions = [json.loads(x)["question"] for x in (ROOT / "data/eval/kb_questions.jsonl").read_text().splitlines()
                 if x.strip()]
    before = rss_mb()
    copy = model_copy(settings, g)
    after = rss_mb()
    copy_tensors = sum(t.numel() * t.element_size() for t in [*copy.model.parameters(), *copy.model.buffers()])
    alone = []
    for _ in range(2):
        started = time.perf_counter()
        attribute(g, *job_args, method="shapley")
        alone.append(time.perf_counter() - started)
    idle_answer = []
    for q in questions[:3]:  # the question alone, nothing else running
        t = time.perf_counter()
        list(agent.stream(q, explain=True, method="learned"))
        idle_answer.append(time.perf_counter() - t)
    rows, asked = [], iter(questions[3:])  # a new question every time: no reply's prompt cached from the last
    for r in range(args.rounds):
        order = ["yield", "hold", "copy"] if r % 2 == 0 else ["copy", "hold", "yield"]
        rows += [one(s, next(asked), agent, g, copy, job_args) for s in order]
    out = {"rss_before_copy_mb": before, "rss_after_copy_mb": after, "copy_mb": after - before,
           "rss_end_mb": rss_mb(), "copy_tensors_mb": copy_tensors / 2**20,
           "job_alone_s": alone, "answer_alone_s": idle_answer, "job_tokens": len(job_turn.token_ids),
           "job_k": len(job_turn.hits), "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "priority.json").write_text(json.dumps(out, indent=2))
    text = markdown(out)
    (RESULTS / "priority.md").write_text(text)
    print(text)


def markdown(out: dict) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"

    load = [r["loadavg"] for r in out["rows"]]
    lines = [f"# A question during an exact explanation ({out['date']}, 1 torch thread)", "",
             (f"The job: exact Shapley of a {out['job_tokens']}-token generated reply over k={out['job_k']} passages, "
              f"alone {cell(out['job_alone_s'])} s. A question alone (retrieval, quoted reply, instant estimate): "
              f"{cell(out['answer_alone_s'])} s; each run below asks another. Load average {min(load):.1f}-{max(load):.1f} on the shared 2-core "
              "machine. Medians [min, max]."), "",
             ("| scenario | first token (s) | answer + estimate (s) | answered before the job ended | job (s) | "
              "job yielded |"), "|---|---:|---:|---:|---:|---:|"]
    for s in ("yield", "hold", "copy"):
        rs = [r for r in out["rows"] if r["scenario"] == s]
        firsts = [r["first_token_s"] for r in rs if r["first_token_s"] is not None]
        lines.append(f"| {s} | {cell(firsts) if firsts else '—'} | {cell([r['answer_s'] for r in rs])} | "
                     f"{sum(r['answered_before_job_end'] for r in rs)}/{len(rs)} | {cell([r['job_s'] for r in rs])} | "
                     f"{sum(r['yields'] for r in rs)} |")
    lines += ["", (f"A second fp32 model copy for the jobs: {out['copy_tensors_mb']:.0f} MB of tensors; resident memory "
                   f"{out['rss_before_copy_mb']:.0f} -> {out['rss_after_copy_mb']:.0f} MB when loaded (+"
                   f"{out['copy_mb']:.0f} MB: safetensors maps the file, pages come in when used), "
                   f"{out['rss_end_mb']:.0f} MB at the end of the run (all jobs' working memory included). Chosen: `yield` (no "
                   "second copy; the answer waits at most one forward pass of the job)."), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
