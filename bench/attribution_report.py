"""Aggregation, Markdown report and plots for the attribution benchmark (see bench/attribution.py).

Contract: :func:`aggregate` turns per-turn records into ``{"all"|"dstc9"|"kb": {...}, "cost": {k: {...}},
"errors": n}``; :func:`write_markdown` and :func:`write_plots` write ``attribution.md`` and ``attribution_*.png``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

METHODS = ("shapley", "loo", "attention", "surrogate32")


def _stats(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return (float(np.mean(vals)), float(np.median(vals))) if vals else (float("nan"), float("nan"))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and not math.isnan(b) else float("nan")


def _group(records: list[dict]) -> dict:
    out: dict = {"n_turns": len(records)}
    if not records:
        return out
    removal = {}
    for m in METHODS:
        top = [r["removal"][m]["drop_top"] for r in records]
        rnd = [r["removal"][m]["drop_random"] for r in records]
        (mt, md_t), (mr, md_r) = _stats(top), _stats(rnd)
        removal[m] = {"mean_top": mt, "median_top": md_t, "mean_random": mr, "median_random": md_r,
                      "ratio_mean": _ratio(mt, mr), "ratio_median": _ratio(md_t, md_r),
                      "share_top_gt_random": float(np.mean([a > b for a, b in zip(top, rnd)]))}
    out["removal"] = removal
    out["lds"] = {m: {lvl: _stats([r["lds"][m][lvl] for r in records])[0] for lvl in ("token", "sentence", "reply")}
                  for m in METHODS}
    with_gold = [r for r in records if r.get("gold_passages")]
    out["gold"] = {"turns_with_gold": len(with_gold), "turns": len(records)}
    if with_gold:
        out["gold"].update({f"top_is_gold_{m}": float(np.mean([r["gold_top"][m] for r in with_gold]))
                            for m in METHODS})
        out["gold"]["retrieval_rank1_is_gold"] = float(np.mean([r["gold_retrieval_rank1"] for r in with_gold]))
        out["gold"]["grounded_tokens_top_is_gold"] = _stats([r["gold_grounded_tokens"] for r in with_gold])[0]
    stab = [r["stability"] for r in records if r.get("stability")]
    if stab:
        pm, pmed = _stats([s["passage_spearman"] for s in stab])
        mm, mmed = _stats([s["matrix_spearman"] for s in stab])
        out["stability"] = {"n": len(stab), "passage_mean": pm, "passage_median": pmed, "matrix_mean": mm,
                            "matrix_median": mmed, "top_same": float(np.mean([s["top_same"] for s in stab]))}
    out["grounded_share"] = _stats([r["grounded_share"] for r in records])[0]
    out["confidence"] = _stats([r["confidence"] for r in records])[0]
    out["mean_reply_tokens"] = _stats([r["n_tokens"] for r in records])[0]
    out["passage_source"] = sorted({r["passage_source"] for r in records})
    return out


def aggregate(records: list[dict]) -> dict:
    ok = [r for r in records if not r.get("error")]
    summary: dict = {"errors": len(records) - len(ok), "all": _group(ok)}
    for source in ("dstc9", "kb"):
        summary[source] = _group([r for r in ok if r["source"] == source])
    cost = {}
    for k in sorted({r["k"] for r in ok}):
        rs = [r for r in ok if r["k"] == k]
        mean, med = _stats([r["cost_ratio"] for r in rs])
        cost[str(k)] = {
            "turns": len(rs), "ratio_mean": mean, "ratio_median": med,
            "attention_ratio_median": _stats([r["attention_ratio"] for r in rs])[1],
            "attr_s_median": _stats([r["attr_s"] for r in rs])[1], "gen_s_median": _stats([r["gen_s"] for r in rs])[1],
            "forward_passes": _stats([r["forward_passes"] for r in rs])[0],
            "tokens_rescored": _stats([r["tokens_rescored"] for r in rs])[0],
            "plain_tokens": _stats([r["plain_tokens"] for r in rs])[0],
            "padded_tokens": _stats([r["padded_tokens"] for r in rs])[0],
            "reply_tokens": _stats([r["n_tokens"] for r in rs])[0],
            "prompt_tokens": _stats([r["prompt_tokens"] for r in rs])[0],
            "rescore_tok_per_s": float(np.median([r["tokens_rescored"] / r["attr_s"] for r in rs])),
            "gen_tok_per_s": float(np.median([r["n_tokens"] / r["gen_s"] for r in rs])),
        }
    summary["cost"] = cost
    return summary


def _f(x, fmt: str = ".2f") -> str:
    return "—" if x is None or math.isnan(x) else format(x, fmt)


def write_markdown(path: Path, summary: dict, meta: dict) -> None:
    lines = ["# Attribution benchmark", "",
             (f"Run {meta.get('started')}, {meta.get('elapsed_s', 0) / 60:.1f} min; model {meta.get('model')} "
             f"(adapter: {meta.get('adapter')}); args: `{meta.get('args')}`."), ""]
    for name in ("all", "dstc9", "kb"):
        g = summary.get(name, {})
        if not g.get("n_turns"):
            continue
        lines += [f"## {name} ({g['n_turns']} turns; passages: {', '.join(g['passage_source'])})", "",
                  (f"Mean reply {g['mean_reply_tokens']:.1f} tokens; grounded share {g['grounded_share']:.2f}; "
                  f"confidence {g['confidence']:.2f}."), "",
                  ("**Top-1 removal** — reply log-prob drop (nats) when removing the passage ranked first vs a random "
                  "other passage:"), "",
                  ("| method | mean top | mean random | ratio (means) | median top | median random | ratio (medians) "
                  "| top > random |"), "|---|---|---|---|---|---|---|---|"]
        for m, r in g["removal"].items():
            lines.append(f"| {m} | {_f(r['mean_top'])} | {_f(r['mean_random'])} | {_f(r['ratio_mean'], '.1f')} | "
                         f"{_f(r['median_top'])} | {_f(r['median_random'])} | {_f(r['ratio_median'], '.1f')} | "
                         f"{r['share_top_gt_random']:.0%} |")
        lines += ["", "**LDS** (Spearman, additive prediction vs actual log-prob over all 2^k subsets):", "",
                  "| method | token | sentence | reply |", "|---|---|---|---|"]
        for m, r in g["lds"].items():
            lines.append(f"| {m} | {_f(r['token'], '.3f')} | {_f(r['sentence'], '.3f')} | {_f(r['reply'], '.3f')} |")
        gold = g["gold"]
        lines += ["", (f"**Gold agreement** ({gold['turns_with_gold']}/{gold['turns']} turns have a passage of the "
                       "gold document among the retrieved; a match is by document):"), ""]
        if gold["turns_with_gold"]:
            lines.append("| top passage is gold | " + " | ".join(METHODS) + " | retrieval rank 1 | grounded tokens |")
            lines.append("|---" * (len(METHODS) + 3) + "|")
            lines.append("| share | " + " | ".join(_f(gold[f"top_is_gold_{m}"]) for m in METHODS) +
                         f" | {_f(gold['retrieval_rank1_is_gold'])} | {_f(gold['grounded_tokens_top_is_gold'])} |")
        st = g.get("stability")
        if st:
            lines += ["", (f"**Stability** under a random passage permutation ({st['n']} turns, same reply re-scored): "
                          f"Spearman of per-passage totals mean {st['passage_mean']:.3f} / median "
                          f"{st['passage_median']:.3f}; of the token×passage matrix mean {st['matrix_mean']:.3f} / "
                          f"median {st['matrix_median']:.3f}; same top passage {st['top_same']:.0%}.")]
        lines.append("")
    lines += ["## Cost (exact Shapley, all turns)", "",
              ("| k | turns | attr ÷ gen (median) | (mean) | attention ÷ gen | attr s | gen s | passes | tokens "
              "rescored | plain 2^k passes | reply tok | prompt tok | rescore tok/s | gen tok/s |"),
              "|---" * 14 + "|"]
    for k, c in summary.get("cost", {}).items():
        lines.append(f"| {k} | {c['turns']} | {c['ratio_median']:.2f} | {c['ratio_mean']:.2f} | "
                     f"{c['attention_ratio_median']:.2f} | {c['attr_s_median']:.1f} | {c['gen_s_median']:.1f} | "
                     f"{c['forward_passes']:.1f} | {c['tokens_rescored']:.0f} | {c['plain_tokens']:.0f} | "
                     f"{c['reply_tokens']:.0f} | {c['prompt_tokens']:.0f} | {c['rescore_tok_per_s']:.0f} | "
                     f"{c['gen_tok_per_s']:.1f} |")
    lines.append("")
    path.write_text("\n".join(lines))


def write_plots(out: Path, records: list[dict], summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if not r.get("error")]
    if not ok:
        return
    ks = sorted({r["k"] for r in ok})
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.boxplot([[r["cost_ratio"] for r in ok if r["k"] == k] for k in ks], tick_labels=[f"k={k}" for k in ks])
    ax.axhline(0.5, color="red", linestyle="--", label="target 0.5×")
    ax.set_ylabel("attribution s ÷ generation s")
    ax.set_title("Exact Shapley cost per turn")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "attribution_cost.png", dpi=120)
    plt.close(fig)

    g = summary["all"]
    fig, ax = plt.subplots(figsize=(7, 4))
    levels = ("token", "sentence", "reply")
    x = np.arange(len(METHODS))
    for i, lvl in enumerate(levels):
        ax.bar(x + (i - 1) * 0.25, [g["lds"][m][lvl] for m in METHODS], width=0.25, label=lvl)
    ax.set_xticks(x, METHODS)
    ax.set_ylabel("LDS (Spearman)")
    ax.set_title("Linear datamodeling score by method")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)
    ax.legend(loc="upper right", fontsize=8, ncols=3)
    fig.tight_layout()
    fig.savefig(out / "attribution_lds.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, [g["removal"][m]["mean_top"] for m in METHODS], width=0.4, label="remove top-1")
    ax.bar(x + 0.2, [g["removal"][m]["mean_random"] for m in METHODS], width=0.4, label="remove random other")
    ax.set_xticks(x, METHODS)
    ax.set_ylabel("mean drop of reply log-prob (nats)")
    ax.set_title("Top-1 removal vs random removal")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "attribution_removal.png", dpi=120)
    plt.close(fig)
