"""Generator speed on this machine: load time, prefill and decode throughput, 1 vs 2 torch threads side by side.

Run: ``python bench/speed.py [--repeats 3]``. Each configuration runs in its own subprocess (thread settings are
process-wide), alternating, so the machine's noise hits both alike. Writes ``bench/results/speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from agent.settings import Settings
from agent.generation.loading import load_generator
from agent.generation.prompt import build_prompt
from retrieval.types import Passage
threads = int(sys.argv[1])
s = Settings(threads=threads, adapter=sys.argv[2])
t = time.perf_counter(); g = load_generator(s); load = time.perf_counter() - t
kb = sorted((s.kb_path).glob("*.md"))[:4]
passages = [Passage(p.stem, p.stem, p.stem, p.read_text()[:900]) for p in kb]
ids = build_prompt(g.tokenizer, "How long do I have to return an item?", passages).input_ids
with torch.inference_mode():
    t = time.perf_counter(); out = g.model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - t
    cache, tok, n = out.cache, int(out.logits[0, -1].argmax()), 48
    t = time.perf_counter()
    for _ in range(n):
        out = g.model(input_ids=torch.tensor([[tok]]), cache=cache, use_cache=True)
        cache, tok = out.cache, int(out.logits[0, -1].argmax())
    decode = time.perf_counter() - t
print(json.dumps({"threads": threads, "adapter": g.adapter_id, "load_s": load, "prompt_tokens": len(ids),
                  "prefill_s": prefill, "prefill_tok_s": len(ids) / prefill, "decode_tok_s": n / decode}))
"""


def main() -> None:
    from tqdm import tqdm

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--adapter", default="auto")
    args = ap.parse_args()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in tqdm(range(args.repeats), desc="rounds"):
        for threads in (1, 2):
            proc = subprocess.run([sys.executable, "-c", PROBE, str(threads), args.adapter], cwd=ROOT,
                                  capture_output=True, text=True, check=True)
            runs[threads].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    summary = {t: {k: statistics.median(r[k] for r in rs) for k in ("load_s", "prefill_s", "prefill_tok_s",
                                                                  "decode_tok_s")} for t, rs in runs.items()}
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps({"runs": runs, "median": summary}, indent=2))
    n = runs[1][0]["prompt_tokens"]
    lines = [f"# Generator speed (medians of {args.repeats} alternating runs; prompt {n} tokens)", "",
             "| threads | load (s) | prefill (s) | prefill tok/s | decode tok/s |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {t} | {v['load_s']:.2f} | {v['prefill_s']:.2f} | {v['prefill_tok_s']:.0f} | {v['decode_tok_s']:.1f} |"
              for t, v in summary.items()]
    (out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
