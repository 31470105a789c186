"""Speed side by side (issue 15): the default configuration vs transformers fp32 vs llama.cpp, from the first token
to the exact explanation, and the faithfulness check of the fast decoder.

Run: ``python bench/speed.py [--rounds 5] [--turns 40] [--exact-turns 8] [--configs fast,fast-fp32,hf,llama.cpp]``.
Writes ``bench/results/speed.{json,md,png}`` (``--name`` changes the stem: another CPU's run kept apart).

Speed: each configuration runs in its own subprocess (``bench/speed_probe.py``, 1 torch / llama.cpp thread),
configurations alternating within every round (and the order reversed every other round) so the shared machine's
noise hits all alike; the table gives medians and [min, max] over rounds, and each probe records the load average.

* ``fast`` — the default: :class:`agent.generation.fastdecode.FastDecoder` (exact packed 4/8-bit weights + the
  unmerged LoRA in the decode steps; the prefill and the embedder in bfloat16 where the CPU has AMX-BF16, the
  ``*_precision=auto`` settings);
* ``fast-fp32`` — the same in float32 (``MOMENTS_PREFILL_PRECISION=fp32``, ``MOMENTS_EMBED_PRECISION=fp32``: the
  default before 2026-12-03);
* ``hf`` — the transformers fp32 model step by step (``MOMENTS_DECODER=hf``);
* ``llama.cpp`` — the shipped ``SmolLM2-135M-Instruct.Q4_1.gguf`` in llama.cpp (the ``ik-llama-cpp-python`` wheel:
  a llama.cpp fork with prebuilt CPU wheels; ``pip install ik-llama-cpp-python``, bench only), the same prompt token
  ids, greedy by argmax of the logits. It runs the base model: llama.cpp is not given the LoRA adapter;
* ``hf-int8`` (``--configs``) — ``MOMENTS_QUANTIZE=1``, torch dynamic int8, for reference.

Per probe: load time; first token for a ~400-token and a ~1,200-token prompt (prefill + first choice; prefill tok/s
from the long one), cold, and for the ~400-token prompt of a next turn whose system prompt the fast decoder takes
from the previous turn's cache; decode tok/s over 64 steps (wall clock, and CPU time of the process, which other
processes do not inflate); a full reply to the ~400-token prompt; then one **full turn** per answer mode through the
pipeline (retrieval, focus, quoted or generated reply; llama.cpp: the same retrieval and prompt, then as many greedy
tokens as the default's reply has) and, for the torch configurations, that turn's **estimate latency** (the learned
attention estimator, ``method="learned"``: what the operator sees at once) and **exact latency** (exact Shapley over
all 2^k passage subsets: what the background worker computes), each timed from the end of the reply.

Exact latency (``--exact-turns``, in this process, default settings): the estimate and the exact explanation of
real turns (``data/eval/kb_questions.jsonl``) in both answer modes, wall and CPU time, with the load average.

Faithfulness (``--turns``, in this process, default settings): over real turns, the fp32 full-context re-scoring
that the explanation is computed from (:func:`agent.attribution.rescoring.score_subsets`) has the generated token
as its argmax on what share of reply tokens; how many replies are token-identical to the ``hf`` backend's; and the
same agreement for ``hf-int8`` replies (re-scored by fp32). ``--turns 0`` keeps the previous run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, also when run as ``python bench/speed.py``
RESULTS = ROOT / "bench" / "results"
LABELS = {"fast": "default (fast)", "fast-fp32": "fp32-prefill fast (before)", "hf": "HF fp32",
          "llama.cpp": "llama.cpp Q4_1", "hf-int8": "HF int8"}
COLOURS = {"fast": "tab:green", "fast-fp32": "tab:olive", "hf": "tab:gray", "llama.cpp": "tab:blue",
           "hf-int8": "tab:orange"}

#: (key, label, digits); a configuration without the key shows "—"
METRICS = [("load_s", "load (s)", 2),
           ("first_short_s", "first token, {short}-token prompt (s)", 2),
           ("first_short_cpu_s", "  same, CPU time (s)", 2),
           ("first_next_s", "first token, {short} tok, next turn: system prompt cached (s)", 2),
           ("first_long_s", "first token, {long}-token prompt (s)", 2),
           ("prefill_tok_s", "prefill tok/s ({long}-token prompt)", 0),
           ("decode_tok_s", "decode tok/s (wall)", 1), ("decode_cpu_ms", "decode CPU ms/token", 1),
           ("reply_s", "full reply to the {short}-token prompt (s)", 2),
           ("turn_quote_s", "full turn, quoted reply (default mode) (s)", 2),
           ("estimate_quote_s", "  estimate latency after it (s)", 2),
           ("exact_quote_s", "  exact latency after it (s)", 2),
           ("exact_quote_cpu_s", "    same, CPU time (s)", 2),
           ("turn_generate_s", "full turn, generated reply (s)", 2),
           ("estimate_generate_s", "  estimate latency after it (s)", 2),
           ("exact_generate_s", "  exact latency after it (s)", 2),
           ("exact_generate_cpu_s", "    same, CPU time (s)", 2)]


def run_speed(configs: list[str], rounds: int) -> dict[str, list[dict]]:
    from tqdm import tqdm

    runs: dict[str, list[dict]] = {c: [] for c in configs}
    reply_tokens = 40  # llama.cpp's turn length until the default's is known
    for r in tqdm(range(rounds), desc="speed rounds"):
        order = configs if r % 2 == 0 else configs[::-1]  # alternate the order too
        for name in order:
            proc = subprocess.run([sys.executable, str(ROOT / "bench" / "speed_probe.py"), name,
                                   json.dumps({"reply_tokens": reply_tokens})], cwd=ROOT, capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"probe {name} failed:\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            if name == "fast":
                reply_tokens = max(1, runs["fast"][0]["turn_generate_tokens"])
    return runs


def run_exact_latency(n_turns: int) -> list[dict]:
    """Estimate and exact explanation latency of real turns, default settings, both answer modes."""
    from tqdm import tqdm

    from agent.attribution import attribute
    from agent.generation.loading import load_generator
    from agent.pipeline import Agent
    from agent.settings import Settings

    questions = [json.loads(x) for x in (ROOT / "data/eval/kb_questions.jsonl").read_text().splitlines() if x.strip()]
    g = load_generator(Settings(threads=1))
    rows = []
    for mode in ("quote", "generate"):
        agent = Agent(Settings(threads=1, answer_mode=mode), generator=g)
        agent.ask(questions[-1]["question"])  # warm-up
        done = 0
        for q in tqdm(questions, desc=f"exact latency ({mode})", unit="turn"):
            if done == n_turns:
                break
            result = agent.ask(q["question"])
            if not result.token_ids:
                continue  # handed over: nothing to explain
            row = {"mode": mode, "question": q["question"], "tokens": len(result.token_ids), "k": len(result.hits),
                   "prompt_tokens": len(result.layout.input_ids), "loadavg": os.getloadavg()[0]}
            args = (result.layout, result.token_ids, result.token_texts, [h.passage for h in result.hits],
                    [h.score for h in result.hits])
            for method, key in (("learned", "estimate"), ("shapley", "exact")):
                wall, cpu = time.perf_counter(), time.process_time()
                exp, _ = attribute(g, *args, method=method)
                row[f"{key}_s"], row[f"{key}_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu
                if key == "exact":
                    row["forward_passes"], row["tokens_rescored"] = exp.forward_passes, exp.tokens_rescored
            rows.append(row)
            done += 1
    return rows


def run_faithfulness(n_turns: int, with_int8: bool) -> dict:
    """Agreement of the fp32 full-context re-scoring's argmax with the generated tokens over real turns."""
    from tqdm import tqdm

    from agent.attribution.rescoring import score_subsets
    from agent.generation.decoding import stream_tokens
    from agent.generation.loading import load_generator
    from agent.pipeline import Agent
    from agent.settings import Settings

    questions = [json.loads(x) for x in (ROOT / "data/eval/kb_questions.jsonl").read_text().splitlines() if x.strip()]
    agent = Agent(Settings(threads=1, answer_mode="generate"))  # the decoder's tokens, not quotes
    int8 = load_generator(Settings(threads=1, decoder="hf", quantize=True)) if with_int8 else None
    g = agent.generator
    out = {"prefill": "bf16" if getattr(g.decoder, "batched", None) is not None else "fp32",
           "turns": 0, "tokens": 0, "agree": 0, "identical_to_hf": 0, "int8_tokens": 0, "int8_agree": 0,
           "int8_identical": 0, "first_divergence_int8": [], "examples": []}
    for q in tqdm(questions[:n_turns], desc="faithfulness", unit="turn"):
        result = agent.ask(q["question"])
        if not result.token_ids:
            continue  # abstained by the threshold: nothing generated
        layout, reply = result.layout, list(result.token_ids)
        full = [(1 << layout.n_passages) - 1]
        top = score_subsets(g.model, layout, reply, full, top_n=1).top_ids[:, 0]
        out["turns"] += 1
        out["tokens"] += len(reply)
        out["agree"] += int((top == reply).sum())
        ref = [s.token_id for s in stream_tokens(g.model, g.tokenizer, layout.input_ids, agent.settings.max_new_tokens,
                                                 backend="hf")]
        out["identical_to_hf"] += int(ref == reply)
        if len(out["examples"]) < 6:
            out["examples"].append({"question": q["question"], "reply": result.answer, "same_as_hf": ref == reply})
        if int8 is not None:
            q8 = [s.token_id for s in stream_tokens(int8.model, int8.tokenizer, layout.input_ids,
                                                    agent.settings.max_new_tokens)]
            if q8:
                top8 = score_subsets(g.model, layout, q8, full, top_n=1).top_ids[:, 0]
                out["int8_tokens"] += len(q8)
                out["int8_agree"] += int((top8 == q8).sum())
            out["int8_identical"] += int(q8 == ref)
            out["first_divergence_int8"].append(next((i for i, (a, b) in enumerate(zip(q8, ref)) if a != b),
                                                     min(len(q8), len(ref))))
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per configuration and metric: median, min, max over the rounds (metrics a configuration lacks left out)."""
    out: dict = {}
    for name, rs in runs.items():
        keys = {k for r in rs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out[name] = {k: _stats([r[k] for r in rs if k in r]) for k in sorted(keys)}
    return out


def _cell(s: dict | None, digits: int) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def _exact_lines(rows: list[dict]) -> list[str]:
    header = ("| answer mode | turns | reply tokens | k | estimate (s) | exact (s) | exact CPU (s) | exact <= 10 s | "
              "load average |")
    lines = ["", "## Estimate and exact latency on real turns (default settings, in one process)", "", header,
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode in ("quote", "generate"):
        rs = [r for r in rows if r["mode"] == mode]
        if not rs:
            continue
        cell = {key: _cell(_stats([r[key] for r in rs]), 2) for key in ("estimate_s", "exact_s", "exact_cpu_s")}
        within = sum(r["exact_s"] <= 10 for r in rs)
        lines.append(f"| {mode} | {len(rs)} | {_cell(_stats([r['tokens'] for r in rs]), 0)} | "
                     f"{'/'.join(sorted({str(r['k']) for r in rs}))} | {cell['estimate_s']} | {cell['exact_s']} | "
                     f"{cell['exact_cpu_s']} | {within}/{len(rs)} | "
                     f"{_cell(_stats([r['loadavg'] for r in rs]), 1)} |")
    return lines


def markdown(runs: dict, summary: dict, faith: dict | None, exact: list[dict] | None, meta: dict) -> str:
    first = next(iter(runs.values()))[0]
    names = list(summary)
    rounds = max(len(rs) for rs in runs.values())
    load = [r["loadavg"][0] for rs in runs.values() for r in rs if "loadavg" in r]
    lines = [f"# Speed side by side: SmolLM2-135M, 1 thread (medians [min, max] of {rounds} alternating rounds)", "",
             (f"Shared 2-core machine: 1-minute load average {min(load):.1f}-{max(load):.1f} at the probes' starts "
              f"(median {statistics.median(load):.1f}), so wall-clock figures include waiting for a core; the CPU "
              "times do not. " if load else "")
             + f"Run {meta.get('date', '?')}, {meta.get('seconds', 0) / 60:.0f} min"
             + (f", on {meta['cpu']}" if meta.get("cpu") else "") + ".", "",
             "| metric | " + " | ".join(LABELS.get(n, n) for n in names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, label, digits in METRICS:
        if not any(key in summary[n] for n in names):
            continue
        lines.append(f"| {label.format(short=first['short_tokens'], long=first['long_tokens'])} | "
                     + " | ".join(_cell(summary[n].get(key), digits) for n in names) + " |")
    lines += ["", ("— : not measured for that configuration. llama.cpp runs the shipped GGUF (the base model: it is not "
                   "given the LoRA adapter) through the `ik-llama-cpp-python` wheel (a llama.cpp fork with prebuilt "
                   "CPU wheels; `llama-cpp-python` has none); its full turn decodes as many tokens as the default's "
                   "reply. Explanations need the fp32 transformers model, so llama.cpp has no estimate or exact "
                   "column: a llama.cpp generator would add that model's memory and the faithfulness risk.")]
    if "fast" in summary and "llama.cpp" in summary:
        ratio = summary["fast"]["decode_tok_s"]["median"] / summary["llama.cpp"]["decode_tok_s"]["median"]
        cpu = summary["llama.cpp"]["decode_cpu_ms"]["median"] / summary["fast"]["decode_cpu_ms"]["median"]
        lines += ["", (f"Default / llama.cpp decode: {ratio:.2f}x wall clock, {cpu:.2f}x by CPU time per token "
                       "(goal >= 0.7x).")]
    if "fast" in summary and "hf" in summary:
        ratio = summary["fast"]["decode_tok_s"]["median"] / summary["hf"]["decode_tok_s"]["median"]
        lines += [f"Default / HF fp32 decode: {ratio:.2f}x wall clock."]
    if exact:
        lines += _exact_lines(exact)
    if faith:
        share = faith["agree"] / max(faith["tokens"], 1)
        lines += ["", "## Faithfulness (fp32 full-context re-scoring argmax == generated token)", ""]
        if faith.get("from_previous_run"):
            lines += [f"(Not re-run this time: the figures of {faith['from_previous_run']}.)", ""]
        lines.append(f"- fast decoder ({faith.get('prefill', 'fp32')} prefill): **{faith['agree']}/{faith['tokens']} "
                     f"tokens = {share:.2%}** over "
                     f"{faith['turns']} real turns; replies token-identical to the hf backend: "
                     f"{faith['identical_to_hf']}/{faith['turns']}")
        if faith["int8_tokens"]:
            div = faith["first_divergence_int8"]
            lines.append(f"- hf-int8 (dynamic): {faith['int8_agree']}/{faith['int8_tokens']} tokens = "
                         f"{faith['int8_agree'] / faith['int8_tokens']:.2%}; replies identical to fp32: "
                         f"{faith['int8_identical']}/{faith['turns']}; first divergence at token "
                         f"{statistics.median(div):.0f} (median)")
    fast = runs.get("fast", [{}])[0]
    if fast.get("reused_tokens"):
        lines += ["", (f"Next turn: the fast decoder took {fast['reused_tokens']} prompt tokens (the system prompt and "
                  "the template before the first passage) from the previous turn's cache.")]
    lines += ["", "Replies in the first round (the ~400-token prompt; the timed turn):", ""]
    for n, rs in runs.items():
        r = rs[0]
        lines.append(f"- {LABELS.get(n, n)}: {r['reply']!r}; turn: "
                     + "; ".join(f"{m} {r[f'turn_{m}_reply']!r}" for m in ("quote", "generate")
                                 if f"turn_{m}_reply" in r))
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    panels = [("decode_tok_s", "decode tok/s (wall)"), ("decode_cpu_ms", "decode CPU ms/token"),
              ("first_short_s", "first token, ~400-token prompt (s)"), ("turn_generate_s", "full turn, generated (s)"),
              ("estimate_quote_s", "estimate latency, quoted turn (s)"), ("exact_quote_s", "exact latency, quoted (s)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.6))
    for ax, (key, label) in zip(axes, panels):
        have = [n for n in names if key in summary[n]]
        med = [summary[n][key]["median"] for n in have]
        err = [[m - summary[n][key]["min"] for n, m in zip(have, med)],
               [summary[n][key]["max"] - m for n, m in zip(have, med)]]
        ax.bar([LABELS.get(n, n).split(" ")[0] for n in have], med, yerr=err, capsize=4,
               color=[COLOURS.get(n, "tab:purple") for n in have])
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        if key == "exact_quote_s":
            cpu = [summary[n]["exact_quote_cpu_s"]["median"] for n in have]
            ax.scatter(range(len(have)), cpu, color="black", marker="_", s=400, zorder=3, label="CPU time")
            ax.axhline(10, color="tab:red", linestyle="--", linewidth=1, label="goal 10 s")
            ax.legend(loc="lower right", fontsize=7)
    fig.suptitle("median and [min, max] over alternating rounds, 1 thread, shared 2-core machine", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cpu_description() -> str:
    """The CPU's model name and whether it has AMX-BF16 (what the ``auto`` precision settings decide on)."""
    import platform

    from retrieval.cpu import bf16_is_fast

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({'AMX-BF16: bfloat16 prefill and embedder' if bf16_is_fast() else 'no AMX-BF16: float32 throughout'})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--configs", default="fast,fast-fp32,hf,llama.cpp")
    ap.add_argument("--turns", type=int, default=40, help="real turns for the faithfulness check (0: keep the last)")
    ap.add_argument("--exact-turns", type=int, default=8, help="real turns per answer mode for the exact latency")
    ap.add_argument("--no-int8-faithfulness", action="store_true")
    ap.add_argument("--render", action="store_true", help="only re-render speed.md/png from speed.json")
    ap.add_argument("--name", default="speed",
                    help="stem of the result files (bench/results/<name>.{json,md,png}): keep another CPU's run apart")
    args = ap.parse_args()
    saved_path = RESULTS / f"{args.name}.json"
    if args.render:
        saved = json.loads(saved_path.read_text())
        runs, faith, exact, meta = saved["runs"], saved["faithfulness"], saved.get("exact_latency"), saved
    else:
        previous = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
        configs = [c for c in args.configs.split(",") if c]
        started, load_before = time.time(), os.getloadavg()
        runs = run_speed(configs, args.rounds)
        exact = run_exact_latency(args.exact_turns) if args.exact_turns else None
        if args.turns:
            faith = run_faithfulness(args.turns, not args.no_int8_faithfulness)
        else:
            faith = previous.get("faithfulness")
            if faith is not None:
                faith.setdefault("from_previous_run", "the previous run (bench/results/speed.json before this one)")
        meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "seconds": time.time() - started,
                "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpu": cpu_description()}
        RESULTS.mkdir(parents=True, exist_ok=True)
        saved_path.write_text(json.dumps({"runs": runs, "summary": summarise(runs), "exact_latency": exact,
                                          "faithfulness": faith, **meta}, indent=2))
    summary = summarise(runs)
    text = markdown(runs, summary, faith, exact, meta)
    (RESULTS / f"{args.name}.md").write_text(text)
    plot(summary, RESULTS / f"{args.name}.png")
    print(text)


if __name__ == "__main__":
    main()
