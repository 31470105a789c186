"""Base vs LoRA-tuned generator on held-out DSTC entities and on the data/kb evaluation questions.

Usage (from the project root)::

    python -m bench.lora_eval --models base,tuned,qwen --adapter data/adapters/smollm2-135m-support

Each model answers the same prompts, built with the agent's prompt code (``agent.generation.prompt.build_prompt``):

* ``heldout``: DSTC11/DSTC9 knowledge turns of entities the adapter never saw (the entity split of
  :mod:`agent.training.data`), gold snippets among distractors of the same entity (k=3);
* ``unanswerable``: held-out prompts with the gold removed (the right reply is a hand-over);
* ``kb``: ``data/eval/kb_questions.jsonl`` with the top-3 passages of the project's own index.

Metrics: token-F1 and ROUGE-L (F) against the human/reference answer (citations ``[n]`` removed first);
exact-fact accuracy on answerable kb questions (every fact a case-insensitive substring of the reply);
abstention precision/recall over the unanswerable prompts (``heldout-unanswerable`` + kb ``answerable: false``),
false-abstention rate on answerable prompts; citation rate; decode tokens/s (single sequence, streamed, as in
the agent). Decoding is greedy, ``max_new_tokens`` 60, in left-padded batches of 8 (decode is memory-bound, so a
batch costs little more than one sequence). Predictions are written per model to
``bench/results/lora_eval_preds_<model>.jsonl`` and reused with ``--reuse``, so the base model can be evaluated
while the adapter is still training. ``qwen`` is the untuned ``qwen2.5-0.5b`` preset, the bigger reference; it
decodes ~3x slower; ``--reference-sample`` limits it to a subset, and every model is also scored on the subset
the reference answered.
Grounding: the share of content tokens that exact Shapley attribution flags as grounded in the passages, on the
first ``--grounding-n`` answerable held-out replies. Speeds are re-measured at the end side by side, in rounds that
alternate between the models (``--speed-rounds``). Results: ``bench/results/lora_eval.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import string
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
log = logging.getLogger("bench.lora_eval")

_HEADER = re.compile(r"\n\s*\[\d+\]\s*\S")


# ------------------------------------------------------------------------------------------------ metrics

def normalize_tokens(text: str) -> list[str]:
    from agent.training.data import strip_citations

    text = strip_citations(text).lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    return [t for t in text.split() if t not in ("a", "an", "the")]


def token_f1(pred: str, ref: str) -> float:
    p, r = normalize_tokens(pred), normalize_tokens(ref)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


def rouge_l(pred: str, ref: str) -> float:
    p, r = normalize_tokens(pred), normalize_tokens(ref)
    if not p or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    prec, rec = lcs / len(p), lcs / len(r)
    return 2 * prec * rec / (prec + rec)


def has_fact(reply: str, fact: str) -> bool:
    norm = lambda s: re.sub(r"\s+", " ", s.replace("–", "-").replace("—", "-")).lower()
    return norm(fact) in norm(reply)


# ------------------------------------------------------------------------------------------------ prompts

def eval_items(n_heldout: int, n_unanswerable: int, n_kb: int | None = None, seed: int = 0) -> list[dict]:
    """The evaluation prompts (same for every model): held-out DSTC, gold-removed variants, kb questions."""
    from agent.settings import DEFAULT_KB, SHARED_DATA, Settings
    from agent.training.data import DataConfig
    from agent.training.dstc import build_dstc
    from retrieval.index import KnowledgeIndex, index_dir_for
    settings = Settings()
    index = KnowledgeIndex.load_or_build(settings.kb_path, index_dir_for(settings.index_dir, settings.kb_path),
                                         settings.embedder, settings.chunk_tokens, progress=False)
    # build_dstc with a fresh Random(seed) gives exactly build_dataset's held-out side (it draws first)
    cfg = DataConfig(shared_data=SHARED_DATA, kb_path=DEFAULT_KB, cache_dir=Path("~/.cache/moments/train").expanduser(),
                     seed=seed)
    _, held = build_dstc(cfg, random.Random(seed))
    rng = random.Random(seed)
    answerable = [e for e in held if e.answerable]
    unanswerable = [e for e in held if not e.answerable]
    rng.shuffle(answerable)
    rng.shuffle(unanswerable)
    items = []
    for kind, exs in (("heldout", answerable[:n_heldout]), ("unanswerable", unanswerable[:n_unanswerable])):
        for e in exs:
            items.append({"kind": kind, "id": f"{kind}-{len(items)}", "entity": e.entity, "question": e.question,
                          "history": [[x.user, x.assistant] for x in e.history],
                          "passages": [p.to_dict() for p in e.passages], "gold": e.gold,
                          "reference": e.reference, "answerable": e.answerable, "facts": []})
    lines = (ROOT / "data" / "eval" / "kb_questions.jsonl").read_text().splitlines()
    if n_kb is not None and n_kb < len(lines):  # a deterministic sample, in file order
        lines = [lines[i] for i in sorted(random.Random(seed).sample(range(len(lines)), n_kb))]
    for line in lines:
        q = json.loads(line)
        hits = index.search(q["question"], 3)
        items.append({"kind": "kb", "id": q["id"], "entity": "kb", "question": q["question"], "history": [],
                      "passages": [h.passage.to_dict() for h in hits],
                      "gold": [i for i, h in enumerate(hits) if h.passage.doc_id == q["article"]],
                      "reference": q["answer"], "answerable": q["answerable"], "facts": q.get("facts", [])})
    return items


def _adapter_hash(adapter: str) -> str | None:
    """The hash of ``--adapter`` (a folder, or a name under data/adapters), None when it does not exist."""
    from agent.generation.loading import adapter_hash
    from agent.settings import ADAPTERS_DIR

    path = Path(adapter) if Path(adapter).is_dir() else ADAPTERS_DIR / adapter
    return adapter_hash(path) if (path / "adapter_config.json").is_file() else None


def items_digest(items: list[dict]) -> str:
    """A fingerprint of the prompts (ids, questions, history, passage titles and texts in order).

    Stored in each model's meta so that ``--reuse`` never scores old predictions against different prompts.
    """
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it["id"], it["question"], it["history"],
                             [[p["title"], p["text"]] for p in it["passages"]]]).encode())
    return h.hexdigest()[:16]


def _prompt_ids(tokenizer, item: dict) -> list[int]:
    from agent.generation.prompt import Exchange, build_prompt
    from retrieval.types import Passage

    return build_prompt(tokenizer, item["question"], [Passage(**p) for p in item["passages"]],
                        [Exchange(u, a) for u, a in item["history"]]).input_ids


def generate_batched(gen, prompts: list[list[int]], max_new_tokens: int, batch: int,
                     on_batch=None) -> list[tuple[str, int]]:
    """Greedy replies (text, n_tokens) for token-id prompts, left-padded batches; ``on_batch({i: reply})``
    is called after each batch (partial results survive an interrupted run)."""
    import torch

    from agent.generation.decoding import stop_token_ids

    tok, model = gen.tokenizer, gen.model
    stops = sorted(stop_token_ids(tok, model))
    pad = stops[0]
    out: list[tuple[str, int]] = []
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths: less padding
    results: dict[int, tuple[str, int]] = {}
    for s in range(0, len(order), batch):
        idx = order[s: s + batch]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in idx])  # (b, width)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx])
        with torch.inference_mode():
            seqs = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  do_sample=False, eos_token_id=stops, pad_token_id=pad)[:, width:]  # (b, new)
        for row, i in zip(seqs.tolist(), idx):
            n = next((j for j, t in enumerate(row) if t in stops), len(row))
            text = tok.decode(row[:n], skip_special_tokens=True)
            m = _HEADER.search(text)  # the agent's runaway guard: a reply never copies a passage block
            results[i] = ((text[: m.start()] if m else text).strip(), n)
        if on_batch is not None:
            on_batch({i: results[i] for i in idx})
        log.info("  %d/%d", min(s + batch, len(order)), len(order))
    out = [results[i] for i in range(len(prompts))]
    return out


def decode_speed(gen, prompts: list[list[int]], max_new_tokens: int) -> dict:
    """Tokens/s of streamed single-sequence decoding (the agent's :func:`agent.generation.decoding.stream_tokens`)."""
    from agent.generation.decoding import stream_tokens

    n_tok, secs, first = 0, 0.0, []
    for ids in prompts:
        t0 = time.perf_counter()
        t_first = None
        count = 0
        for _ in stream_tokens(gen.model, gen.tokenizer, ids, max_new_tokens=max_new_tokens):
            count += 1
            if t_first is None:
                t_first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        if count > 1 and t_first is not None:
            n_tok += count - 1
            secs += total - t_first
            first.append(t_first)
    return {"decode_tokens_per_s": round(n_tok / secs, 2) if secs else None,
            "first_token_s": round(sum(first) / len(first), 2) if first else None, "n_prompts": len(prompts)}


# ------------------------------------------------------------------------------------------------ running

def run_model(name: str, adapter: str, items: list[dict], args) -> dict:
    import torch

    from agent.generation.loading import load_generator
    from agent.settings import Settings

    torch.set_num_threads(1)
    model = args.reference_model if name == "qwen" else args.model
    gen = load_generator(Settings(adapter=adapter, model=model))
    prompts = [_prompt_ids(gen.tokenizer, it) for it in items]
    path = RESULTS / f"lora_eval_preds_{name}.jsonl"
    path.write_text("")

    def append(done: dict) -> None:
        with path.open("a") as f:
            for i, (r, n) in sorted(done.items()):
                f.write(json.dumps({"id": items[i]["id"], "kind": items[i]["kind"], "reply": r, "n_tokens": n}) + "\n")

    t0 = time.perf_counter()
    generate_batched(gen, prompts, args.max_new_tokens, args.batch, on_batch=append)
    seconds = time.perf_counter() - t0
    speed = decode_speed(gen, prompts[: args.speed_prompts], args.max_new_tokens)
    meta = {"model": model, "adapter": gen.adapter_id, "adapter_hash": gen.adapter_hash,
            "items_digest": getattr(args, "items_digest", None), "batched_seconds": round(seconds, 1), "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1),
            **speed}
    if args.grounding_n and name != "qwen":
        meta.update(grounding(gen, items, path, args.grounding_n))
    (RESULTS / f"lora_eval_meta_{name}.json").write_text(json.dumps(meta, indent=1))
    return meta


def speed_side_by_side(names: list[str], items: list[dict], args, rounds: int = 3) -> dict[str, dict]:
    """Decode speed of every model measured in one process, rounds alternating between models (the machine is
    shared and noisy, so only side-by-side numbers are comparable); medians over the rounds."""
    import statistics

    import torch

    from agent.generation.loading import load_generator
    from agent.settings import Settings

    torch.set_num_threads(1)
    chosen = [it for it in items if it["kind"] == "heldout"][: args.speed_prompts]
    gens = {n: load_generator(Settings(adapter="none" if n in ("base", "qwen") else args.adapter,
                                       model=args.reference_model if n == "qwen" else args.model)) for n in names}
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names if r % 2 == 0 else reversed(names):
            prompts = [_prompt_ids(gens[n].tokenizer, it) for it in chosen]
            runs[n].append(decode_speed(gens[n], prompts, args.max_new_tokens))
            log.info("speed round %d %s: %s", r + 1, n, runs[n][-1])
    return {n: {"decode_tokens_per_s": round(statistics.median(x["decode_tokens_per_s"] for x in rs), 2),
                "first_token_s": round(statistics.median(x["first_token_s"] for x in rs), 2),
                "speed_rounds": rounds, "n_prompts": len(chosen), "speed_side_by_side": True}
            for n, rs in runs.items()}


def grounding(gen, items: list[dict], pred_path: Path, n: int) -> dict:
    """Share of content tokens that exact attribution (:func:`agent.attribution.explain`, Shapley over the k=3
    passages) flags as grounded, over the replies to the first ``n`` answerable held-out prompts."""
    from tqdm import tqdm

    from agent.attribution import explain
    from agent.generation.prompt import Exchange, build_prompt
    from retrieval.types import Passage

    preds = {p["id"]: p for p in map(json.loads, pred_path.read_text().splitlines())}
    chosen = [it for it in items if it["kind"] == "heldout" and it["id"] in preds and preds[it["id"]]["reply"]][:n]
    content = grounded = 0
    shares: list[float] = []
    t0 = time.perf_counter()
    for it in tqdm(chosen, desc="grounding", unit="reply"):
        passages = [Passage(**p) for p in it["passages"]]
        layout = build_prompt(gen.tokenizer, it["question"], passages, [Exchange(u, a) for u, a in it["history"]])
        ids = gen.tokenizer.encode(preds[it["id"]]["reply"], add_special_tokens=False)
        texts = [gen.tokenizer.decode([i]) for i in ids]
        exp = explain(gen, layout, ids, texts, passages)
        toks = [t for t in exp.tokens if t.content]
        content += len(toks)
        grounded += sum(t.flag == "grounded" for t in toks)
        shares.append(exp.grounded_share)
    return {"grounded_content_share": round(grounded / content, 3) if content else None,
            "grounded_share_mean_reply": round(sum(shares) / len(shares), 3) if shares else None,
            "grounding_replies": len(chosen), "grounding_seconds": round(time.perf_counter() - t0, 1)}


def reference_subset(items: list[dict], sample: str) -> list[dict]:
    """The first N held-out, unanswerable and kb prompts (``sample`` = "N,N,N"), for the slower reference model."""
    limits = dict(zip(("heldout", "unanswerable", "kb"), (int(x) for x in sample.split(","))))
    taken: Counter = Counter()
    out = []
    for it in items:
        if taken[it["kind"]] < limits.get(it["kind"], 0):
            taken[it["kind"]] += 1
            out.append(it)
    return out


def citation_precision(rows: list[tuple[dict, dict]]) -> float | None:
    """Among replies that cite and whose prompt has a gold passage: share whose citations all point at gold ones."""
    cited = [(it, [int(x) - 1 for x in re.findall(r"\[(\d+)\]", p["reply"])]) for it, p in rows if it["gold"]]
    cited = [(it, c) for it, c in cited if c]
    return round(sum(all(x in it["gold"] for x in c) for it, c in cited) / len(cited), 3) if cited else None


def score(items: list[dict], preds: list[dict]) -> dict:
    from agent.training.data import ABSTAIN_RE

    by_id = {p["id"]: p for p in preds}
    rows = [(it, by_id[it["id"]]) for it in items if it["id"] in by_id]
    res: dict = {}
    for kind in ("heldout", "kb"):
        sel = [(it, p) for it, p in rows if it["kind"] == kind and it["answerable"]]
        if not sel:
            continue
        res[f"{kind}_n"] = len(sel)
        res[f"{kind}_token_f1"] = round(100 * sum(token_f1(p["reply"], it["reference"]) for it, p in sel) / len(sel), 2)
        res[f"{kind}_rouge_l"] = round(100 * sum(rouge_l(p["reply"], it["reference"]) for it, p in sel) / len(sel), 2)
        res[f"{kind}_cites"] = round(sum(bool(re.search(r"\[\d+\]", p["reply"])) for _, p in sel) / len(sel), 3)
        res[f"{kind}_citation_precision"] = citation_precision(sel)
        res[f"{kind}_reply_tokens"] = round(sum(p["n_tokens"] for _, p in sel) / len(sel), 1)
    kb = [(it, p) for it, p in rows if it["kind"] == "kb" and it["answerable"] and it["facts"]]
    if kb:
        res["kb_fact_accuracy"] = round(sum(all(has_fact(p["reply"], f) for f in it["facts"]) for it, p in kb)
                                        / len(kb), 3)
    abst = [(not it["answerable"], bool(ABSTAIN_RE.search(p["reply"]))) for it, p in rows]
    tp = sum(u and a for u, a in abst)
    n_abst, n_unans = sum(a for _, a in abst), sum(u for u, _ in abst)
    n_ans = len(abst) - n_unans
    res["abstain_n_unanswerable"] = n_unans
    res["abstain_precision"] = round(tp / n_abst, 3) if n_abst else None
    res["abstain_recall"] = round(tp / n_unans, 3) if n_unans else None
    res["false_abstention_rate"] = round(sum(a and not u for u, a in abst) / n_ans, 3) if n_ans else None
    return res


def write_report(items: list[dict], names: list[str], args) -> dict:
    preds: dict[str, list[dict]] = {}
    for name in names + ["qwen"]:
        pred_path = RESULTS / f"lora_eval_preds_{name}.jsonl"
        if pred_path.is_file():
            preds[name] = [json.loads(x) for x in pred_path.read_text().splitlines() if x.strip()]
    main = {n: ps for n, ps in preds.items() if n in names}
    # every model is scored on the prompts that all of them answered (an interrupted run leaves fewer)
    common = set.intersection(*({p["id"] for p in ps} for ps in main.values())) if main else set()
    scored = [it for it in items if it["id"] in common]
    report = {"command": args.command, "settings": {"max_new_tokens": args.max_new_tokens, "k": 3,
                                                  "decoding": "greedy", "batch": args.batch},
              "counts": dict(Counter(it["kind"] for it in scored)),
              "counts_planned": dict(Counter(it["kind"] for it in items)), "models": {}}
    for name, ps in main.items():
        meta_path = RESULTS / f"lora_eval_meta_{name}.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        report["models"][name] = {**meta, **score(scored, ps)}
    if "qwen" in preds and main:  # the reference answered a subset: every model re-scored on that subset
        sub = common & {p["id"] for p in preds["qwen"]}
        sub_items = [it for it in items if it["id"] in sub]
        meta_path = RESULTS / "lora_eval_meta_qwen.json"
        report["reference"] = {"counts": dict(Counter(it["kind"] for it in sub_items)), "models": {
            name: {**(json.loads(meta_path.read_text()) if name == "qwen" and meta_path.is_file() else
                      {k: report["models"][name].get(k) for k in ("decode_tokens_per_s", "first_token_s", "model")}),
                   **score(sub_items, ps)} for name, ps in {**main, "qwen": preds["qwen"]}.items()}}
    (RESULTS / "lora_eval.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "lora_eval.md").write_text(markdown(report))
    return report


ROWS = [("heldout_token_f1", "held-out DSTC token-F1"), ("heldout_rouge_l", "held-out DSTC ROUGE-L"),
        ("kb_token_f1", "kb token-F1"), ("kb_rouge_l", "kb ROUGE-L"), ("kb_fact_accuracy", "kb exact-fact accuracy"),
        ("abstain_precision", "abstention precision"), ("abstain_recall", "abstention recall"),
        ("false_abstention_rate", "false abstentions (answerable)"), ("heldout_cites", "replies citing [n] (held-out)"),
        ("kb_cites", "replies citing [n] (kb)"),
        ("heldout_citation_precision", "citations all on a gold passage (held-out, citing replies)"),
        ("kb_citation_precision", "citations all on a gold passage (kb, citing replies)"),
        ("heldout_reply_tokens", "reply tokens (held-out, mean)"),
        ("decode_tokens_per_s", "decode tokens/s (streamed)"), ("first_token_s", "first token s (prefill)")]


def markdown(report: dict) -> str:
    names = list(report["models"])
    lines = ["# LoRA evaluation: base vs tuned", "", f"Command: `{report['command']}`", "",
             (f"Prompts: {report['counts']} (greedy, max_new_tokens {report['settings']['max_new_tokens']}, k=3 "
             "passages, prompts built with agent.generation.prompt.build_prompt)."), "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in ROWS:
        vals = [report["models"][n].get(key) for n in names]
        lines.append(f"| {label} | " + " | ".join("—" if v is None else str(v) for v in vals) + " |")
    lines += ["", "Adapters: " + ", ".join(f"{n}: {report['models'][n].get('adapter')} "
                                           f"({report['models'][n].get('adapter_hash')})" for n in names), ""]
    g = [(n, report["models"][n]) for n in names if report["models"][n].get("grounded_content_share") is not None]
    if g:
        lines += ["Grounding (exact Shapley attribution, k=3, on the first answerable held-out replies): "
                  + "; ".join(f"{n}: {m['grounded_content_share']} of content tokens grounded "
                              f"({m['grounding_replies']} replies)" for n, m in g), ""]
    ref = report.get("reference")
    if ref:
        rn = list(ref["models"])
        lines += [f"## Reference: the untuned qwen2.5-0.5b preset, on the prompts it answered {ref['counts']}", "",
                  "| metric | " + " | ".join(rn) + " |", "|---|" + "---|" * len(rn)]
        for key, label in ROWS:
            vals = [ref["models"][n].get(key) for n in rn]
            lines.append(f"| {label} | " + " | ".join("—" if v is None else str(v) for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global RESULTS
    import sys

    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="base,tuned,qwen", help="comma list of base,tuned,qwen")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--adapter", default="smollm2-135m-support", help="the tuned adapter (name or directory)")
    p.add_argument("--n-heldout", type=int, default=150)
    p.add_argument("--n-unanswerable", type=int, default=50)
    p.add_argument("--n-kb", type=int, default=None, help="a sample of N kb questions (default: all)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--max-new-tokens", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--speed-prompts", type=int, default=6)
    p.add_argument("--reuse", action="store_true", help="keep existing per-model predictions")
    p.add_argument("--speed-rounds", type=int, default=3,
                   help="side-by-side decode-speed rounds over all models after generating (0: keep per-model speeds)")
    p.add_argument("--reference-model", default="qwen2.5-0.5b", help="the untuned bigger reference (model 'qwen')")
    p.add_argument("--reference-sample", default="",
                   help="N,N,N: only the first N held-out, unanswerable and kb prompts for the reference (it decodes "
                        "~3x slower; the full set takes ~25 min on one core); default: all prompts")
    p.add_argument("--grounding-n", type=int, default=30,
                   help="answerable held-out replies per model scored by exact attribution (0: skip)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    args.command = "python -m bench.lora_eval " + " ".join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    RESULTS = args.results
    RESULTS.mkdir(parents=True, exist_ok=True)
    items = eval_items(args.n_heldout, args.n_unanswerable, args.n_kb)
    args.items_digest = items_digest(items)
    # the prompts hold DSTC text, which stays out of the project tree (shared/data/README.md): cache only
    cache = Path("~/.cache/moments/train").expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "lora_eval_items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not args.report_only:
        for name in names:
            meta_path = RESULTS / f"lora_eval_meta_{name}.json"
            if args.reuse and (RESULTS / f"lora_eval_preds_{name}.jsonl").is_file():
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
                stored = meta.get("items_digest")
                same_adapter = name != "tuned" or meta.get("adapter_hash") == _adapter_hash(args.adapter)
                if stored in (None, args.items_digest) and same_adapter:
                    continue
                log.warning("%s: stored predictions were made on other prompts or another adapter; re-running", name)
            adapter = "none" if name in ("base", "qwen") else args.adapter
            todo = reference_subset(items, args.reference_sample) if name == "qwen" and args.reference_sample \
                else items
            log.info("evaluating %s (adapter %s) on %d prompts", name, adapter, len(todo))
            run_model(name, adapter, todo, args)
    if args.speed_rounds:
        for name, speed in speed_side_by_side(names, items, args, args.speed_rounds).items():
            meta_path = RESULTS / f"lora_eval_meta_{name}.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            meta_path.write_text(json.dumps({**meta, **speed}, indent=1))
    report = write_report(items, ["base", "tuned"], args)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
