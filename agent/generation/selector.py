"""Answer selection: which sentence of the retrieved passages answers the question, and whether any does.

Why
---
In ``quote`` answer mode (:mod:`agent.generation.quoting`) the reply is one sentence of the help centre, so the
reply is right exactly when that sentence is. Cosine similarity alone (the embedder's view) picks a sentence on the
right *topic* but often not the one holding the asked-for *value*: "how much is the late fee?" is closest to "Late
fees are explained below." rather than to "A $7 late fee is added after 7 days." A few cheap signals tell them apart:
the question's words found in the sentence (weighted by how rare they are in the knowledge base), whether the
sentence holds the kind of value asked for (a price for "how much", a duration for "how long", a phone number for
"what number", ...), the retrieval score and rank of its passage, and the cosine of the sentence with and without its
title and heading. :class:`Selector` combines them linearly with weights fitted on *development* knowledge bases
(``data/dev``, never the evaluation sets; ``python -m bench.select_dev --fit``) and shipped in
``data/selector/selector.json`` with a card saying what they were fitted on.

The same features decide whether to answer at all: :meth:`Selector.answerable` is a logistic model over the best
candidate's features and score (fitted on the same development data, with gold-removed variants as extra
unanswerable questions), compared with ``Settings.answer_threshold``.

Contract
--------
* :func:`candidates` lists the candidate units (sentences, list items, table rows: :func:`~agent.generation.focus.split_units`)
  of the hits with their feature rows; :class:`Selector` scores them (higher is better) and judges answerability.
* Features are plain floats, computed from text, the hits and an IDF table (:class:`Idf`), no model beyond the
  embedder; ``FEATURES`` names the columns, in order, and a weights file must list the same names.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from agent.generation.units import Unit, split_units
from retrieval.lexical import tokenize
from retrieval.types import Hit, Passage

FEATURES: tuple[str, ...] = (
    "cos_ctx",  # cosine(question, "title. heading: sentence")
    "cos_plain",  # cosine(question, sentence)
    "cos_rel",  # cos_ctx minus the best cos_ctx among the candidates
    "hit_score",  # the passage's retrieval cosine
    "hit_first",  # 1 for a unit of the first retrieved passage
    "hit_rank_inv",  # 1 / retrieval rank of the passage
    "lex_unit",  # IDF-weighted share of the question's terms found in the sentence
    "lex_head",  # ... in the article title and section heading
    "lex_rel",  # lex_unit minus the best lex_unit among the candidates
    "lex_hits",  # ... in any of the hits (titles and texts): low when the question is about something else
    "type_match",  # the question asks for a kind of value (price, duration, ...) and the sentence holds one
    "type_miss",  # the question asks for a kind of value and the sentence holds none of them
    "has_number",  # the sentence holds a digit
    "first_unit",  # the sentence is its section's first
    "log_words",  # log of the sentence's word count
)

# question kind -> (question pattern, sentence pattern)
_DAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekend|weekday|midnight|noon"
_DURATION = r"\d+\s*(?:-|–|to)?\s*\d*\s*(?:business\s+|working\s+|calendar\s+|full\s+)?(?:minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)\b"
_TIME = rf"\b\d{{1,2}}(?::\d{{2}})?\s*(?:am|pm|a\.m\.|p\.m\.)|\b\d{{1,2}}:\d{{2}}\b|\b(?:{_DAYS})\b"
_MONEY = r"[$€£¥]\s?\d|\b\d+(?:\.\d+)?\s?(?:dollars|usd|eur|euros|pounds|cents)\b|\bfree\b|\bno (?:charge|cost|fee)\b"
_KINDS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "money": (re.compile(r"\b(how much|cost|costs|price|prices|priced|fee|fees|charge|charged|charges|pay|expensive|cheap|rate|refund amount)\b"),
              re.compile(_MONEY)),
    "duration": (re.compile(r"\b(how long|how soon|how quickly|how fast|when|deadline|by when|how many days|how many hours|within|until|expire|expires|take)\b"),
                 re.compile(rf"{_DURATION}|{_TIME}|\b(?:same|next)[- ](?:day|business day)\b|\bimmediately\b|\binstantly\b")),
    "time": (re.compile(r"\b(what time|hours|open|opening|close|closing|what days|which days)\b"), re.compile(_TIME)),
    "count": (re.compile(r"\b(how many|how much (?:data|space|storage)|maximum|max|minimum|min|limit|up to|at least|at most)\b"),
              re.compile(r"\d")),
    "contact": (re.compile(r"\b(phone|call|number to|email|e-mail|contact|reach|address|text)\b"),
                re.compile(r"@|\+?\d[\d\s().-]{6,}\d|\bwww\.|\.example\b|https?://")),
    "place": (re.compile(r"\b(where|which menu|which page|find|in the app|setting|settings)\b"),
              re.compile(r"[>›→]|\b(?:go to|tap|click|select|open|under|menu|page|tab|settings)\b")),
}
_DIGIT = re.compile(r"\d")


def question_kinds(question: str) -> set[str]:
    """The kinds of value ``question`` asks for (``money``, ``duration``, ``time``, ``count``, ``contact``,
    ``place``); empty when it asks for none of them (a yes/no or how-to question, say)."""
    q = question.lower()
    return {k for k, (qp, _) in _KINDS.items() if qp.search(q)}


def unit_kinds(text: str) -> set[str]:
    """The kinds of value ``text`` holds."""
    t = text.lower()
    return {k for k, (_, up) in _KINDS.items() if up.search(t)}


class Idf:
    """Inverse document frequency of BM25 terms (:func:`retrieval.lexical.tokenize`) over a knowledge base's
    passages: rare terms ("e-204", "roaming") weigh more than common ones ("order", "account")."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        df: dict[str, int] = {}
        for p in passages:
            for term in set(tokenize(f"{p.title}\n{p.text}")):
                df[term] = df.get(term, 0) + 1
        self.n = max(1, len(passages))
        self.df = df

    def __call__(self, term: str) -> float:
        return math.log((self.n + 1) / (self.df.get(term, 0) + 0.5))


@dataclass(frozen=True)
class Candidate:
    """One candidate answer unit: the position of its hit among the hits, the unit, and its feature row."""

    hit: int
    unit: Unit
    features: np.ndarray  # (len(FEATURES),)


Embed = Callable[[Sequence[str]], np.ndarray]


def _lex_share(q_terms: Sequence[str], text: str, idf: Idf) -> float:
    if not q_terms:
        return 0.0
    have = set(tokenize(text))
    total = sum(idf(t) for t in q_terms)
    return sum(idf(t) for t in q_terms if t in have) / total if total > 0 else 0.0


def _context(passage: Passage, units: Sequence[Unit]) -> str:
    head = next((u.text for u in units if u.heading), "")
    return f"{passage.title}. {head}" if head else passage.title


def candidates(question: str, hits: Sequence[Hit], vectors: Embed, idf: Idf) -> list[Candidate]:
    """Every candidate unit (three words or more, headings excluded) of ``hits`` with its features.

    ``vectors(texts)`` returns normalised embeddings (a cache in front of the embedder, see
    :class:`~agent.generation.focus.Focus`); ``idf`` weighs the question's terms."""
    q_terms = list(dict.fromkeys(tokenize(question)))
    kinds = question_kinds(question)
    rows: list[tuple[int, Unit, str, str]] = []  # (hit, unit, context, text)
    for n, hit in enumerate(hits):
        units = split_units(hit.passage.text)
        context = _context(hit.passage, units)
        for u in units:
            if not u.heading and len(u.text.split()) >= 3:
                rows.append((n, u, context, u.text))
    if not rows:
        return []
    texts = [question] + [f"{c}: {t}" for _, _, c, t in rows] + [t for _, _, _, t in rows]
    vecs = vectors(texts)  # (1 + 2 n, dim), normalised
    n_rows = len(rows)
    cos_ctx = vecs[1:1 + n_rows] @ vecs[0]  # (n,)
    cos_plain = vecs[1 + n_rows:] @ vecs[0]  # (n,)
    lex = np.array([_lex_share(q_terms, t, idf) for _, _, _, t in rows])
    lex_hits = _lex_share(q_terms, "\n".join(f"{h.passage.title}\n{h.passage.text}" for h in hits), idf)
    first_units: dict[int, int] = {}
    for n, u, _, _ in rows:
        first_units.setdefault(n, u.order)
    out: list[Candidate] = []
    for i, (n, u, context, text) in enumerate(rows):
        have = unit_kinds(text)
        f = np.array([
            cos_ctx[i], cos_plain[i], cos_ctx[i] - cos_ctx.max(),
            hits[n].score, float(n == 0), 1.0 / (n + 1),
            lex[i], _lex_share(q_terms, context, idf), lex[i] - lex.max(), lex_hits,
            float(bool(kinds & have)), float(bool(kinds) and not (kinds & have)),
            float(bool(_DIGIT.search(text))), float(first_units[n] == u.order),
            math.log(len(text.split())),
        ], dtype=np.float64)
        out.append(Candidate(n, u, f))
    return out


@dataclass(frozen=True)
class Selector:
    """A linear scorer of candidates and a logistic answerability model, with the weights of a fitted file."""

    weights: np.ndarray  # (len(FEATURES),) over standardised features
    mean: np.ndarray  # (len(FEATURES),)
    scale: np.ndarray  # (len(FEATURES),)
    answer_weights: np.ndarray  # (len(ANSWER_FEATURES),)
    answer_bias: float
    threshold: float = 0.5  # the support below which to hand over, unless Settings.answer_threshold says otherwise
    source: str = ""

    def scores(self, cands: Sequence[Candidate]) -> np.ndarray:
        """``(len(cands),)`` scores, higher is better (an empty array for no candidate)."""
        if not cands:
            return np.zeros(0)
        x = (np.stack([c.features for c in cands]) - self.mean) / self.scale  # (n, F)
        return x @ self.weights

    def answerable(self, cands: Sequence[Candidate], scores: np.ndarray | None = None) -> float:
        """Probability that the best candidate answers the question (0 when there is none)."""
        if not cands:
            return 0.0
        s = self.scores(cands) if scores is None else scores
        x = answer_features(np.stack([c.features for c in cands]), s)
        return float(1.0 / (1.0 + math.exp(-(x @ self.answer_weights + self.answer_bias))))

    @classmethod
    def load(cls, path: Path) -> Selector:
        """The selector of a weights file written by ``python -m bench.select_dev --fit``; a ``ValueError`` naming
        the file when its features are not this module's."""
        data = json.loads(Path(path).read_text())
        if tuple(data.get("features", ())) != FEATURES or tuple(data.get("answer_features", ())) != ANSWER_FEATURES:
            raise ValueError(f"{path} was fitted on other features than agent.generation.selector's: refit it with "
                             "`python -m bench.select_dev --fit`.")
        return cls(np.array(data["weights"]), np.array(data["mean"]), np.array(data["scale"]),
                   np.array(data["answer_weights"]), float(data["answer_bias"]), float(data["threshold"]), str(path))


#: The shipped selector (``Settings.answer_selector`` = ``default``).
DEFAULT_SELECTOR = Path(__file__).resolve().parents[2] / "data" / "selector" / "selector.json"
#: The hand-over threshold of the ``cosine`` pick (3-4% false hand-overs on DSTC development prompts).
COSINE_THRESHOLD = 0.30


def selector_file(embedder: str = "") -> Path:
    """The shipped selector for ``embedder``: ``selector-<name>.json`` beside the default one when it exists (fitted
    with that embedder's cosines), else the default (fitted with the packaged MiniLM)."""
    if embedder and "/" not in embedder:
        own = DEFAULT_SELECTOR.with_name(f"selector-{embedder}.json")
        if own.is_file():
            return own
    return DEFAULT_SELECTOR


def load_selector(name: str, embedder: str = "") -> Selector | None:
    """The selector named by ``Settings.answer_selector``: ``default`` (the shipped file for ``embedder``:
    :func:`selector_file`), ``cosine`` (None: the embedder's cosine alone) or a path to a fitted file. A
    ``ValueError`` says what to do when it is missing."""
    if name == "cosine":
        return None
    path = selector_file(embedder) if name == "default" else Path(name).expanduser()
    if not path.is_file():
        raise ValueError(f"answer selector {name!r}: no file at {path}. Set MOMENTS_ANSWER_SELECTOR to 'default', "
                         "'cosine' or a file written by `python -m bench.select_dev --fit`.")
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> Selector:
    return Selector.load(Path(path))


ANSWER_FEATURES: tuple[str, ...] = (
    "best_score",  # the selector's score of the best candidate
    "margin",  # best minus second-best score
    "best_cos_ctx", "best_cos_plain", "best_hit_score", "best_lex_unit", "best_lex_head", "best_type_match",
    "best_type_miss", "max_hit_score", "max_lex_unit", "lex_hits",
)


def answer_features(feats: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The answerability model's inputs (``ANSWER_FEATURES``) for candidates' feature rows ``feats``
    (``(n, len(FEATURES))``) and their scores ``(n,)``."""
    order = np.argsort(-scores)
    best = feats[int(order[0])]
    second = float(scores[order[1]]) if len(order) > 1 else float(scores[order[0]]) - 1.0
    col = {name: i for i, name in enumerate(FEATURES)}
    return np.array([
        float(scores[order[0]]), float(scores[order[0]]) - second,
        best[col["cos_ctx"]], best[col["cos_plain"]], best[col["hit_score"]], best[col["lex_unit"]],
        best[col["lex_head"]], best[col["type_match"]], best[col["type_miss"]],
        float(feats[:, col["hit_score"]].max()), float(feats[:, col["lex_unit"]].max()), best[col["lex_hits"]],
    ], dtype=np.float64)
