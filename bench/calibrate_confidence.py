"""Confidence bands calibrated on the development sets: which confidence makes a reply "high", "check" or "low".

Usage (from the project root)::

    python -m bench.calibrate_confidence            # answers + explains every dev question (cached), then the report
    python -m bench.calibrate_confidence --reuse    # only the questions not answered with the same configuration yet

The default agent (``bench.answers`` configuration ``default``: the shipped model, adapter, answer selector, quotes)
answers every question of the development sets ``data/dev/ledgerly`` and ``data/dev/pawpost`` on its own knowledge
base, and each reply is explained twice: exactly (Shapley values over every passage subset: what the store keeps and
Review shows) and with the instant estimate (``learned``: what ``/ask`` and the chat show first). A reply is *right*
as ``bench/answers.py`` judges it (:func:`bench.answers.has_fact`, :func:`bench.answers.is_handover`): every fact of an
answerable question in the reply; an unanswerable question answered instead of handed over is wrong. Hand-overs get
the ``abstained`` badge, not a band, and are left out of the bands.

Thresholds (:func:`choose`, on the exact confidence): ``high`` is the lowest confidence such that every band from it
up (confidence at or above it, at least ``--min-band`` replies) is at least ``--high-precision`` right; ``low`` the
highest one (not above ``high``) such that every band below it of at least ``--min-band`` replies is at least
``--low-wrong`` wrong. The chosen pair is written to ``bench/results/calibrate_confidence.{json,md}`` with the
precision of every band, per set and for the instant estimate too; ``agent/settings.py`` takes it as its defaults.
Never run on the evaluation sets (``data/kb`` questions, ``data/eval/*``): they would stop being evaluation sets.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEV = ROOT / "data" / "dev"
SETS = ("ledgerly", "pawpost")
ESTIMATORS = ("exact", "learned")
log = logging.getLogger("bench.calibrate_confidence")


@dataclass(frozen=True)
class Bands:
    """The chosen thresholds (None: no threshold met its target) and what they were chosen for."""

    high: float | None
    low: float | None
    high_precision: float
    low_wrong: float
    min_band: int


def band_of(confidence: float, high: float, low: float) -> str:
    """The badge level of a confidence (as :func:`ui.confidence.level` bands it)."""
    return "high" if confidence >= high else "low" if confidence < low else "check"


def choose(points: Sequence[tuple[float, bool]], *, high_precision: float = 0.9, low_wrong: float = 0.6,
           min_band: int = 10, step: float = 0.01) -> Bands:
    """Thresholds from ``(confidence, right)`` pairs (see the module docstring), on a grid of ``step``.

    ``high`` is lowered from 1 step by step while every band it passes through (confidence at or above it, at least
    ``min_band`` replies) is at least ``high_precision`` right, so that no narrower "high" band falls short either;
    ``low`` is raised from 0 while every band below it (at least ``min_band`` replies) is at least ``low_wrong``
    wrong, and stays at or below ``high``. Smaller bands are too few to judge and are passed over."""
    grid = [round(i * step, 6) for i in range(round(1 / step) + 1)]
    high = None
    for t in reversed(grid):
        band = [ok for c, ok in points if c >= t]
        if len(band) < min_band:
            continue
        if sum(band) / len(band) < high_precision:
            break
        high = t
    low = None
    for t in grid:
        if high is not None and t > high:
            break
        band = [ok for c, ok in points if c < t]
        if len(band) < min_band:
            continue
        if sum(not ok for ok in band) / len(band) < low_wrong:
            break
        low = t
    return Bands(high, low, high_precision, low_wrong, min_band)


def band_table(points: Sequence[tuple[float, bool]], high: float, low: float) -> dict[str, dict]:
    """Per band: replies, right ones, and the share right (its precision)."""
    out = {}
    for name in ("high", "check", "low"):
        band = [ok for c, ok in points if band_of(c, high, low) == name]
        out[name] = {"n": len(band), "right": sum(band), "right_share": round(sum(band) / len(band), 3) if band else None}
    return out


# ------------------------------------------------------------------------------------------------ running

def judge(question: dict, reply: str, abstained: bool) -> tuple[bool, bool]:
    """(handed over, right) as ``bench/answers.py`` judges a reply."""
    from bench.answers import has_fact, is_handover

    handed = abstained or is_handover(reply)
    if not question["answerable"]:
        return handed, handed
    return handed, not handed and bool(question["facts"]) and all(has_fact(reply, f) for f in question["facts"])


def run_set(name: str, args) -> list[dict]:
    """Every question of dev set ``name`` answered and explained (rows cached by configuration key)."""
    from tqdm import tqdm

    from bench.answers import _agent, _save, _stored, config_key, load_questions

    folder = DEV / name
    questions = load_questions(folder / "questions.jsonl", args.limit)
    agent = _agent("default", folder / "kb", args.home)
    agent.warm_up()
    key = config_key(agent, questions) + "-explained"
    path = args.results / f"calibrate_confidence_preds_{name}.jsonl"
    stored = _stored(path, key, args.reuse)
    todo = [q for q in questions if q["id"] not in stored]
    log.info("%s: %d stored rows reused, %d to answer", name, len(questions) - len(todo), len(todo))
    for n_done, q in enumerate(tqdm(todo, desc=name, unit="q")):
        r = agent.ask(q["question"])
        handed, right = judge(q, r.answer, r.abstained)
        row = {"id": q["id"], "key": key, "set": name, "answerable": q["answerable"], "reply": r.answer,
               "handed_over": handed, "right": right, "reply_tokens": len(r.token_ids),
               "answer_method": (r.versions.get("generation") or {}).get("answer_method"),
               "best_score": round(r.best_score, 4)}
        if r.token_ids and not handed:
            for label, method in (("exact", "shapley"), ("learned", "learned")):
                exp, _ = agent.explain(r, method=method)
                row[label] = {"confidence": round(exp.confidence, 4), "grounded_share": round(exp.grounded_share, 4),
                              "estimator": exp.estimator, "seconds": round(exp.seconds, 2)}
        stored[q["id"]] = row
        if n_done % 10 == 9 or n_done == len(todo) - 1:  # partial runs survive an interruption
            _save(path, list(stored.values()))
    return [stored[q["id"]] for q in questions]


def points_of(rows: Sequence[dict], estimator: str) -> list[tuple[float, bool]]:
    return [(r[estimator]["confidence"], r["right"]) for r in rows if estimator in r]


# ------------------------------------------------------------------------------------------------ report

def settings_pair(bands: Bands) -> tuple[float, float]:
    """The settings' (high, low) from the chosen bands: without a calibrated high band, 1.0 (the strictest value:
    only a reply with every content word grounded in passages at the support ceiling is badged high); without a low
    band, 0.0 (nothing is badged low)."""
    return (1.0 if bands.high is None else bands.high), (0.0 if bands.low is None else bands.low)


CUTS = (1.0, 0.99, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4)


def report(rows: list[dict], bands: Bands, command: str, seconds: float) -> dict:
    high, low = settings_pair(bands)
    sets = sorted({r["set"] for r in rows})
    out = {"command": command, "sets": sets, "chosen": {"high": bands.high, "low": bands.low},
           "thresholds": {"high": high, "low": low},
           "targets": {"high_precision": bands.high_precision, "low_wrong": bands.low_wrong,
                       "min_band": bands.min_band},
           "replies": len(rows), "handed_over": sum(r["handed_over"] for r in rows),
           "answered": sum(not r["handed_over"] for r in rows),
           "answered_right": sum(r["right"] and not r["handed_over"] for r in rows),
           "bands": {}, "seconds": round(seconds, 1)}
    for est in ESTIMATORS:
        out["bands"][est] = {"all": band_table(points_of(rows, est), high, low)}
        for s in sets:
            out["bands"][est][s] = band_table(points_of([r for r in rows if r["set"] == s], est), high, low)
    out["at_or_above"] = {est: [{"confidence": t, "n": len(b), "right_share": round(sum(b) / len(b), 3) if b else None}
                                for t in CUTS for b in [[ok for c, ok in points_of(rows, est) if c >= t]]]
                          for est in ESTIMATORS}
    deciles = []
    pts = sorted(points_of(rows, "exact"))
    for i in range(10):
        chunk = pts[i * len(pts) // 10:(i + 1) * len(pts) // 10]
        if chunk:
            deciles.append({"from": chunk[0][0], "to": chunk[-1][0], "n": len(chunk),
                            "right_share": round(sum(ok for _, ok in chunk) / len(chunk), 3)})
    out["exact_deciles"] = deciles
    return out


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(rep: dict) -> str:
    th, tg, ch = rep["thresholds"], rep["targets"], rep["chosen"]
    sets = ", ".join("data/dev/" + s for s in rep["sets"])
    lines = ["# Confidence bands calibrated on the development sets", "",
             f"Command: `{rep['command']}` ({rep['seconds']} s)", "",
             (f"Sets: {sets} (development only; the evaluation sets are not read). {rep['replies']} questions: "
              f"{rep['handed_over']} handed over (badge *abstained*, not banded), {rep['answered']} answered, "
              f"{rep['answered_right']} of them right (every fact in the reply; an unanswerable question answered is "
              "wrong)."), "",
             (f"Targets: *high* = the lowest confidence such that every band from it up is at least "
              f"{tg['high_precision']:.0%} right; *low* = the highest one (not above *high*) such that every band "
              f"below it is at least {tg['low_wrong']:.0%} wrong; bands of fewer than {tg['min_band']} replies are "
              f"not judged. Chosen on the exact confidence: high {ch['high']}, low {ch['low']} (`None`: no threshold "
              f"met its target). Settings defaults: **`MOMENTS_CONFIDENCE_HIGH={th['high']}`**, "
              f"**`MOMENTS_CONFIDENCE_LOW={th['low']}`** (no high band: 1.0, the strictest value; no low band: 0.0). "
              "Confidences are recorded to 4 decimals."), ""]
    for est in ESTIMATORS:
        what = ("exact (Shapley; what the store keeps and Review shows)" if est == "exact"
                else "instant estimate (learned; what /ask and the chat show first)")
        lines += [f"## Bands of the {what}", "", "| set | band | replies | right | share right |",
                  "| --- | --- | --- | --- | --- |"]
        for s, table in rep["bands"][est].items():
            for band, v in table.items():
                lines.append(f"| {s} | {band} | {v['n']} | {v['right']} | {_share(v['right_share'])} |")
        lines.append("")
    lines += ["## Replies at or above a confidence (answered replies)", "",
              "| confidence at least | exact: replies | exact: share right | instant: replies | instant: share right |",
              "| --- | --- | --- | --- | --- |"]
    for e, i in zip(rep["at_or_above"]["exact"], rep["at_or_above"]["learned"], strict=True):
        lines.append(f"| {e['confidence']} | {e['n']} | {_share(e['right_share'])} | {i['n']} | "
                     f"{_share(i['right_share'])} |")
    lines += ["", "## Exact confidence by decile (answered replies)", "", "| confidence | replies | share right |",
              "| --- | --- | --- |"]
    lines += [f"| {d['from']:.3f}–{d['to']:.3f} | {d['n']} | {d['right_share']:.3f} |" for d in rep["exact_deciles"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS), help="development sets under data/dev/")
    p.add_argument("--high-precision", type=float, default=0.9)
    p.add_argument("--low-wrong", type=float, default=0.6)
    p.add_argument("--min-band", type=int, default=10)
    p.add_argument("--limit", type=int, default=None, help="only the first N questions of each set")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--home", type=Path, default=None, help="MOMENTS_HOME for the run (default: the usual one)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    command = "python -m bench.calibrate_confidence " + " ".join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in sets:
        if not (DEV / s / "questions.jsonl").is_file():
            p.error(f"{s!r} is not a development set under {DEV} (the evaluation sets are never used here)")
    args.results.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = [row for s in sets for row in run_set(s, args)]
    bands = choose(points_of(rows, "exact"), high_precision=args.high_precision, low_wrong=args.low_wrong,
                   min_band=args.min_band)
    rep = report(rows, bands, command, time.time() - t0)
    (args.results / "calibrate_confidence.json").write_text(json.dumps(rep, indent=1) + "\n")
    (args.results / "calibrate_confidence.md").write_text(markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
