"""Correctness-first training examples ("facts" recipe): the target states the asked fact, copied from its passage.

Why a second builder
--------------------
The first recipe (:mod:`agent.training.data`) trained on DSTC *human* responses ("Yes, they do. Anything else?") and
on Bitext replies, and scored token-F1. The model learned the style and not the job: on ``data/kb`` it stated the
right fact in fewer than 1 reply in 5. Here every answerable target is the sentence(s) of a passage that answer
the question, copied verbatim and cited ``[n]``, so the skill taught is *find the sentence, copy it, cite it*.
It transfers to a help centre the model never saw, which is how users run Moments.

Contract
--------
* Source: the DSTC9/DSTC11 FAQ snippets (``knowledge.json``: question = title, answer = body), deduplicated per
  entity. Every example draws its question from one FAQ and puts that FAQ's answer inside a *packed passage*:
  3-5 answers of the same entity written as one help-centre section (a prose paragraph or a bullet list under a
  heading; the FAQ question titles are never shown, so the question must be matched to the answer's meaning,
  not echoed). The other ``k-1`` passages are packs of the same entity's other answers and packs of other
  entities of the same domain holding a same-topic answer (hard negatives: the entity name decides).
* Target: the FAQ answer verbatim, with the gold passage's ``[n]`` before its first sentence end.
  Gold position is drawn with ``gold_weights`` (mostly ``[1]``, as retrieval ranks it).
* Questions: the FAQ title, sometimes lower-cased, without "?", or with a short lead-in ("hi, ", …); a question
  that does not name its entity gets either only that entity's passages or an earlier exchange naming it.
* Unanswerable (``unanswerable_rate``): the same prompt with the answer (and near-duplicate FAQs) removed;
  cross-domain (``crossdomain_rate``): the question with passages retrieved from ``data/kb`` (a store), and store
  questions from Bitext with hotel/restaurant passages. Target: one of :data:`agent.training.data.ABSTAIN_REPLIES`.
* A few closings ("thanks, bye" → a short closing), no Bitext filler.
* **Split by entity** (:func:`agent.training.data.is_held_out`): held-out entities give the ``eval`` side (a dev set
  for choosing checkpoints and recipes); ``data/kb`` questions (``data/eval``) and every evaluation-only
  knowledge base under ``data/eval/`` are never read.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.generation.prompt import Exchange
from agent.training.data import (
    _CLOSING_REPLIES,
    ABSTAIN_REPLIES,
    Dataset,
    Example,
    _pick,
    add_citation,
    is_held_out,
)
from retrieval.types import Passage

log = logging.getLogger(__name__)

_STOP = set("a an the is are was were do does did can could i you we they it of to in on at for with and or my your "  # noqa: SIM905
            "there this that be have has what when where how which who any me our us will would should".split())
#: Words too generic to decide that two FAQs are about the same topic.
_GENERIC = set("available offer offers provide provided allowed allow service services free there here hotel "  # noqa: SIM905
               "restaurant guest guests place property location stay room rooms get need".split())
_HEADINGS = ("Good to know", "Policies", "Facilities", "Details", "Before you visit", "Services", "Practical information",
             "Frequently asked", "At a glance", "Rules and amenities")
_LEADINS = ("hi, ", "hello, ", "quick question: ", "hey, ", "one more thing: ", "sorry, ", "")
_CONTEXTS = ("I'm visiting next week with my family. ", "We're booked in for Friday. ", "My partner asked me to check: ",
             "Before I book, ", "I was told different things, so ", "Planning a trip there. ", "just wondering, ",
             "I have a reservation tonight. ", "Quick one before we arrive: ", "I couldn't find this anywhere: ")
_CLOSINGS = ("Thanks, that's all I needed!", "Great, thank you so much.", "ok bye", "Thanks for the help",
             "perfect, thanks", "No, that's everything. Bye!", "that's all, cheers", "thank you!")


@dataclass(frozen=True)
class FactConfig:
    """What goes into the mix (defaults: the shipped adapter's recipe)."""

    shared_data: Path
    k: int = 4                        # passages per prompt (the agent's top_k)
    eval_percent: int = 20            # share of DSTC entities held out (dev side)
    pack_min: int = 3                 # FAQ answers per packed passage
    pack_max: int = 5
    gold_weights: tuple[float, ...] = (0.55, 0.2, 0.15, 0.1)  # P(gold at [1]..[k])
    unanswerable_rate: float = 0.08   # gold-removed variants per answerable example. `moments train` passes its own
                                      # (TrainConfig: 0.04 since v12; v11 trained with 0.12 and gave 31-37% false hand-overs).
                                      # This default fixes bench/answers.py's held-out DSTC prompts: keep it.
    crossdomain_rate: float = 0.05    # question with passages of another business (store <-> hotel)
    closings: int = 10                # v10 had 40: its mid-run checkpoint answered real questions "My pleasure."
    dialogue_turns: bool = True       # also the real user turns of DSTC9/DSTC11 dialogues whose gold is an FAQ
    context_rate: float = 0.25        # FAQ-title questions given a customer's lead-in sentence
    seed: int = 0


@dataclass(frozen=True)
class Faq:
    entity: str
    name: str
    question: str
    answer: str


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def _topic(faq: Faq) -> set[str]:
    """Topic words of an FAQ's question: content words minus the entity's name and generic words."""
    return _words(faq.question) - _words(faq.name) - _GENERIC


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def load_faqs(shared: Path) -> dict[str, list[Faq]]:
    """DSTC9 + DSTC11 FAQ snippets by entity (``domain:entity_id``), deduplicated by question text."""
    by_entity: dict[str, dict[str, Faq]] = defaultdict(dict)
    for corpus, qk, ak, docs in (("dstc11", "question", "answer", "faqs"), ("dstc9", "title", "body", "docs")):
        data = json.loads((shared / corpus / "knowledge.json").read_text(encoding="utf-8"))
        for domain, ents in data.items():
            for eid, ent in ents.items():
                key = f"{domain}:{eid}"
                name = str(ent.get("name") or domain).title()
                for doc in ent.get(docs, {}).values():
                    q, a = str(doc.get(qk, "")).strip(), str(doc.get(ak, "")).strip()
                    if q and a and len(a.split()) >= 3:
                        by_entity[key].setdefault(q.lower(), Faq(key, name, q, _sentence(a)))
    return {e: list(v.values()) for e, v in sorted(by_entity.items()) if len(v) >= 4}


def render_pack(name: str, answers: Sequence[str], rng: random.Random, idx: int) -> Passage:
    """Several answers of one entity written as one help-centre section (prose or bullets)."""
    heading = _HEADINGS[rng.randrange(len(_HEADINGS))]
    if rng.random() < 0.45:
        body = "\n".join(f"- {a}" for a in answers)
    else:
        body = " ".join(answers)
    return Passage(id=f"{name}#{idx}", doc_id=name, title=name, text=f"{heading}\n{body}")


def _question(faq: Faq, rng: random.Random, context_rate: float = 0.0) -> str:
    q = faq.question
    r = rng.random()
    if r < 0.3:
        q = q.rstrip("?").lower()
    elif r < 0.4:
        q = q.lower()
    lead = _LEADINS[rng.randrange(len(_LEADINS))] if rng.random() < 0.2 else ""
    if rng.random() < context_rate:
        lead = _CONTEXTS[rng.randrange(len(_CONTEXTS))] + lead
    return (lead + q) if lead else q


def _names_entity(question: str, name: str) -> bool:
    return name.lower() in question.lower()


class _Builder:
    def __init__(self, cfg: FactConfig, faqs: dict[str, list[Faq]], rng: random.Random) -> None:
        self.cfg, self.faqs, self.rng = cfg, faqs, rng
        self.by_domain: dict[str, list[str]] = defaultdict(list)
        for e in faqs:
            self.by_domain[e.split(":")[0]].append(e)

    def _pack(self, items: list[str], name: str, tag: int) -> Passage:
        return render_pack(name, items, self.rng, tag)

    def _same_entity_packs(self, pool: list[Faq], n: int, name: str) -> list[Passage]:
        pool = pool[:]
        self.rng.shuffle(pool)
        out = []
        while pool and len(out) < n:
            size = self.rng.randint(self.cfg.pack_min, self.cfg.pack_max)
            out.append(self._pack([f.answer for f in pool[:size]], name, len(out) + 10))
            pool = pool[size:]
        return out

    def _other_entity_pack(self, faq: Faq) -> Passage | None:
        others = [e for e in self.by_domain[faq.entity.split(":")[0]] if e != faq.entity]
        if not others:
            return None
        ent = others[self.rng.randrange(len(others))]
        pool = self.faqs[ent]
        qw = _words(faq.question)
        hard = max(pool, key=lambda f: len(qw & _words(f.question)))  # the same topic at another entity
        rest = [f for f in pool if f is not hard]
        self.rng.shuffle(rest)
        items = [hard] + rest[: self.rng.randint(self.cfg.pack_min, self.cfg.pack_max) - 1]
        self.rng.shuffle(items)
        return self._pack([f.answer for f in items], hard.name, 20)

    def example(self, faq: Faq, question: str | None = None, history: list[Exchange] | None = None,
                source: str = "facts") -> list[Example]:
        """The answerable example for ``faq`` (its title as the question unless ``question`` is given, e.g. a real
        dialogue turn with its ``history``) and, at ``unanswerable_rate``, its gold-removed variant."""
        cfg, rng = self.cfg, self.rng
        pool = [f for f in self.faqs[faq.entity] if f is not faq]
        topic = _topic(faq)
        # same-topic FAQs of this entity (DSTC repeats and even contradicts itself: "Parking is free." beside
        # "There is no parking available."): never shown beside the answer, nor in its unanswerable variant
        near = [f for f in pool if topic & (_topic(f) | _words(f.answer))]
        pool_far = [f for f in pool if f not in near]
        rng.shuffle(pool_far)
        size = rng.randint(cfg.pack_min, cfg.pack_max)
        mates = pool_far[: size - 1]
        items = mates + [faq]
        rng.shuffle(items)
        gold = self._pack([f.answer for f in items], faq.name, 0)
        named_in_history = bool(history) and any(_names_entity(x.user + x.assistant, faq.name) for x in history)
        question = question or _question(faq, rng, cfg.context_rate)
        history = list(history or [])
        named = _names_entity(question, faq.name) or named_in_history
        if not named and not history and rng.random() < 0.35:
            history = [Exchange(f"I have a question about {faq.name}.", f"Of course, what would you like to know "
                                                                        f"about {faq.name}?")]
            named = True
        rest = pool_far[size - 1:]
        distract = self._same_entity_packs(rest, cfg.k - 1, faq.name)
        if named:
            for _ in range(rng.randint(0, 2)):
                other = self._other_entity_pack(faq)
                if other is not None:
                    distract.insert(rng.randrange(len(distract) + 1), other)
        distract = distract[: cfg.k - 1]
        if len(distract) < cfg.k - 1:
            return []
        pos = rng.choices(range(cfg.k), weights=cfg.gold_weights[: cfg.k])[0]
        passages = distract[:pos] + [gold] + distract[pos:]
        out = [Example(source=source, entity=faq.entity, question=question,
                       answer=add_citation(faq.answer, [pos]), passages=passages, history=history, gold=[pos],
                       reference=faq.answer)]
        if rng.random() < cfg.unanswerable_rate:
            removed = [f for f in items if f is not faq]
            if removed:
                alt = [self._pack([f.answer for f in removed], faq.name, 0)] + distract
                rng.shuffle(alt)
                reply = _pick(ABSTAIN_REPLIES, question, rng.randrange(len(ABSTAIN_REPLIES)))
                out.append(Example(source="facts-unanswerable", entity=faq.entity, question=question, answer=reply,
                                   passages=alt, history=history, answerable=False, reference=reply))
        return out


def _dialogue_turns(shared: Path, faqs: dict[str, list[Faq]]):
    """(entity, faq, question, history) for real dialogue turns whose gold knowledge is one FAQ of one entity
    (DSTC9 validation, DSTC11 turns with an FAQ among their gold snippets)."""
    from agent.training.dstc import _history

    by_q = {(e, f.question.lower()): f for e, fs in faqs.items() for f in fs}
    names = {e: fs[0].name.lower() for e, fs in faqs.items()}
    for corpus, logs, labels, qk, docs in (("dstc9", "val_logs.json", "val_labels.json", "title", "docs"),
                                           ("dstc11", "logs.json", "labels.json", "question", "faqs")):
        lg = json.loads((shared / corpus / logs).read_text(encoding="utf-8"))
        lb = json.loads((shared / corpus / labels).read_text(encoding="utf-8"))
        know = json.loads((shared / corpus / "knowledge.json").read_text(encoding="utf-8"))
        for turns, label in zip(lg, lb):
            gold = [g for g in label.get("knowledge", []) if corpus == "dstc9" or g.get("doc_type") == "faq"]
            if not label.get("target") or len(gold) != 1:
                continue
            g = gold[0]
            entity = f"{g['domain']}:{g['entity_id']}"
            doc = know.get(g["domain"], {}).get(str(g["entity_id"]), {}).get(docs, {}).get(str(g["doc_id"]))
            faq = by_q.get((entity, str(doc.get(qk, "")).strip().lower())) if doc else None
            if faq is None:
                continue
            history, question = _history(turns, 1)
            if any(n in question.lower() for e, n in names.items() if e != entity and n not in faq.name.lower()):
                continue  # the turn names another entity than its label (DSTC noise)
            yield entity, faq, question, history


def _bitext_questions(shared: Path, rng: random.Random, n: int) -> list[str]:
    path = shared / "bitext" / "customer_support.csv"
    if not path.is_file() or n <= 0:
        return []
    with path.open(encoding="utf-8", newline="") as f:
        rows = [re.sub(r"\{\{[^}]*\}\}", "my order", r["instruction"]).strip() for r in csv.DictReader(f)]
    rng.shuffle(rows)
    return rows[:n]


def build_facts(cfg: FactConfig, kb_index=None) -> Dataset:
    """The facts-recipe dataset: ``train`` and held-out-entity ``eval`` (see module docstring)."""
    rng = random.Random(cfg.seed)
    faqs = load_faqs(cfg.shared_data)
    builder = _Builder(cfg, faqs, rng)
    train: list[Example] = []
    held: list[Example] = []
    for entity, items in faqs.items():
        side = held if is_held_out(entity, cfg.eval_percent) else train
        for faq in items:
            side.extend(builder.example(faq))
    if cfg.dialogue_turns:
        for entity, faq, question, history in _dialogue_turns(cfg.shared_data, faqs):
            side = held if is_held_out(entity, cfg.eval_percent) else train
            side.extend(e for e in builder.example(faq, question, history, "facts-dialogue") if e.answerable)
    n_train = sum(1 for e in train if e.answerable)
    # cross-domain abstentions: hotel/restaurant questions over store passages, store questions over hotel packs
    if kb_index is not None and cfg.crossdomain_rate > 0:
        picks = [e for e in train if e.answerable]
        rng.shuffle(picks)
        for ex in picks[: int(cfg.crossdomain_rate * n_train / 2)]:
            ps = [h.passage for h in kb_index.search(ex.question, cfg.k)]
            reply = _pick(ABSTAIN_REPLIES, ex.question, 3)
            train.append(Example(source="facts-crossdomain", entity="none:kb", question=ex.question, answer=reply,
                                 passages=ps, answerable=False, reference=reply))
    train_entities = [e for e in faqs if not is_held_out(e, cfg.eval_percent)]
    for q in _bitext_questions(cfg.shared_data, rng, int(cfg.crossdomain_rate * n_train / 2)):
        ent = train_entities[rng.randrange(len(train_entities))]
        ps = builder._same_entity_packs(faqs[ent], cfg.k, faqs[ent][0].name)
        if len(ps) == cfg.k:
            reply = _pick(ABSTAIN_REPLIES, q, 5)
            train.append(Example(source="facts-crossdomain", entity="none:bitext", question=q, answer=reply,
                                 passages=ps, answerable=False, reference=reply))
    for i in range(cfg.closings):
        ent = train_entities[rng.randrange(len(train_entities))]
        ps = builder._same_entity_packs(faqs[ent], cfg.k, faqs[ent][0].name)
        q = _CLOSINGS[i % len(_CLOSINGS)]
        reply = _CLOSING_REPLIES[rng.randrange(len(_CLOSING_REPLIES))]
        train.append(Example(source="facts-closing", entity="none:closing", question=q, answer=reply, passages=ps,
                             reference=reply))
    return Dataset.of(train, held, cfg.seed)
