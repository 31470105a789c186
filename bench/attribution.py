"""Attribution benchmark: faithfulness and cost of per-token passage attribution on real turns.

    python bench/attribution.py [--n 100] [--n-kb 30] [--ks 3,4,5] [--max-new-tokens 40]

For each turn (DSTC9 knowledge-seeking turns from ../shared/data/dstc9, then answerable questions on data/kb) it
generates the reply (timed), explains it with exact Shapley (timed; the same subset table gives leave-one-out), runs
the attention baseline (timed) and fits a ContextCite-style surrogate on 32 random ablations drawn from the table,
then measures, per method: top-1 removal drop vs a random other passage, gold-snippet agreement, LDS (token,
sentence, reply) over all 2^k subsets, and — every ``--stability-every`` turns — the stability of the Shapley scores
under a random permutation of the passages (the same reply re-scored). Results: bench/results/attribution.json
(aggregates + per-turn records, rewritten after every turn), attribution.md and attribution_*.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from attribution_data import BenchTurn, dstc9_turns, kb_turns
from attribution_metrics import lds, rank_spearman, removal_drops
from attribution_report import aggregate, write_markdown, write_plots

log = logging.getLogger("bench.attribution")
METHOD_NAMES = ("shapley", "loo", "attention", "surrogate32")


def run_turn(gen, turn: BenchTurn, index: int, args) -> dict | None:
    """Generate, explain and measure one turn; None when the reply is empty."""
    from agent.attribution.builder import assemble
    from agent.attribution.games import all_masks, shapley
    from agent.attribution.methods import METHODS, Options
    from agent.attribution.rescoring import score_subsets
    from agent.attribution.surrogate import fit_surrogate, random_masks
    from agent.generation.decoding import stream_tokens
    from agent.generation.prompt import build_prompt

    model, tok = gen.model, gen.tokenizer
    k = len(turn.passages)
    layout = build_prompt(tok, turn.question, turn.passages, turn.history)
    t0 = time.perf_counter()
    steps = list(stream_tokens(model, tok, layout.input_ids, args.max_new_tokens))
    gen_s = time.perf_counter() - t0
    if not steps:
        return None
    reply, texts = [s.token_id for s in steps], [s.text for s in steps]
    opt = Options(seed=index)

    t0 = time.perf_counter()
    res = METHODS["shapley"](model, layout, reply, options=opt)
    exp = assemble(res, tok, reply, texts, turn.passages, list(turn.scores), "shapley", opt)
    attr_s = time.perf_counter() - t0
    table = res.table
    t0 = time.perf_counter()
    att = METHODS["attention"](model, layout, reply, options=opt)
    att_s = time.perf_counter() - t0
    sur_masks = random_masks(k, 32, seed=index)
    w_sur, _ = fit_surrogate(sur_masks, table.logp[[table.index[m] for m in sur_masks]], k)
    credits = {"shapley": res.shapley, "loo": res.loo, "attention": att.credit, "surrogate32": w_sur}

    sentences = [(s.token_start, s.token_end) for s in exp.sentences]
    masks = all_masks(k)
    order = list(range(k))
    random.Random(1000 + index).shuffle(order)
    rec: dict = {
        "source": turn.source, "id": turn.id, "k": k, "passage_source": turn.passage_source,
        "question": turn.question, "reply": exp.reply, "reference": turn.extra.get("reference"),
        "n_tokens": len(reply), "prompt_tokens": len(layout), "gold": turn.gold, "gold_doc": turn.gold_doc,
        "gold_passages": sorted(j for j, p in enumerate(turn.passages) if p.doc_id == turn.gold_doc),
        "passages": [p.id for p in turn.passages], "scores": list(turn.scores),
        "gen_s": gen_s, "attr_s": attr_s, "attention_s": att_s, "cost_ratio": attr_s / gen_s,
        "attention_ratio": att_s / gen_s, "forward_passes": res.forward_passes,
        "tokens_rescored": res.tokens_rescored, "plain_tokens": res.plain_tokens,
        "padded_tokens": table.padded_tokens, "grounded_share": exp.grounded_share, "confidence": exp.confidence,
        "lds": {m: lds(table, w, masks, sentences) for m, w in credits.items()},
        "removal": {m: removal_drops(table, w, order) for m, w in credits.items()},
    }
    gold_set = {j for j, p in enumerate(turn.passages) if p.doc_id == turn.gold_doc}  # document-level match
    if gold_set:
        rec["gold_top"] = {m: int(np.argmax(w.sum(axis=0))) in gold_set for m, w in credits.items()}
        grounded = [t for t in exp.tokens if t.flag == "grounded" and t.top_passage is not None]
        rec["gold_grounded_tokens"] = (sum(t.top_passage in gold_set for t in grounded) / len(grounded)
                                       if grounded else None)
        rec["gold_retrieval_rank1"] = 0 in gold_set
    if args.stability_every and index % args.stability_every == 0 and k > 1:
        perm = list(range(k))
        prng = random.Random(index)
        while perm == sorted(perm):
            prng.shuffle(perm)
        layout2 = build_prompt(tok, turn.question, [turn.passages[p] for p in perm], turn.history)
        phi2 = shapley(score_subsets(model, layout2, reply, all_masks(k)))  # (T, k), permuted order
        back = np.zeros_like(phi2)
        back[:, perm] = phi2  # column i of phi2 is passage perm[i]
        rec["stability"] = {"perm": perm,
                            "passage_spearman": rank_spearman(res.shapley.sum(0), back.sum(0)),
                            "matrix_spearman": rank_spearman(res.shapley.ravel(), back.ravel()),
                            "top_same": int(np.argmax(res.shapley.sum(0))) == int(np.argmax(back.sum(0)))}
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="DSTC9 knowledge-seeking turns (default 100)")
    p.add_argument("--n-kb", type=int, default=30, help="questions on data/kb (default 30)")
    p.add_argument("--ks", default="3,4,5", help="passages per turn, cycled over turns (default 3,4,5)")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--stability-every", type=int, default=2, help="permutation check every N turns (0: never)")
    p.add_argument("--history", type=int, default=3, help="earlier exchanges in the prompt (DSTC9)")
    p.add_argument("--no-retrieval", action="store_true", help="gold + distractor passages instead of search")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true",
                   help="rewrite attribution.md and the plots from an existing attribution.json, run nothing")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.report_only:
        saved = json.loads((args.out / "attribution.json").read_text())
        summary = aggregate(saved["turns"])
        write_markdown(args.out / "attribution.md", summary, saved["meta"])
        write_plots(args.out, saved["turns"], summary)
        _print_table(summary)
        return 0

    import torch
    from tqdm import tqdm

    from agent.generation.loading import load_generator
    from agent.settings import Settings

    torch.set_num_threads(args.threads)
    ks = [int(x) for x in args.ks.split(",")]
    gen = load_generator(Settings(threads=args.threads))
    turns = list(dstc9_turns(args.data / "dstc9", args.n, ks, history=args.history,
                             use_retrieval=not args.no_retrieval))
    turns += list(kb_turns(ROOT / "data" / "kb", ROOT / "data" / "eval" / "kb_questions.jsonl", args.n_kb, ks,
                           use_retrieval=not args.no_retrieval))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    records: list[dict] = []
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "args": {k: str(v) for k, v in vars(args).items()},
            "model": gen.model_id, "adapter": gen.adapter_id, "method_names": list(METHOD_NAMES)}
    for i, turn in enumerate(tqdm(turns, desc="attribution bench", unit="turn")):
        try:
            rec = run_turn(gen, turn, i, args)
        except Exception:
            log.exception("turn %s failed", turn.id)
            rec = {"source": turn.source, "id": turn.id, "error": True}
        if rec is not None:
            records.append(rec)
        summary = aggregate(records)
        meta["elapsed_s"] = time.time() - started
        (args.out / "attribution.json").write_text(json.dumps({"meta": meta, "summary": summary,
                                                               "turns": records}, indent=1, default=float))
    summary = aggregate(records)
    write_markdown(args.out / "attribution.md", summary, meta)
    write_plots(args.out, records, summary)
    _print_table(summary)
    return 0


def _print_table(summary: dict) -> None:
    allv = summary.get("all", {})
    print(f"turns: {allv.get('n_turns')}  (errors: {summary.get('errors', 0)})")
    for m, r in allv.get("removal", {}).items():
        print(f"  removal {m:<12} top {r['mean_top']:.2f}/{r['median_top']:.2f}  random {r['mean_random']:.2f}/"
              f"{r['median_random']:.2f}  ratio(mean) {r['ratio_mean']:.1f}  ratio(median) {r['ratio_median']:.1f}")
    for m, r in allv.get("lds", {}).items():
        print(f"  LDS {m:<12} token {r['token']:.3f}  sentence {r['sentence']:.3f}  reply {r['reply']:.3f}")
    for k, c in summary.get("cost", {}).items():
        print(f"  cost k={k}: ratio median {c['ratio_median']:.2f} mean {c['ratio_mean']:.2f}  passes "
              f"{c['forward_passes']:.1f}  tokens {c['tokens_rescored']:.0f} (plain {c['plain_tokens']:.0f})")
    st = allv.get("stability")
    if st:
        print(f"  stability: passage Spearman mean {st['passage_mean']:.3f}, matrix {st['matrix_mean']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
