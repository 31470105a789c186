"""Training examples over the project's own knowledge base (``data/kb``), train side only.

For every chunk of the project's index, questions are written from its article title and section heading (never
the ``data/eval`` questions) and answered by the first sentences of the section with a citation; plus gold-removed
variants that must abstain, and a few closings.
"""

from __future__ import annotations

import random
import re

from agent.training.data import (
    _CLOSING_REPLIES,
    _SENT_END,
    ABSTAIN_REPLIES,
    DataConfig,
    Example,
    _pick,
    _words_cut,
    add_citation,
)
from retrieval.types import Passage

_QUESTION_TEMPLATES = (
    "Can you tell me about {h}?",
    "I have a question about {t}: {h}?",
    "What's your policy on {h}?",
    "How does {h} work at Northwind?",
)


def _kb_answer(passage: Passage, max_words: int = 45) -> tuple[str, str]:
    """(heading, answer) from a chunk: its first two body sentences or list/table rows."""
    lines = [ln.strip() for ln in passage.text.splitlines() if ln.strip()]
    heading = lines[0] if len(lines) > 1 else passage.title
    items: list[str] = []
    for ln in lines[1:] if len(lines) > 1 else lines:
        if re.fullmatch(r"\|?[\s:\-|]+\|?", ln):
            continue
        if ln.startswith("|"):
            cells = [c.strip() for c in ln.strip("|").split("|")]
            items.append(": ".join(cells) + ".")
        else:
            items.extend(s.strip() for s in _SENT_END.split(re.sub(r"^([-*]|\d+\.)\s+", "", ln)) if s.strip())
        if len(items) >= 3:
            break
    if items and items[0].endswith(":."):
        items = items[1:]  # a table header row
    answer = " ".join(items[:2]).replace("**", "")
    answer = re.sub(r"([^.!?])$", r"\1.", answer)
    return heading, _words_cut(answer, max_words)


def _kb_question(title: str, heading: str, i: int) -> str:
    if heading.endswith("?"):
        return heading
    h = " ".join(w if w.isupper() else w.lower() for w in heading.split())
    return _QUESTION_TEMPLATES[i % len(_QUESTION_TEMPLATES)].format(h=h, t=title.lower())


def build_kb(cfg: DataConfig, rng: random.Random, index) -> list[Example]:
    """Questions written from data/kb section headings, answered from the section text (train side only)."""
    out: list[Example] = []
    for n, p in enumerate(index.passages):
        heading, answer = _kb_answer(p)
        if len(answer.split()) < 4:
            continue
        for variant in range(2):
            question = _kb_question(p.title, heading, n + variant)
            hits = [h.passage for h in index.search(question, cfg.k + 6)]
            others = [q for q in hits if q.id != p.id]
            ps = [p] + others[: cfg.k - 1]
            rng.shuffle(ps)
            pos = ps.index(p)
            out.append(Example(source="kb", entity=f"kb:{p.doc_id}", question=question,
                               answer=add_citation(answer, [pos]), passages=ps, gold=[pos], reference=answer))
            if variant == 0 and rng.random() < cfg.unanswerable_rate * 1.5:
                alt = [q for q in hits if q.doc_id != p.doc_id][: cfg.k]
                if len(alt) == cfg.k:
                    reply = _pick(ABSTAIN_REPLIES, question, rng.randrange(len(ABSTAIN_REPLIES)))
                    out.append(Example(source="kb-unanswerable", entity=f"kb:{p.doc_id}", question=question,
                                       answer=reply, passages=alt, answerable=False, reference=reply))
    for q in ("Thanks, that's all I needed!", "Great, thank you so much.", "ok bye", "Thanks for the help"):
        hits = [h.passage for h in index.search(q, cfg.k)]
        for _ in range(3):
            reply = _CLOSING_REPLIES[rng.randrange(len(_CLOSING_REPLIES))]
            out.append(Example(source="kb-chitchat", entity="kb:none", question=q, answer=reply, passages=hits,
                               reference=reply))
    return out
