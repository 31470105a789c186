"""LoRA fine-tuning of the generator on support-style examples (``python -m agent.training.train`` / ``moments train``).

Contract
--------
* :class:`TrainConfig` holds every setting with its default; :func:`main` maps CLI flags onto it.
* :func:`train` builds (or is given) the examples of :mod:`agent.training.data`, encodes them with the agent's
  prompt code, and trains a peft LoRA adapter on the attention and MLP projections (``q,k,v,o,gate,up,down``) of
  the top ``lora_layers`` decoder layers (all layers when 0). The loss is the mean cross-entropy over the reply
  tokens only; logits are computed for those positions only (``logits_to_keep``), never a (seq, vocab) tensor.
* Every ``checkpoint_every`` optimizer steps (and when ``max_minutes`` runs out) ``<run_dir>/checkpoint/`` is
  replaced atomically: adapter weights, optimizer and scheduler state, step, losses. A later run with the same
  ``run_dir`` resumes from it (``resume=True``), seeing the same example order, so an interrupted run ends with
  the same data as an uninterrupted one.
* At the end the adapter is saved to ``<run_dir>/adapter/`` (and copied to ``output`` when set) and
  ``<run_dir>/run.json`` records data sizes, hyper-parameters, time, step time and losses.
* ``torch.set_num_threads(threads)`` (1 by default: the machine is shared) and a fixed seed make runs repeatable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.generation.prompt import PROMPT_VERSION
from agent.settings import ADAPTERS_DIR, DEFAULT_KB, SHARED_DATA, Settings

log = logging.getLogger(__name__)

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    """Hyper-parameters and paths of a training run (defaults: the shipped adapter's run)."""

    model: str = "smollm2-135m"            # base generator: preset name or model directory (agent.generation.provision)
    recipe: str = "facts"                  # "facts": agent.training.facts (targets copy the answering sentence, cited);
                                           # "dstc": agent.training.data (human DSTC replies + Bitext; the v8 recipe)
    models_path: Path | None = None        # provisioned models folder (default: Settings().models_dir)
    shared_data: Path = SHARED_DATA        # ../shared/data: dstc9/, dstc11/, bitext/
    kb_path: Path = DEFAULT_KB             # the project's knowledge base (KB examples)
    run_dir: Path = Path("~/.cache/moments/train/smollm2-135m-support")  # checkpoints, run.json, adapter/
    output: Path | None = None             # also copy the final adapter here (e.g. data/adapters/<name>)
    seed: int = 0                          # data order, LoRA init, dropout
    threads: int = 1                       # torch threads (2 collapse on the shared 2-core machine)
    max_len: int = 640                     # tokens per example, prompt + reply (history trimmed to fit)
    focus: int = 2                         # facts recipe: evidence focus of the prompts (agent.generation.focus; the
                                           # agent's focus_sentences): passages cut to this many sentences; 0: off
    k: int = 4                             # passages per prompt (the agent's top_k; the dstc recipe used 3)
    unanswerable_rate: float = 0.04        # facts recipe (v12; v11 had 0.12 and handed over on 31-37% of answerable
                                           # questions): see agent.training.facts. dstc recipe (v8: 0.05): gold-removed "I don't know" variants per grounded pair. With one or two
                                           # fixed replies greedy decoding collapsed onto them (0.1: 53% false
                                           # hand-overs); with the varied pool of training.data.ABSTAIN_REPLIES, 0.05
                                           # gives 4-6%
    handover_chitchat: bool = True         # non-knowledge DSTC11 requests -> varied hand-over replies (False: only
                                           # closing lines like "thanks, bye" are kept, with varied answers)
    bitext_grounded: bool = True           # Bitext targets = its opener + the top KB passage's answer, cited (False:
                                           # Bitext's own sentences, which taught the model to ignore the passages)

    max_steps: int = 1000                  # optimizer steps (sets the LR schedule); v12: 1,000 (its first 150 steps
                                           # ran on a 1,600-step schedule, then resumed with 1,000), 53 min here
    grad_accum: int = 1                    # examples per optimizer step (batch 1 each: no padding waste)
    lr: float = 4e-4                       # AdamW (v8, dstc recipe: 3e-4) peak learning rate (v9: 6e-4 on 16 layers, +0.9 held-out F1 but
                                           # it hands over on the KB's "How long do I have to return an item?")
    warmup_steps: int = 10                 # linear warm-up, then cosine decay to 10% of the peak
    weight_decay: float = 0.0
    lora_r: int = 16                       # rank (r=16 on 10 layers: 1.6 M parameters, ≈ 6.5 MB fp32)
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_layers: int = 12                  # LoRA on the top N decoder layers (0: all, 3.9 s/step against 1.9 s for
                                           # 10 here); backward stops below them
    target_modules: tuple[str, ...] = TARGET_MODULES
    checkpoint_every: int = 25             # optimizer steps between checkpoints
    max_minutes: float | None = None       # stop (checkpointed, resumable) after this much wall-clock time
    limit_examples: int | None = None      # use only the first N training examples (tests, smoke runs)
    resume: bool = True                    # continue from <run_dir>/checkpoint when it exists
    progress: bool = True                  # tqdm bar with the running loss
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


# ------------------------------------------------------------------------------------------------ pieces

def load_base(cfg: TrainConfig):
    """The base causal LM (fp32, eager attention) and its tokenizer, loaded as the agent loads them."""
    from agent.generation.loading import load_base_model
    from agent.generation.provision import resolve_model

    settings = Settings(model=cfg.model, models_path=cfg.models_path) if cfg.models_path else Settings(model=cfg.model)
    model_dir = resolve_model(cfg.model, settings.models_dir)
    model, tok = load_base_model(model_dir)
    return model, tok, model_dir


def add_lora(model, cfg: TrainConfig):
    """Wrap ``model`` with a fresh LoRA adapter as configured."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)
    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers - cfg.lora_layers, n_layers)) if 0 < cfg.lora_layers < n_layers else None
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=list(cfg.target_modules), layers_to_transform=layers, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def reply_loss(model, input_ids: list[int], labels: list[int]):
    """Mean cross-entropy over reply tokens; logits only where a label exists (``(n_reply, vocab)``)."""
    import torch

    ids = torch.tensor([input_ids])  # (1, seq)
    target = torch.tensor(labels)  # (seq,)
    pos = (target[1:] != -100).nonzero().squeeze(-1)  # (n_reply,) positions whose *next* token is a label
    logits = model(input_ids=ids, logits_to_keep=pos).logits[0]  # (n_reply, vocab)
    return torch.nn.functional.cross_entropy(logits.float(), target[pos + 1])


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def _save_checkpoint(run_dir: Path, model, opt, sched, state: dict) -> None:
    import torch

    tmp = run_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    final = run_dir / "checkpoint"
    old = run_dir / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(run_dir: Path, model, opt, sched) -> dict | None:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ck = run_dir / "checkpoint"
    if not (ck / "state.json").is_file():
        return None
    set_peft_model_state_dict(model, load_file(str(ck / "adapter_model.safetensors")))
    blob = torch.load(ck / "trainer.pt", weights_only=False)
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    random.setstate(blob["python_rng"])
    return json.loads((ck / "state.json").read_text())


def encode_all(tokenizer, examples, max_len: int) -> list[tuple[list[int], list[int]]]:
    from agent.training.data import encode

    out = []
    for ex in examples:
        enc = encode(tokenizer, ex, max_len)
        if enc is not None:
            out.append(enc)
    return out


# ------------------------------------------------------------------------------------------------ the loop

def train(cfg: TrainConfig, examples=None, sizes: dict | None = None) -> dict:
    """Train (or resume) a run; returns the run record (also written to ``<run_dir>/run.json``)."""
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    run_dir = Path(cfg.run_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if examples is None:
        examples, sizes = build_examples(cfg, run_dir)
    if cfg.limit_examples:
        examples = examples[: cfg.limit_examples]
    model, tok, model_dir = load_base(cfg)
    encoded = encode_all(tok, examples, cfg.max_len)
    if not encoded:
        raise ValueError("no training example fits max_len; raise --max-len or shorten the passages.")
    data_seconds = time.time() - started
    model = add_lora(model, cfg)
    model.train()
    params, opt, sched, state = _optimizer(cfg, model, run_dir)
    order = list(range(len(encoded)))
    random.Random(cfg.seed).shuffle(order)
    bar = tqdm(total=cfg.max_steps, initial=state["step"], desc="train", unit="step", disable=not cfg.progress)
    segment_start = time.time()
    base_seconds = state["seconds"]
    stopped_early = False
    while state["step"] < cfg.max_steps:
        step = state["step"]
        t0 = time.perf_counter()
        total = 0.0
        for a in range(cfg.grad_accum):
            ids, labels = encoded[order[(step * cfg.grad_accum + a) % len(order)]]
            loss = reply_loss(model, ids, labels) / cfg.grad_accum
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["losses"].append(round(total, 4))
        state["seconds"] = base_seconds + time.time() - segment_start
        recent = state["losses"][-20:]
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", s_per_step=f"{time.perf_counter() - t0:.1f}")
        bar.update(1)
        out_of_time = cfg.max_minutes is not None and time.time() - started > cfg.max_minutes * 60
        if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.max_steps or out_of_time:
            _save_checkpoint(run_dir, model, opt, sched, state)
        if out_of_time and state["step"] < cfg.max_steps:
            stopped_early = True
            log.warning("max_minutes reached at step %d; run again with the same run_dir to resume", state["step"])
            break
    bar.close()
    record = _record(cfg, state, sizes, len(encoded), data_seconds, model_dir, stopped_early)
    if not stopped_early:
        _save_adapter(cfg, run_dir, model, record)
    (run_dir / "run.json").write_text(json.dumps(record, indent=1))
    return record


def build_examples(cfg: TrainConfig, run_dir: Path) -> tuple[list, dict]:
    """The training examples of ``cfg.recipe`` and their sizes, over the agent's own persisted KB index (built
    once, reused)."""
    from agent.training.data import DataConfig
    from agent.training.mix import build_dataset
    from retrieval.index import KnowledgeIndex, index_dir_for

    settings = Settings(kb_path=cfg.kb_path)
    index = KnowledgeIndex.load_or_build(settings.kb_path, index_dir_for(settings.index_dir, settings.kb_path),
                                         settings.embedder, settings.chunk_tokens, progress=False)
    if cfg.recipe == "facts":
        from agent.training.facts import FactConfig, build_facts

        data = build_facts(FactConfig(shared_data=Path(cfg.shared_data), k=cfg.k, seed=cfg.seed,
                                      unanswerable_rate=cfg.unanswerable_rate), kb_index=index)
    else:
        data = build_dataset(DataConfig(shared_data=Path(cfg.shared_data), kb_path=Path(cfg.kb_path),
                                        cache_dir=run_dir.parent, k=cfg.k, seed=cfg.seed,
                                        unanswerable_rate=cfg.unanswerable_rate,
                                        handover_chitchat=cfg.handover_chitchat,
                                        bitext_grounded=cfg.bitext_grounded), index=index)
    if cfg.focus > 0 and cfg.recipe == "facts":  # dstc targets are human replies, not sentences to keep in view
        from agent.generation.focus import Focus
        from agent.training.focused import focus_dataset
        from retrieval.embedder import embed

        data = focus_dataset(data, Focus(lambda texts: embed(index.model, list(texts)), keep=cfg.focus), cfg.seed,
                             progress=cfg.progress)
    return data.train, data.sizes


def _optimizer(cfg: TrainConfig, model, run_dir: Path):
    """The trainable parameters, AdamW, the LR schedule and the run state (resumed from the checkpoint if any)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    state = {"step": 0, "losses": [], "seconds": 0.0}
    if cfg.resume:
        loaded = _load_checkpoint(run_dir, model, opt, sched)
        if loaded:
            state = loaded
            log.info("resuming %s at step %d", run_dir, state["step"])
    return params, opt, sched, state


def _save_adapter(cfg: TrainConfig, run_dir: Path, model, record: dict) -> None:
    """Save the final adapter (with the prompt version and recipe it was trained with) and copy it to ``output``."""
    adapter_dir = run_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(str(adapter_dir))
    config = adapter_dir / "adapter_config.json"  # name the base model by preset, not by this machine's path
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": cfg.model}, indent=2,
                                 sort_keys=True) + "\n")
    (adapter_dir / "moments.json").write_text(json.dumps(
        {"prompt_version": PROMPT_VERSION, "recipe": cfg.recipe, "base_model": cfg.model,
         "focus_sentences": cfg.focus}, indent=1) + "\n")
    record["adapter_dir"] = str(adapter_dir)
    if cfg.output:
        out = Path(cfg.output)
        out.mkdir(parents=True, exist_ok=True)
        for f in ("adapter_config.json", "adapter_model.safetensors", "moments.json"):
            shutil.copy2(adapter_dir / f, out / f)
        record["output"] = str(out)


def _record(cfg: TrainConfig, state: dict, sizes: dict | None, n_encoded: int, data_seconds: float,
            model_dir: Path, stopped_early: bool) -> dict:
    losses = state["losses"]
    first, last = losses[:20], losses[-20:]
    return {
        "config": cfg.to_json(),
        "base_model_dir": str(model_dir),
        "data_sizes": sizes or {},
        "encoded_examples": n_encoded,
        "examples_seen": state["step"] * cfg.grad_accum,
        "steps": state["step"],
        "complete": not stopped_early,
        "train_seconds": round(state["seconds"], 1),
        "data_seconds": round(data_seconds, 1),
        "seconds_per_step": round(state["seconds"] / max(1, state["step"]), 2),
        "loss_first20": round(sum(first) / max(1, len(first)), 4),
        "loss_last20": round(sum(last) / max(1, len(last)), 4),
        "losses": losses,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ------------------------------------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="moments train", description="Train the support LoRA adapter (CPU).")
    p.add_argument("--model", default=d.model)
    p.add_argument("--recipe", choices=("facts", "dstc"), default=d.recipe,
                   help="training data: facts (copy the answering sentence, cited) or dstc (the v8 recipe)")
    p.add_argument("--k", type=int, default=d.k, help="passages per prompt")
    p.add_argument("--focus", type=int, default=d.focus,
                   help="evidence focus: sentences kept per passage in the prompts (0: whole passages)")
    p.add_argument("--shared-data", type=Path, default=d.shared_data)
    p.add_argument("--run-dir", type=Path, default=d.run_dir)
    p.add_argument("--output", type=Path, default=None,
                   help=f"copy the final adapter here, e.g. {ADAPTERS_DIR / 'smollm2-135m-support'}")
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--unanswerable-rate", type=float, default=d.unanswerable_rate)
    p.add_argument("--handover-chitchat", action=argparse.BooleanOptionalAction, default=d.handover_chitchat,
                   help="train non-knowledge requests to a (varied) hand-over reply instead of dropping them")
    p.add_argument("--bitext-grounded", action=argparse.BooleanOptionalAction, default=d.bitext_grounded,
                   help="Bitext targets keep only its friendly opener and add the top KB passage's answer, cited")
    p.add_argument("--lora-r", type=int, default=d.lora_r)
    p.add_argument("--lora-layers", type=int, default=d.lora_layers)
    p.add_argument("--max-len", type=int, default=d.max_len)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--limit-examples", type=int, default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--no-resume", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(model=args.model, recipe=args.recipe, k=args.k, shared_data=args.shared_data, run_dir=args.run_dir, output=args.output,
                      max_steps=args.max_steps, grad_accum=args.grad_accum, lr=args.lr, lora_r=args.lora_r,
                      lora_alpha=2 * args.lora_r, lora_layers=args.lora_layers, max_len=args.max_len,
                      checkpoint_every=args.checkpoint_every, max_minutes=args.max_minutes,
                      limit_examples=args.limit_examples, seed=args.seed, threads=args.threads,
                      unanswerable_rate=args.unanswerable_rate, handover_chitchat=args.handover_chitchat,
                      bitext_grounded=args.bitext_grounded, focus=args.focus,
                      resume=not args.no_resume)
    record = train(cfg)
    summary = {k: v for k, v in record.items() if k not in ("losses", "config")}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
