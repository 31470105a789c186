"""Answer selection on development knowledge bases: fit the selector, and measure it against the cosine pick.

Usage (from the project root)::

    python -m bench.select_dev                 # leave-one-set-out report over data/dev/* (no file written but results)
    python -m bench.select_dev --fit --max-false 0.02   # ... and fit on all dev sets: data/selector/selector.json

Data: every folder ``data/dev/<name>/`` with ``kb/`` and ``questions.jsonl`` (the schema of
``data/eval/brightwave``). These are development sets: written for tuning, never reported as generalisation; the
evaluation sets (``data/kb`` questions, ``data/eval/brightwave``) are not read here.

For each question the real index of its knowledge base is searched (the product's hybrid search, ``--pool`` hits),
and every candidate unit of the hits gets its feature row (:func:`agent.generation.selector.candidates`) and a label
(it holds every fact of the question, the benchmark's exact-fact test). Each answerable question also yields a
*gold-removed* variant (its article's passages dropped from the hits, the next ones taken instead), unanswerable
unless another article holds the facts: extra negatives for the answerability model.

Reported, per held-out set (fitted on the other sets) and in total, written to ``bench/results/select_dev.{md,json}``:
oracle (some candidate holds the facts), the cosine pick (today's focus), the selector's pick, and the answerability
model's false hand-overs / unanswerable caught at the threshold that gives at most ``--max-false`` false hand-overs on the
*training* sets of that fold.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEV = ROOT / "data" / "dev"
WEIGHTS = ROOT / "data" / "selector" / "selector.json"
log = logging.getLogger("bench.select_dev")


@dataclass
class Item:
    """One question's candidates: features (n, F), labels (n,), whether answerable, and which variant."""

    qid: str
    question: str
    feats: np.ndarray
    labels: np.ndarray
    answerable: bool
    variant: str  # "asked" | "gold_removed"
    texts: list[str]
    group: str = ""  # the article (the question id for unanswerable ones): folds never split a group


def dev_sets(dev: Path = DEV) -> list[str]:
    if not dev.is_dir():
        return []
    return sorted(p.name for p in dev.iterdir() if (p / "kb").is_dir() and (p / "questions.jsonl").is_file())


def build_items(name: str, pool: int, cache: Path, dev: Path = DEV, embedder: str = "") -> list[Item]:
    """The candidate tables of dev set ``name`` (cached by set, pool and the questions' and articles' content)."""
    import hashlib

    from tqdm import tqdm

    from agent.generation.focus import Focus
    from agent.generation.selector import FEATURES, Idf, candidates
    from bench.answers import norm  # the benchmark's own fact test
    from retrieval.embedder import PACKAGED_EMBEDDER, embed
    from retrieval.index import KnowledgeIndex

    folder = dev / name
    qs = [json.loads(x) for x in (folder / "questions.jsonl").read_text().splitlines() if x.strip()]
    h = hashlib.sha256()
    for f in sorted((folder / "kb").glob("*")) + [folder / "questions.jsonl"]:
        h.update(f.read_bytes())
    embedder = embedder or PACKAGED_EMBEDDER
    h.update(repr((pool, FEATURES, embedder)).encode())
    path = cache / f"{name}-{h.hexdigest()[:12]}.pkl"
    if path.is_file():
        return [Item(**d) for d in pickle.loads(path.read_bytes())]
    slug = "" if embedder == PACKAGED_EMBEDDER else "-" + hashlib.sha256(embedder.encode()).hexdigest()[:8]
    index = KnowledgeIndex.load_or_build(folder / "kb", cache / f"index-{name}{slug}", embedder, 180)
    focus = Focus(lambda texts: embed(index.model, list(texts)))
    idf = Idf(index.passages)
    items: list[Item] = []
    for q in tqdm(qs, desc=f"select_dev/{name}", unit="q"):
        facts = [norm(f) for f in q.get("facts") or []]
        hits = index.search(q["question"], pool + 8)
        variants = [("asked", hits[:pool], bool(q["answerable"]))]
        if q["answerable"]:
            variants.append(("gold_removed", [h for h in hits if h.passage.doc_id != q["article"]][:pool], True))
        for variant, vh, answerable in variants:
            cands = candidates(q["question"], vh, focus._vectors, idf)
            labels = np.array([bool(facts) and all(f in norm(c.unit.text) for f in facts) for c in cands])
            if variant == "gold_removed":
                answerable = bool(labels.any())  # another article may hold the facts
            if not cands:
                continue
            items.append(Item(q["id"], q["question"], np.stack([c.features for c in cands]), labels,
                              answerable, variant, [c.unit.text for c in cands], q["article"] or q["id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps([asdict(it) for it in items]))
    return items


# ------------------------------------------------------------------------------------------------ fitting

def fit_ranker(items: list[Item], l2: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Listwise softmax weights (over standardised features) putting probability on the fact-holding candidates."""
    from scipy.optimize import minimize

    train = [it for it in items if it.labels.any() and not it.labels.all()]
    allx = np.concatenate([it.feats for it in train])
    mean, scale = allx.mean(0), allx.std(0) + 1e-6
    xs = [(it.feats - mean) / scale for it in train]
    ys = [it.labels.astype(float) / it.labels.sum() for it in train]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = l2 * 0.5 * w @ w, l2 * w
        for x, y in zip(xs, ys):
            s = x @ w  # (n,)
            s = s - s.max()
            p = np.exp(s) / np.exp(s).sum()
            total -= float(y @ np.log(p + 1e-12))
            grad = grad + x.T @ (p - y)
        return total / len(xs), grad / len(xs)

    w0 = np.zeros(allx.shape[1])
    w0[0] = 1.0
    res = minimize(loss, w0, jac=True, method="L-BFGS-B")
    return res.x, mean, scale


def picks(items: list[Item], w, mean, scale) -> list[int]:
    return [int(np.argmax(((it.feats - mean) / scale) @ w)) for it in items]


def answer_table(items: list[Item], w, mean, scale) -> tuple[np.ndarray, np.ndarray]:
    """Answerability inputs per item and the label: some candidate holds the facts (the question is answerable
    from these hits)."""
    from agent.generation.selector import answer_features

    xs, ys = [], []
    for it in items:
        s = ((it.feats - mean) / scale) @ w
        xs.append(answer_features(it.feats, s))
        ys.append(bool(it.answerable and it.labels.any()))
    return np.array(xs), np.array(ys)


def fit_answer(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    from scipy.optimize import minimize

    mean, scale = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / scale

    def loss(wb: np.ndarray):
        w, b = wb[:-1], wb[-1]
        z = xs @ w + b
        p = 1 / (1 + np.exp(-z))
        ll = -np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)) + l2 * 0.5 * w @ w / len(y)
        g = xs.T @ (p - y) / len(y)
        return ll, np.concatenate([g + l2 * w / len(y), [np.mean(p - y)]])

    res = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    w, b = res.x[:-1], res.x[-1]
    # fold the standardisation into the weights: the shipped model takes raw answer features
    return w / scale, float(b - (w / scale) @ mean), mean, scale


def prob(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(x @ w + b)))


def threshold_for(p: np.ndarray, answerable: np.ndarray, max_false: float = 0.03) -> float:
    """The highest threshold at which at most ``max_false`` of answerable questions are handed over."""
    pa = np.sort(p[answerable])
    k = int(np.floor(max_false * len(pa)))
    return float(pa[k]) if len(pa) else 0.5


# ------------------------------------------------------------------------------------------------ report

def evaluate(train: list[Item], test: list[Item], cos_col: int, max_false: float = 0.03, answer_l2: float = 1.0) -> dict:
    w, mean, scale = fit_ranker([it for it in train if it.variant == "asked"])
    xa, ya = answer_table(train, w, mean, scale)
    aw, ab, _, _ = fit_answer(xa, ya, answer_l2)
    asked_train = np.array([it.variant == "asked" and it.answerable for it in train])
    thr = threshold_for(prob(xa, aw, ab), asked_train, max_false)
    asked = [it for it in test if it.variant == "asked"]
    ans = [it for it in asked if it.answerable]
    una = [it for it in asked if not it.answerable]
    sel = picks(ans, w, mean, scale)
    cos = [int(np.argmax(it.feats[:, cos_col])) for it in ans]
    xt, _ = answer_table(asked, w, mean, scale)
    pt = prob(xt, aw, ab)
    handed = pt < thr
    is_ans = np.array([it.answerable for it in asked])
    sel_right = np.array([bool(it.labels[p]) for it, p in zip(ans, sel)])
    two = np.array([_two_same(it, w, mean, scale) for it in ans])
    kept = ~handed[is_ans]
    return {
        "answerable": len(ans), "unanswerable": len(una),
        "oracle": float(np.mean([it.labels.any() for it in ans])),
        "cosine_pick": float(np.mean([it.labels[p] for it, p in zip(ans, cos)])),
        "selector_pick": float(sel_right.mean()),
        "selector_two_same_passage": float(two.mean()),
        "threshold": thr,
        "false_handovers": float(handed[is_ans].mean()),
        "unanswerable_caught": float(handed[~is_ans].mean()) if len(una) else None,
        "right_after_handover": float((sel_right & kept).mean()),
        "abstain_precision": float((~is_ans & handed).sum() / max(1, handed.sum())),
        "weights": dict(zip(_features(), np.round(w, 3).tolist())),
    }


def _two_same(it: Item, w, mean, scale) -> bool:
    """The best unit and the next best of the same passage (``Settings.quote_sentences`` = 2) hold the facts."""
    s = ((it.feats - mean) / scale) @ w
    order = np.argsort(-s)
    hit = it.feats[:, _features().index("hit_rank_inv")]
    same = [j for j in order[1:] if hit[j] == hit[order[0]]]
    return bool(it.labels[order[0]] or (same and it.labels[same[0]]))


def _features() -> tuple[str, ...]:
    from agent.generation.selector import FEATURES

    return FEATURES


def _total(folds) -> dict:
    """Micro-averages over folds (each figure weighted by its fold's question count)."""
    folds = list(folds)
    na = sum(f["answerable"] for f in folds)
    nu = sum(f["unanswerable"] for f in folds)
    out = {"answerable": na, "unanswerable": nu}
    for k in ("oracle", "cosine_pick", "selector_pick", "selector_two_same_passage", "false_handovers",
              "right_after_handover"):
        out[k] = sum(f[k] * f["answerable"] for f in folds) / na
    out["unanswerable_caught"] = sum((f["unanswerable_caught"] or 0) * f["unanswerable"] for f in folds) / max(1, nu)
    return out


def _folds(data: dict[str, list[Item]], k: int) -> dict[str, tuple[list[Item], list[Item]]]:
    """Leave one set out; within a set, ``k`` folds by article as well (``k`` <= 1: sets only)."""
    import zlib

    out = {}
    names = list(data)
    for held in names:
        others = [it for n in names if n != held for it in data[n]]
        if k <= 1:
            out[held] = (others, data[held])
            continue
        fold_of = {id(it): zlib.crc32(it.group.encode()) % k for it in data[held]}
        for f in range(k):
            out[f"{held}/{f}"] = (others + [it for it in data[held] if fold_of[id(it)] != f],
                                  [it for it in data[held] if fold_of[id(it)] == f])
    return out


def markdown(report: dict, command: str) -> str:
    t = report["total"]
    rows = [
        ("some candidate holds the facts (oracle, retrieval bound)", t["oracle"]),
        ("cosine pick (the earlier selector) holds the facts", t["cosine_pick"]),
        ("selector's pick holds the facts", t["selector_pick"]),
        ("selector's pick + next best sentence of its passage (quote_sentences=2)", t["selector_two_same_passage"]),
        ("false hand-overs (answerable questions handed over)", t["false_handovers"]),
        ("unanswerable questions handed over", t["unanswerable_caught"]),
    ]
    lines = [
        "# Answer selection on the development sets",
        "",
        f"Command: `{command}`  ",
        (f"Sets: {', '.join(report['sets'])} (data/dev: development only, never evaluation); candidates: every unit "
        f"of the top {report['pool']} hits of the product's search. Each figure is measured on held-out articles "
        "(5 folds by article within a set, the other set always in training) and micro-averaged over "
        f"{t['answerable']} answerable and {t['unanswerable']} unanswerable questions. The hand-over threshold of "
        f"each fold is set on its training side for at most {report['max_false']:.0%} false hand-overs."),
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {name} | {value:.3f} |" for name, value in rows],
        "",
    ]
    if "fitted" in report:
        lines += [("Fitted on all development sets (the shipped `data/selector/selector.json`): threshold "
                  f"{report['fitted']['threshold']:.3f}; weights over standardised features:"), "",
                  "| feature | weight |", "|---|---|",
                  *[f"| {k} | {v} |" for k, v in report["fitted"]["weights"].items()], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=6, help="hits whose units are candidates (Settings.answer_pool)")
    ap.add_argument("--folds", type=int, default=5, help="folds by article within each set (besides the others)")
    ap.add_argument("--max-false", type=float, default=0.02,
                    help="the hand-over threshold's rule: at most this share of answerable training questions")
    ap.add_argument("--embedder", default="", help="Settings.embedder (default: the packaged MiniLM)")
    ap.add_argument("--answer-l2", type=float, default=100.0, help="L2 penalty of the answerability model")
    ap.add_argument("--fit", action="store_true", help="fit on every dev set and write data/selector/selector.json")
    ap.add_argument("--dev", type=Path, default=DEV, help="folder of development sets")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "moments" / "select_dev")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from agent.generation.selector import FEATURES

    names = dev_sets(args.dev)
    if not names:
        print("no development sets under data/dev", file=sys.stderr)
        return 2
    data = {n: build_items(n, args.pool, args.cache, args.dev, args.embedder) for n in names}
    cos_col = FEATURES.index("cos_ctx")
    report: dict = {"embedder": args.embedder or "default", "pool": args.pool, "max_false": args.max_false, "sets": names, "folds": {}}
    folds = _folds(data, args.folds)
    for held, (train, test) in folds.items():
        report["folds"][held] = evaluate(train, test, cos_col, args.max_false, args.answer_l2)
        print(held, json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                for k, v in report["folds"][held].items() if k != "weights"}))
    report["total"] = _total(report["folds"].values())
    print("TOTAL", json.dumps({k: round(v, 3) for k, v in report["total"].items()}))
    if args.fit:
        everything = [it for n in names for it in data[n]]
        w, mean, scale = fit_ranker([it for it in everything if it.variant == "asked"])
        xa, ya = answer_table(everything, w, mean, scale)
        aw, ab, _, _ = fit_answer(xa, ya, args.answer_l2)
        asked = np.array([it.variant == "asked" and it.answerable for it in everything])
        thr = threshold_for(prob(xa, aw, ab), asked, args.max_false)
        from agent.generation.selector import ANSWER_FEATURES

        out = WEIGHTS if not args.embedder else WEIGHTS.with_name(f"selector-{args.embedder}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "features": list(FEATURES), "weights": w.tolist(), "mean": mean.tolist(), "scale": scale.tolist(),
            "answer_features": list(ANSWER_FEATURES), "answer_weights": aw.tolist(), "answer_bias": ab,
            "threshold": thr, "threshold_rule": f"at most {args.max_false:.0%} false hand-overs on the dev sets", "fitted_on": names, "pool": args.pool,
            "embedder": args.embedder or "default",
            "command": " ".join(["python -m bench.select_dev", *(argv if argv is not None else sys.argv[1:])]),
        }, indent=1))
        report["fitted"] = {"threshold": thr, "weights": dict(zip(FEATURES, np.round(w, 3).tolist()))}
        print("wrote", out, "threshold", round(thr, 3))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "select_dev" + (f"-{args.embedder}" if args.embedder else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (RESULTS / f"{stem}.md").write_text(markdown(report, " ".join(["python -m bench.select_dev", *(argv or sys.argv[1:])])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
