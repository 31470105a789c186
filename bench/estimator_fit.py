"""Fit the learned attention estimator on the exact tables of training-side turns, bench it on held-out ones, and
ship the weights beside the adapter.

    python -m bench.estimator_fit [--data DIR] [--no-ship]

Reads what :mod:`bench.estimator_data` wrote (``split = fit`` turns to fit, ``split = bench`` turns — other entities
and KB articles — to measure), fits :func:`agent.attribution.estimator.fit`, and reports on the bench turns, against
the exact Shapley values computed by the project's exact attributor:

* token-level LDS (Spearman over all ``2^k`` subsets of the additive prediction vs the exact log-prob, averaged over
  tokens; ``bench/attribution_metrics.lds``), for the learned estimate, the untrained attention baseline (mean over
  heads) and exact Shapley itself (the ceiling);
* top passage agreement (the passage with the most summed credit, estimate vs exact), and per token (tokens whose
  exact top credit is at least 0.1 nats);
* latency after the last reply token (the feature pass, timed in the data run, plus the weights), by answer mode.

Writes ``bench/results/estimator.{json,md}`` and, unless ``--no-ship``, ``attention_estimator.json`` into the adapter
directory (with the adapter's hash and the fit report).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


log = logging.getLogger("bench.estimator_fit")


def load_turns(folder: Path) -> list[tuple[dict, dict]]:
    out = []
    for meta_path in sorted(folder.glob("turn-*.json")):
        if ".tmp" in meta_path.name:
            continue
        meta = json.loads(meta_path.read_text())
        if meta.get("status") != "ok":
            continue
        with np.load(meta_path.with_suffix(".npz")) as z:
            arrays = {name: z[name] for name in z.files}
        if "dla" not in arrays:  # written before the direct-logit features: run bench.estimator_data --refeature
            continue
        out.append((meta, arrays))
    return out


STRONG = 0.1  # nats: a token whose largest exact Shapley value reaches this is "strong"


def evaluate(est, turns, previous=None) -> dict:
    """The report of one side (fit or bench); ``previous``: the weights shipped before this fit, measured on the same
    turns (row ``previous``)."""
    from agent.attribution.estimator import _shapley
    from agent.attribution.games import shapley_weights
    from agent.attribution.rescoring import SubsetScores
    from bench.attribution_metrics import token_lds

    names = ["learned", "attention", "shapley"] + (["previous"] if previous is not None else [])
    rows = {name: [] for name in names}
    split = {name: {"strong": [], "weak": []} for name in names}
    top = {name: [] for name in names if name != "shapley"}
    token_top = {name: [] for name in names if name != "shapley"}
    latency = {"quote": [], "generate": []}
    for meta, a in turns:
        x = a["x"].astype(np.float32)
        k = x.shape[3]
        table = SubsetScores(k=k, masks=[int(m) for m in a["masks"]], logp=a["table"].astype(np.float64))
        phi = _shapley(a["table"].astype(np.float64), k, shapley_weights(k))
        t0 = time.perf_counter()
        learned = est.credit(x, a["dla"], a["logp"], a["top_logp"]) if est is not None else None
        weights_s = time.perf_counter() - t0
        latency[meta["mode"]].append(meta["estimate_features_s"] + weights_s)
        credits = {"learned": learned, "attention": x.mean(axis=(1, 2)).astype(np.float64), "shapley": phi}
        if previous is not None:
            credits["previous"] = previous.credit(x, a["dla"], a["logp"], a["top_logp"])
        masks = list(range(1 << k))
        exact_top = int(np.argmax(phi.sum(axis=0)))
        strong = np.abs(phi).max(axis=1) >= STRONG
        for name, c in credits.items():
            if c is None:
                continue
            per_token = token_lds(table, c, masks)
            rows[name].append(_nanmean(per_token))
            for t, r in enumerate(per_token):
                split[name]["strong" if strong[t] else "weak"].append(r)
            if name in top:
                top[name].append(int(np.argmax(c.sum(axis=0))) == exact_top)
                if strong.any():
                    token_top[name].extend((c[strong].argmax(axis=1) == phi[strong].argmax(axis=1)).tolist())
    mean = lambda v: float(np.mean([x for x in v if x is not None])) if v else None
    return {
        "turns": len(turns),
        "tokens": int(sum(a["x"].shape[0] for _, a in turns)),
        "lds_token": {name: mean(v) for name, v in rows.items()},
        "lds_token_strong": {name: _nanmean(v["strong"]) for name, v in split.items()},
        "lds_token_weak": {name: _nanmean(v["weak"]) for name, v in split.items()},
        "strong_tokens": int(sum(1 for r in split["shapley"]["strong"] if not np.isnan(r))),
        "weak_tokens": int(sum(1 for r in split["shapley"]["weak"] if not np.isnan(r))),
        "top_passage_agreement": {name: mean(v) for name, v in top.items()},
        "token_top_agreement": {name: mean(v) for name, v in token_top.items()},
        "latency_s": {mode: {"n": len(v), "median": float(np.median(v)) if v else None,
                             "p90": float(np.percentile(v, 90)) if v else None} for mode, v in latency.items()},
    }


def _nanmean(values) -> float | None:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(vals)) if vals else None


def main(argv: list[str] | None = None) -> int:
    from agent.attribution.estimator import FILENAME, FitTurn, fit
    from agent.attribution.estimator import load as load_estimator
    from agent.generation.loading import resolve_adapter
    from agent.settings import Settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="", help="folder of bench.estimator_data (default: its default for the adapter)")
    p.add_argument("--no-ship", action="store_true", help="do not write the weights into the adapter directory")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from agent.generation.loading import adapter_hash

    settings = Settings()
    adapter_dir = resolve_adapter(settings)
    a_hash = adapter_hash(adapter_dir) if adapter_dir is not None else None
    folder = Path(args.data).expanduser() if args.data else \
        Path("~/.cache/moments/estimator").expanduser() / f"{adapter_dir.name if adapter_dir else 'base'}-{a_hash or 'none'}"
    turns = load_turns(folder)
    fit_turns = [t for t in turns if t[0]["split"] == "fit"]
    bench_turns = [t for t in turns if t[0]["split"] == "bench"]
    log.info("%d turns (%d fit, %d bench) from %s", len(turns), len(fit_turns), len(bench_turns), folder)
    previous = load_estimator(adapter_dir, a_hash) if adapter_dir is not None else None  # the weights shipped now
    t0 = time.perf_counter()
    est = fit([FitTurn(a["x"].astype(np.float32), a["dla"].astype(np.float32), a["table"].astype(np.float64),
                       a["logp"], a["top_logp"]) for _, a in fit_turns], steps=args.steps)
    fit_s = time.perf_counter() - t0
    est.adapter_hash = a_hash
    sources: dict[str, int] = {}
    for meta, _ in turns:
        key = f"{meta['split']}/{meta['source']}/{meta['mode']}"
        sources[key] = sources.get(key, 0) + 1
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "adapter": adapter_dir.name if adapter_dir else None,
              "adapter_hash": a_hash, "data": str(folder), "fit_seconds": round(fit_s, 1), "steps": args.steps,
              "turns": sources, "fit": evaluate(est, fit_turns, previous),
              "bench": evaluate(est, bench_turns, previous),
              "previous_date": previous.report.get("date") if previous is not None else None}
    est.report = {k: report[k] for k in ("date", "turns", "bench")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimator.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "estimator.md").write_text(markdown(report))
    if not args.no_ship and adapter_dir is not None:
        (adapter_dir / FILENAME).write_text(json.dumps(est.to_json()) + "\n")
        log.info("wrote %s", adapter_dir / FILENAME)
    print(markdown(report))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# Learned attention estimator ({r['date']})", "",
             f"Adapter `{r['adapter']}` ({r['adapter_hash']}); exact tables from `python -m bench.estimator_data` "
             f"(training side only), fitted in {r['fit_seconds']} s. Turns by split/source/mode: "
             + ", ".join(f"{k} {v}" for k, v in sorted(r["turns"].items())) + ".", ""]
    for side in ("bench", "fit"):
        e = r[side]
        lines += [f"## {side} turns ({e['turns']} turns, {e['tokens']} tokens)", "",
                  (f"Strong tokens: the largest exact Shapley value of the token is at least {STRONG} nats "
                   f"({e.get('strong_tokens')} tokens; {e.get('weak_tokens')} weak ones)."), "",
                  ("| method | token LDS vs exact tables | strong tokens | weak tokens | top passage = exact's | "
                   "token top passage = exact's |"),
                  "|---|---|---|---|---|---|"]
        label = {"previous": f"previous weights ({r.get('previous_date')})"}
        for name in ("learned", "previous", "attention", "shapley"):
            if name not in e["lds_token"]:
                continue
            f = lambda v: "—" if v is None else f"{v:.3f}"
            lines.append(f"| {label.get(name, name)} | {f(e['lds_token'].get(name))} | "
                         f"{f(e.get('lds_token_strong', {}).get(name))} | {f(e.get('lds_token_weak', {}).get(name))} | "
                         f"{f(e['top_passage_agreement'].get(name))} | {f(e['token_top_agreement'].get(name))} |")
        lines += ["", ("Latency after the last reply token (feature pass, timed in the data run on its machine and "
                       "load; `bench/speed.py` measures it side by side), seconds: ") + "; ".join(
            f"{m}: median {v['median']:.2f}, p90 {v['p90']:.2f} (n={v['n']})" for m, v in e["latency_s"].items()
            if v["n"]), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
