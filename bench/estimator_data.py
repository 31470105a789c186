"""Exact Shapley tables + attention features of training-side turns: the data the learned estimator is fitted on.

    nice -n 10 python -m bench.estimator_data [--n 300] [--out DIR] [--minutes 40] [--shard I/N]

Each turn (:mod:`bench.estimator_turns`; training side only) runs through the real pipeline
(:class:`agent.pipeline.Agent`: retrieval, evidence focus, hand-over check, then a quoted reply on even turns and a
generated one on odd turns), then

* the instant path: :func:`agent.attribution.headfeatures.head_features` (timed: the estimate's latency after the
  reply), and
* the reference: the project's exact attributor, all ``2^k`` passage subsets re-scored
  (:func:`agent.attribution.rescoring.score_subsets`, timed).

One ``turn-NNNNN.npz`` per turn (features float16 ``(T, L, H, k)``, the subset table, masks, reply ids, full-context
log-probs) plus a ``.json`` sidecar (source, entity, split, mode, texts, timings); a turn that handed over writes only
the sidecar. Existing files are skipped, so the run resumes where it stopped. Default output:
``~/.cache/moments/estimator/<adapter>-<hash>/`` (outside the repository: it is regenerated, not shipped).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.estimator_data")
ROOT = Path(__file__).resolve().parent.parent


def default_out(gen) -> Path:
    return Path("~/.cache/moments/estimator").expanduser() / f"{gen.adapter_id or 'base'}-{gen.adapter_hash or 'none'}"


def _save(path: Path, meta: dict, arrays: dict | None) -> None:
    if arrays is not None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path.with_suffix(".npz"))
    tmp = path.with_suffix(".tmp.json")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path.with_suffix(".json"))


def run(args) -> int:
    from agent.attribution.games import all_masks
    from agent.attribution.headfeatures import head_features
    from agent.attribution.rescoring import score_subsets
    from agent.generation.loading import apply_threads, load_generator
    from agent.pipeline import Agent
    from agent.settings import Settings
    from bench.estimator_turns import training_turns
    from retrieval.embedder import load_embedder
    from retrieval.index import KnowledgeIndex, index_dir_for

    settings = Settings(max_new_tokens=args.max_new_tokens, threads=1)
    apply_threads(settings)
    gen = load_generator(settings)
    kb_index = KnowledgeIndex.load_or_build(settings.kb_path, index_dir_for(settings.index_dir, settings.kb_path),
                                            settings.embedder, settings.chunk_tokens, progress=False)
    embedder = load_embedder(settings.embedder)
    out = Path(args.out).expanduser() if args.out else default_out(gen)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.minutes * 60
    done = written = 0
    shard, shards = (int(v) for v in args.shard.split("/"))
    focus_agent = Agent(settings, generator=gen, index=kb_index)
    for i, turn in enumerate(training_turns(Path(args.data), kb_index, seed=args.seed)):
        if i >= args.n or time.monotonic() > deadline:
            break
        if i % shards != shard:
            continue
        path = out / f"turn-{i:05d}"
        if path.with_suffix(".json").exists():
            done += 1
            if args.refeature:
                refeature(path, turn, gen, settings, kb_index, embedder, focus_agent)
            continue
        if args.refeature:
            continue
        mode = "quote" if i % 2 == 0 else "generate"
        s = replace_settings(settings, mode)
        index = kb_index if turn.pool is None else KnowledgeIndex.from_passages(turn.pool, embedder)
        agent = Agent(s, generator=gen, index=index)
        agent._focus = focus_agent.focus if turn.pool is None else None  # reuse the KB sentence cache
        meta = {"i": i, "source": turn.source, "entity": turn.entity, "split": turn.split, "mode": mode,
                "question": turn.question}
        result = agent.ask(turn.question, turn.history)
        if result.status != "ok" or not result.token_ids:
            _save(path, {**meta, "status": result.status}, None)
            continue
        layout = result.layout
        k = layout.n_passages
        with gen.lock:
            t0 = time.perf_counter()
            feats = head_features(gen, layout, result.token_ids)
            est_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            table = score_subsets(gen.model, layout, result.token_ids, all_masks(k), batch_size=4,
                                  min_shared_tokens=16, top_n=5)
            exact_s = time.perf_counter() - t0
        agree = float(np.mean(np.abs(feats.logp - table.row(table.full_mask)) < 1e-3))
        meta.update(status="ok", k=k, answer=result.answer, n_tokens=len(result.token_ids), prompt_tokens=len(layout),
                    estimate_features_s=est_s, exact_s=exact_s, generation_ms=result.timings.get("generation_ms"),
                    logp_agreement=agree, computed_tokens=feats.computed_tokens,
                    passages=[h.passage.id for h in result.hits])
        _save(path, meta, {"x": feats.x.astype(np.float16), "dla": feats.dla.astype(np.float16),
                           "table": table.logp.astype(np.float32), "masks": np.array(table.masks),
                           "reply": np.array(result.token_ids), "prompt": np.array(layout.input_ids),
                           "spans": np.array(layout.passage_spans), "logp": feats.logp, "top_ids": feats.top_ids,
                           "top_logp": feats.top_logp})
        written += 1
        log.info("turn %d (%s, %s, %s): k=%d T=%d features %.2f s, exact %.1f s", i, turn.source, turn.split, mode,
                 k, len(result.token_ids), est_s, exact_s)
    log.info("wrote %d turns (%d were already there) in %s", written, done, out)
    return 0


def refeature(path: Path, turn, gen, settings, kb_index, embedder, focus_agent) -> None:
    """Recompute the features of a stored turn with the current feature pass (the exact table is kept). The prompt
    and passage spans stored with the turn are used as they are; a turn stored without them is run again through
    the pipeline (deterministic), which must give the stored reply."""
    from types import SimpleNamespace

    from agent.attribution.headfeatures import head_features
    from agent.pipeline import Agent
    from retrieval.index import KnowledgeIndex

    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("status") != "ok":
        return
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {name: z[name] for name in z.files}
    if "dla" in arrays:
        return
    reply = arrays["reply"].tolist()
    if "prompt" in arrays and "spans" in arrays:
        layout = SimpleNamespace(input_ids=arrays["prompt"].tolist(),
                                 passage_spans=[tuple(int(v) for v in span) for span in arrays["spans"]])
    else:
        index = kb_index if turn.pool is None else KnowledgeIndex.from_passages(turn.pool, embedder)
        agent = Agent(replace_settings(settings, meta["mode"]), generator=gen, index=index)
        agent._focus = focus_agent.focus if turn.pool is None else None
        result = agent.ask(turn.question, turn.history)
        if list(result.token_ids) != reply:
            log.warning("turn %s: the reply differs from the stored one; features not recomputed", path.name)
            return
        layout = result.layout
    with gen.lock:
        feats = head_features(gen, layout, reply)
    if np.abs(feats.logp - arrays["logp"]).max() > 0.25:  # not the pass the turn was stored from: leave it
        log.warning("turn %s: the log-probs differ from the stored ones; features not recomputed", path.name)
        return
    arrays.update(x=feats.x.astype(np.float16), dla=feats.dla.astype(np.float16), prompt=np.array(layout.input_ids),
                  spans=np.array(layout.passage_spans))
    _save(path, meta, arrays)
    log.info("refeatured %s", path.name)


def replace_settings(settings, mode: str):
    return replace(settings, answer_mode=mode) if hasattr(settings, "__dataclass_fields__") else \
        settings.model_copy(update={"answer_mode": mode})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="turns to go through (hand-overs count)")
    p.add_argument("--minutes", type=float, default=40.0, help="stop starting new turns after this long")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default="", help="output folder (default: ~/.cache/moments/estimator/<adapter>)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="only turns whose index is I modulo N: run N processes (I = 0 .. N-1) to use N cores")
    p.add_argument("--refeature", action="store_true",
                   help="only recompute the features of the turns already there (their exact tables are kept)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
