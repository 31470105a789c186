"""Training-side turns for fitting and benchmarking the learned attention estimator (never data/eval).

Contract
--------
:func:`training_turns` yields :class:`EstTurn` values round-robin from three training-side sources:

* ``dstc11`` — knowledge-seeking turns of ``dstc11/logs.json`` whose gold snippets lie in one entity that is on the
  *training* side of the project's entity split (:func:`agent.training.data.is_held_out` false); the dialogue's
  earlier exchanges are the history. Passage pool: the entity's FAQs and reviews plus the FAQs of another entity of
  the same domain, searched by the agent's own retrieval.
* ``dstc9`` — FAQ titles of ``dstc9/knowledge.json`` (training-side entities) as questions (as the "facts" recipe
  uses them), over that entity's and another entity's FAQs.
* ``kb`` — questions written from ``data/kb`` section headings (:func:`agent.training.kb._kb_question`, the
  training recipe's own), over the agent's persisted KB index.

Every turn carries ``split``: ``bench`` for entities whose salted hash falls below ``bench_percent`` (so the
bench's turns never share an entity, or a KB article, with the turns the weights are fitted on), else ``fit``.
The order is fixed by ``seed``: the same call yields the same turns, so a run can be resumed by index.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.generation.prompt import Exchange
from agent.training.data import is_held_out
from retrieval.types import Passage


@dataclass
class EstTurn:
    source: str
    entity: str
    question: str
    history: list[Exchange]
    pool: list[Passage] | None  # passages to index for this turn; None: the agent's KB index
    split: str = "fit"
    extra: dict = field(default_factory=dict)


def bench_side(entity: str, percent: int) -> bool:
    """True when ``entity`` belongs to the estimator's held-out bench side (a hash salted apart from the
    training split's)."""
    return int(hashlib.sha256(f"estimator:{entity}".encode()).hexdigest(), 16) % 100 < percent


def _faqs11(ent: dict) -> list[Passage]:
    name = str(ent.get("name") or "").title()
    return [Passage(f"faq:{did}", f"faq:{did}", f"{name} FAQ", f"{f['question']}\n{f['answer']}")
            for did, f in ent.get("faqs", {}).items()]


def _reviews11(ent: dict) -> list[Passage]:
    name = str(ent.get("name") or "").title()
    out = []
    for did, rev in ent.get("reviews", {}).items():
        text = " ".join(s for _, s in sorted(rev.get("sentences", {}).items(), key=lambda kv: int(kv[0])))
        out.append(Passage(f"review:{did}", f"review:{did}", f"{name} review", text))
    return out


def _history(turns: list[dict], n: int) -> tuple[list[Exchange], str]:
    pairs, pending = [], None
    for t in turns[:-1]:
        if t["speaker"] == "U":
            pending = t["text"] if pending is None else f"{pending} {t['text']}"
        elif pending is not None:
            pairs.append(Exchange(pending, t["text"]))
            pending = None
    return pairs[-n:] if n else [], turns[-1]["text"]


def _dstc11(shared: Path, rng: random.Random, history: int) -> list[EstTurn]:
    knowledge = json.loads((shared / "dstc11" / "knowledge.json").read_text())
    logs = json.loads((shared / "dstc11" / "logs.json").read_text())
    labels = json.loads((shared / "dstc11" / "labels.json").read_text())
    out = []
    for turns, lab in zip(logs, labels):
        refs = lab.get("knowledge") or []
        if not lab.get("target") or not refs:
            continue
        keys = {f"{r['domain']}:{r['entity_id']}" for r in refs}
        if len(keys) != 1:
            continue
        (key,) = keys
        if is_held_out(key, 20):
            continue
        domain, eid = key.split(":")
        ent = knowledge[domain][eid]
        others = [e for e in knowledge[domain] if e != eid]
        pool = [replace_id(p, key) for p in _faqs11(ent) + _reviews11(ent)]
        if others:
            other = rng.choice(others)
            pool += [replace_id(p, f"{domain}:{other}") for p in _faqs11(knowledge[domain][other])]
        hist, question = _history(turns, history)
        out.append(EstTurn("dstc11", f"dstc11:{key}", question, hist, pool))
    return out


def replace_id(p: Passage, entity: str) -> Passage:
    return Passage(f"{entity}:{p.id}", f"{entity}:{p.doc_id}", p.title, p.text)


def _dstc9(shared: Path, rng: random.Random) -> list[EstTurn]:
    knowledge = json.loads((shared / "dstc9" / "knowledge.json").read_text())
    out = []
    for domain, ents in knowledge.items():
        for eid, ent in ents.items():
            key = f"{domain}:{eid}"
            if is_held_out(key, 20) or eid == "*":
                continue
            name = str(ent.get("name") or domain).title()
            own = [Passage(f"{key}:{d}", f"{key}:{d}", f"{name} FAQ", f"{doc['title']}\n{doc['body']}")
                   for d, doc in ent["docs"].items()]
            others = [e for e in ents if e not in (eid, "*")]
            pool = list(own)
            if others:
                o = rng.choice(others)
                oname = str(ents[o].get("name") or domain).title()
                pool += [Passage(f"{domain}:{o}:{d}", f"{domain}:{o}:{d}", f"{oname} FAQ",
                                 f"{doc['title']}\n{doc['body']}") for d, doc in ents[o]["docs"].items()]
            for doc in ent["docs"].values():
                out.append(EstTurn("dstc9", f"dstc9:{key}", doc["title"].strip(), [], pool))
    return out


def _kb(kb_index) -> list[EstTurn]:
    from agent.training.kb import _kb_answer, _kb_question

    out = []
    for n, p in enumerate(kb_index.passages):
        heading, _ = _kb_answer(p)
        out.append(EstTurn("kb", f"kb:{p.doc_id}", _kb_question(p.title, heading, n), [], None))
    return out


def training_turns(shared: Path, kb_index, *, seed: int = 0, bench_percent: int = 20,
                   history: int = 2) -> Iterator[EstTurn]:
    """The training-side turns, shuffled per source and interleaved (see module docstring)."""
    rng = random.Random(seed)
    sources = [_dstc11(shared, rng, history), _dstc9(shared, rng), _kb(kb_index)]
    for s in sources:
        rng.shuffle(s)
        for t in s:
            t.split = "bench" if bench_side(t.entity, bench_percent) else "fit"
    longest = max(len(s) for s in sources)
    for i in range(longest):
        for s in sources:
            if i < len(s):
                yield s[i]
