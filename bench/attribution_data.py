"""Turns for the attribution benchmark: DSTC9 knowledge-seeking turns and questions on the project's KB.

Contract
--------
:func:`dstc9_turns` / :func:`kb_turns` yield :class:`BenchTurn` values (question, history, the ``k`` passages in
prompt order with retrieval scores, and the index of the gold passage when it is among them).

Passages come from the ``retrieval`` package when it can search (an in-memory :class:`KnowledgeIndex` over the gold
entity's snippets plus the snippets of two other entities of the same domain, searched with the conversation, for
DSTC9; the persisted KB index for KB questions). When retrieval is not usable, the fallback is the gold snippet plus
``k - 1`` distractor snippets of the same entity (other articles, for the KB) in a seeded random order; each turn
records which source was used (``passage_source``).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.generation.prompt import Exchange
from retrieval.types import Passage

log = logging.getLogger(__name__)


@dataclass
class BenchTurn:
    source: str  # "dstc9" or "kb"
    id: str
    question: str
    history: list[Exchange]
    passages: list[Passage]
    scores: list[float | None]
    gold: int | None  # index of the gold passage among ``passages``
    gold_doc: str
    passage_source: str  # "retrieval" or "gold+distractors"
    extra: dict = field(default_factory=dict)


def _dstc9_passage(domain: str, entity: str, name: str | None, doc_id: str, doc: dict) -> Passage:
    pid = f"{domain}:{entity}:{doc_id}"
    title = (name or domain).title() + " FAQ"
    return Passage(id=pid, doc_id=pid, title=title, text=f"{doc['title'].strip()}\n{doc['body'].strip()}")


def _history(log_turns: list[dict], max_exchanges: int) -> tuple[str, list[Exchange]]:
    *earlier, last = log_turns
    exchanges: list[Exchange] = []
    user = None
    for item in earlier:
        if item["speaker"] == "U":
            user = item["text"] if user is None else f"{user} {item['text']}"
        elif user is not None:
            exchanges.append(Exchange(user=user, assistant=item["text"]))
            user = None
    return last["text"], exchanges[-max_exchanges:] if max_exchanges else []


class _Searcher:
    """Lazily loaded retrieval; ``None`` from :meth:`search` when retrieval cannot be used."""

    def __init__(self) -> None:
        self.model = None
        self.failed: str | None = None

    def index(self, passages: list[Passage]):
        if self.failed:
            return None
        try:
            from retrieval.embedder import load_embedder
            from retrieval.index import KnowledgeIndex

            if self.model is None:
                self.model = load_embedder()
            return KnowledgeIndex.from_passages(passages, self.model)
        except Exception as e:  # noqa: BLE001 - retrieval is optional here; say why and fall back
            self.failed = f"{type(e).__name__}: {e}"
            log.warning("retrieval not usable (%s); using gold + distractor passages", self.failed)
            return None


def dstc9_turns(data_dir: Path, n: int, ks: list[int], *, seed: int = 0, history: int = 3,
                use_retrieval: bool = True) -> Iterator[BenchTurn]:
    """The first ``n`` knowledge-seeking validation turns; turn ``i`` gets ``k = ks[i % len(ks)]`` passages."""
    logs = json.loads((data_dir / "val_logs.json").read_text())
    labels = json.loads((data_dir / "val_labels.json").read_text())
    knowledge = json.loads((data_dir / "knowledge.json").read_text())
    rng = random.Random(seed)
    searcher = _Searcher() if use_retrieval else None
    picked = [i for i, lab in enumerate(labels) if lab.get("target")][:n]
    for count, i in enumerate(picked):
        k = ks[count % len(ks)]
        gold_ref = labels[i]["knowledge"][0]
        domain, entity, doc_id = gold_ref["domain"], str(gold_ref["entity_id"]), str(gold_ref["doc_id"])
        ent = knowledge[domain][entity]
        own = [_dstc9_passage(domain, entity, ent.get("name"), d, doc) for d, doc in ent["docs"].items()]
        gold_id = f"{domain}:{entity}:{doc_id}"
        question, exchanges = _history(logs[i], history)
        turn = None
        if searcher is not None:
            others = [e for e in knowledge[domain] if e != entity] or []
            pool = list(own)
            for other in rng.sample(others, min(2, len(others))):
                o = knowledge[domain][other]
                pool += [_dstc9_passage(domain, other, o.get("name"), d, doc) for d, doc in o["docs"].items()]
            if len(others) == 0:  # train / taxi: one pseudo-entity per domain; add the other one
                alt = "taxi" if domain == "train" else "train"
                pool += [_dstc9_passage(alt, "*", None, d, doc) for d, doc in knowledge[alt]["*"]["docs"].items()]
            index = searcher.index(pool)
            if index is not None:
                users = [ex.user for ex in exchanges]
                try:
                    hits = index.search_conversation(question, users, k)
                except Exception:  # noqa: BLE001 - older retrieval without conversation search
                    hits = index.search(question, k)
                ps = [h.passage for h in hits]
                gold = next((j for j, p in enumerate(ps) if p.id == gold_id), None)
                turn = BenchTurn("dstc9", f"dstc9-{i}", question, exchanges, ps, [h.score for h in hits], gold,
                                 gold_id, "retrieval")
        if turn is None:
            gold_p = next(p for p in own if p.id == gold_id)
            distractors = rng.sample([p for p in own if p.id != gold_id], min(k - 1, len(own) - 1))
            ps = [gold_p] + distractors
            rng.shuffle(ps)
            turn = BenchTurn("dstc9", f"dstc9-{i}", question, exchanges, ps, [None] * len(ps),
                             ps.index(gold_p), gold_id, "gold+distractors")
        turn.extra["reference"] = labels[i].get("response")
        yield turn


def _kb_sections(path: Path) -> tuple[str, list[str]]:
    text = path.read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ").strip()
    return title, [s.strip() for s in re.split(r"\n## ", text)[1:]]


def kb_turns(kb_dir: Path, questions: Path, n: int, ks: list[int], *, seed: int = 0,
             use_retrieval: bool = True) -> Iterator[BenchTurn]:
    """Up to ``n`` answerable KB questions (spread over the file), with passages from the KB index."""
    rows = [json.loads(line) for line in questions.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("answerable")]
    step = max(1, len(rows) // max(1, n))
    rows = rows[::step][:n]
    rng = random.Random(seed)
    index = None
    if use_retrieval:
        try:
            from agent.settings import Settings
            from retrieval.index import KnowledgeIndex, index_dir_for

            s = Settings()
            index = KnowledgeIndex.load_or_build(kb_dir, index_dir_for(s.index_dir, kb_dir), s.embedder,
                                                 s.chunk_tokens, progress=False)
        except Exception as e:  # noqa: BLE001 - optional; fall back
            log.warning("KB retrieval not usable (%s: %s); using gold + distractor sections", type(e).__name__, e)
    articles = sorted(p.stem for p in kb_dir.glob("*.md"))
    for count, r in enumerate(rows):
        k = ks[count % len(ks)]
        if index is not None:
            hits = index.search(r["question"], k)
            ps = [h.passage for h in hits]
            gold = next((j for j, p in enumerate(ps) if p.doc_id == r["article"]), None)
            yield BenchTurn("kb", r["id"], r["question"], [], ps, [h.score for h in hits], gold, r["article"],
                            "retrieval", {"reference": r.get("answer")})
            continue
        title, sections = _kb_sections(kb_dir / f"{r['article']}.md")
        fact = (r.get("facts") or [""])[0].lower()
        pick = next((i for i, s in enumerate(sections) if fact and fact in s.lower()), 0)
        gold_p = Passage(f"{r['article']}#{pick}", r["article"], title, sections[pick][:600])
        ps = [gold_p]
        for other in rng.sample([a for a in articles if a != r["article"]], k - 1):
            t, secs = _kb_sections(kb_dir / f"{other}.md")
            ps.append(Passage(f"{other}#0", other, t, secs[0][:600]))
        rng.shuffle(ps)
        yield BenchTurn("kb", r["id"], r["question"], [], ps, [None] * k, ps.index(gold_p), r["article"],
                        "gold+distractors", {"reference": r.get("answer")})
