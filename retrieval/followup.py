"""Conversation-aware search: follow-ups such as "do they allow pets?" find the passages the conversation is about.

Contract
--------
``search_with_history(index, question, history, k)`` returns the ``k`` best :class:`~retrieval.types.Hit`
values for ``question`` asked after the earlier user turns ``history`` (oldest first); ``build_query`` shows
which turns are used, with which weights. With ``HistoryMethod(kind="none")`` it is exactly
``index.search(question, k)``.

The default method, ``"context"`` (chosen by measurement, see ``bench/results/retrieval_dstc9.md``), scores
every passage ``p`` of source document ``d(p)`` (the file, or the entity in DSTC9) as::

    score(p) = cos(q, p) + weight * context(d(p))
    context(d) = max_i  w_i * (cos(u_i, c_d) - mean_d' cos(u_i, c_d'))

where ``q`` is the question's embedding, ``u_0 = q`` (weight 1) and ``u_1, u_2, ...`` are the most recent
user turns (weights ``decay**0, decay**1, ...``, at most ``turns`` of them) and, when ``assistant > 0``, the most
recent assistant turns (:class:`~retrieval.types.Turn` values in ``history``; at most ``turns`` of them, weight
``assistant * decay**i`` with ``i`` the number of user turns after it), and ``c_d`` is the normalised
mean embedding of ``d``'s passages. The question finds *what* is asked (the passage), the conversation finds
*which document* it is about (the hotel named two turns ago, the article the customer started with). Taking
the max over turns lets the one turn that names the subject decide, and centring each turn's similarities
removes the pull of turns that are vaguely similar to everything. Because the question is one of the turns,
a self-contained question that changes topic keeps its own document in front.

Hybrid retrieval (the default): that dense score is fused with BM25 evidence (:func:`ranking_scores`,
:mod:`retrieval.hybrid`): ``+ lexical * unit(BM25(question, p)) + lexical_context * lexcontext(d(p)) + exact *
unit(BM25(codes of the question, p))``, the lexical context being the BM25 twin of the dense one over the question
and the earlier turns. ``lexical = 0`` and ``lexical_context = 0.3`` were tuned on DSTC11 dialogues (``bench/retrieval_tune.py``,
``bench/results/retrieval_tune.md``; never on the evaluation sets): passage-level BM25 only hurt there, the
document-level lexical context helped most; ``exact = 0.3`` is set by hand, as the tuning dialogues hold no codes: a code
such as ``E-204`` names its passage, which an embedding cannot spell. All three at 0 give the dense ranking.

Names (the default, :mod:`retrieval.mentions`): ``+ mention * named(d(p))`` for the passages scoring within
``mention_margin`` of the best, ``named`` being the weight of the most recent turn (the question 1, earlier turns of
either speaker ``decay ** (u + 1)``) that names an entity document (FAQ rows titled ``"<name>: ..."``) by its
distinctive name (the hotel the assistant just recommended). Help-centre article titles are not names. Tuned on
DSTC11 with the development help centres as guards (``bench/retrieval_tune_mention.py``). Above the HNSW threshold
the passages outside the candidates carry a bound, not their cosine, so a named entity's passages that were not
candidates are ordered by that bound.

Hits are ordered by that score, but each hit's ``score`` is a cosine, like a plain search's: the passage
against the question read in context, ``cos(p, normalise(q + score_weight * w_j * u_j))`` with ``u_j`` the
turn that gave its document the bonus (just ``cos(q, p)`` when that is the question itself), so that
thresholds set for plain cosines (abstention) keep their meaning. ``score_weight = 0.5`` was measured on the
project KB: a full weight lifted off-topic questions asked after a KB topic above the 0.35 abstention
threshold (9 in 10 of them), the bare cosine kept 4 in 10 real follow-ups below it; at 0.5, about 9 in 10
follow-ups pass and half of those off-topic questions stay below, with the same answerable/unanswerable AUC
(0.95) as plain cosines. A lower rank can occasionally carry a slightly higher score.

Other methods, kept for comparison: ``"vector_sum"`` (search with ``normalise(q + weight * sum_i decay**i
u_i)``), ``"concat"`` (embed the last ``turns`` user turns and the question as one text), ``"none"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

from retrieval.embedder import normalise
from retrieval.hybrid import fuse, lexical_context, top_k
from retrieval.lexical import LEXICAL_VERSION, LexicalIndex, is_code, tokenize
from retrieval.mentions import NameMatcher, mention_scores, mention_turns
from retrieval.types import DEFAULT_HISTORY_TURNS, Hit, Passage, Turn

log = logging.getLogger(__name__)


class VectorIndex(Protocol):
    """What follow-up search needs of an index (:class:`retrieval.index.KnowledgeIndex` is one); this module does
    not import the index, so that the index can offer :func:`search_with_history` as a method."""

    passages: list[Passage]

    def __len__(self) -> int: ...
    def search(self, query: str, k: int) -> list[Hit]: ...
    def search_vector(self, vec: np.ndarray, k: int) -> list[Hit]: ...
    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...
    def vectors(self) -> np.ndarray: ...
    def dense_scores(self, q: np.ndarray) -> np.ndarray: ...
    def group_centroids(self) -> tuple[np.ndarray, np.ndarray]: ...
    def lexical(self) -> LexicalIndex: ...
    def name_matcher(self) -> NameMatcher: ...

MethodKind = Literal["context", "vector_sum", "concat", "none"]
FusionKind = Literal["linear", "rrf", "bm25"]


@dataclass(frozen=True)
class HistoryMethod:
    """How earlier user turns shape the search (see the module docstring)."""

    kind: MethodKind = "context"
    #: Earlier user turns used, most recent first.
    turns: int = DEFAULT_HISTORY_TURNS
    #: Weight of the i-th most recent turn relative to the question: ``decay ** i`` (i from 0).
    decay: float = 0.8
    #: "context": weight of the document-context bonus; "vector_sum": weight of the turns' vectors.
    weight: float = 1.0
    #: "context" only: the question itself is one of the context turns (keeps topic switches safe).
    include_question: bool = True
    #: "context" only: weight of the naming turn in the reported cosine (see the module docstring).
    score_weight: float = 0.5
    #: Hybrid retrieval (:mod:`retrieval.hybrid`): how dense and BM25 evidence are fused ("bm25": BM25 alone).
    fusion: FusionKind = "linear"
    #: Weight of the question's unit-scaled BM25 scores (tuned on DSTC11: 0 was best; 0 with the two below: dense).
    lexical: float = 0.0
    #: "context" only: weight of the lexical document-context bonus of the earlier turns (tuned on DSTC11).
    lexical_context: float = 0.3
    #: Weight of the BM25 scores of the question's code-like terms (E-204, NW-12345678; set by hand).
    exact: float = 0.3
    #: "rrf" only: the rank offset of reciprocal rank fusion.
    rrf_k: float = 10.0
    #: Weight of the assistant's turns relative to the user's (0: they are not used, the default). 1.25 was tuned on
    #: DSTC11 (``bench/retrieval_tune_assistant.py``: follow-up recall@1 0.38 -> 0.80, topic switches naming their
    #: hotel kept) and lifts DSTC9 validation from 0.562 / 0.835 to 0.631 / 0.938, but on data/kb a self-contained
    #: question asked after the assistant answered another topic finds its article far less often (recall@1
    #: 0.786 -> 0.359, ``bench/results/retrieval.md``): off until a switch-safe form exists; selectable per method.
    assistant: float = 0.0
    #: Weight of the name bonus (:mod:`retrieval.mentions`): an entity document (FAQ rows titled "<name>: ...")
    #: named by the question or a recent turn of either speaker gets ``mention`` times that turn's weight on its
    #: passages scoring within ``mention_margin`` of the best passage without it (0: off). Tuned on DSTC11 with the
    #: development help centres as guards (``bench/retrieval_tune_mention.py``, ``bench/results/
    #: retrieval_tune_mention.md``): follow-up recall@1 0.384 -> 0.869, topic switches naming their entity unchanged
    #: (0.915), the development help centres unchanged; the best margin was none (10: larger than any score gap).
    mention: float = 1.5
    mention_margin: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ("context", "vector_sum", "concat", "none"):
            raise ValueError(f"Unknown history method {self.kind!r}; use context, vector_sum, concat or none.")
        if self.fusion not in ("linear", "rrf", "bm25"):
            raise ValueError(f"Unknown fusion {self.fusion!r}; use linear, rrf or bm25.")
        weights = (self.weight, self.score_weight, self.lexical, self.lexical_context, self.exact, self.assistant,
                   self.mention, self.mention_margin)
        if self.turns < 0 or not 0.0 <= self.decay <= 1.0 or min(weights) < 0 or self.rrf_k <= 0:
            raise ValueError(f"Invalid {self}: need turns >= 0, 0 <= decay <= 1, weights >= 0 and rrf_k > 0.")

    @property
    def dense_only(self) -> bool:
        """True when no lexical evidence takes part (the dense ranking alone)."""
        return self.fusion == "linear" and not (self.lexical or self.lexical_context or self.exact or self.mention)


#: The method the product uses (best on DSTC9 and on the project KB's follow-ups, see the bench).
DEFAULT_METHOD = HistoryMethod()


def method_signature(method: HistoryMethod | None = None) -> str:
    """The retrieval method (default: the product's) in one string (BM25 tokenizer, fusion and name weights): part
    of every index version (:func:`retrieval.index.kb_version`)."""
    method = method or DEFAULT_METHOD
    names = f";mention={method.mention}/{method.mention_margin}" if method.mention else ""
    return (f"{LEXICAL_VERSION};{method.fusion};lex={method.lexical};ctx={method.lexical_context};"
            f"exact={method.exact};rrf={method.rrf_k}{names}")


@dataclass(frozen=True)
class ConversationQuery:
    """What gets embedded for one search: the question and the recent turns, with their weights."""

    question: str
    #: The recent turns used (user turns, and assistant turns when the method weighs them), most recent first.
    turns: tuple[str, ...] = ()
    #: One weight per entry of ``turns`` (``decay ** i``; an assistant turn's times ``method.assistant``).
    weights: tuple[float, ...] = ()
    method: HistoryMethod = field(default=DEFAULT_METHOD)
    #: The earlier turns of either speaker that may name a document (``method.mention > 0``), most recent first,
    #: with their weights (:func:`retrieval.mentions.mention_turns`).
    mention_turns: tuple[str, ...] = ()
    mention_weights: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        """The single query text (the ``"concat"`` method): recent turns oldest first, then the question."""
        return "\n".join([*reversed(self.turns), self.question])


def build_query(
    question: str, history: Sequence[str | Turn], method: HistoryMethod = DEFAULT_METHOD
) -> ConversationQuery:
    """Select and weight the recent turns (``history`` is oldest first; a plain string is a user turn) for
    ``question``: at most ``method.turns`` user turns and, when ``method.assistant > 0``, as many assistant turns."""
    recent: list[str] = []
    weights: list[float] = []
    users = assistants = 0  # turns of each speaker taken so far (most recent first)
    for turn in [] if method.kind == "none" else reversed(history):
        turn = turn if isinstance(turn, Turn) else Turn(turn or "")
        text = (turn.text or "").strip()
        if turn.speaker == "assistant":
            if text and method.assistant > 0 and assistants < method.turns and users < method.turns:
                recent.append(text)
                weights.append(method.assistant * method.decay**users)  # recency: the user turns after it
                assistants += 1
        elif text and users < method.turns:
            recent.append(text)
            weights.append(method.decay**users)
            users += 1
    named, named_w = (mention_turns(history, method.decay, method.turns)
                      if method.mention > 0 and method.kind != "none" else ((), ()))
    return ConversationQuery(question.strip(), tuple(recent), tuple(weights), method, named, named_w)


def search_with_history(
    index: VectorIndex,
    question: str,
    history: Sequence[str | Turn],
    k: int,
    method: HistoryMethod = DEFAULT_METHOD,
) -> list[Hit]:
    """The ``k`` best passages for ``question`` in the context of the earlier turns ``history`` (oldest first;
    strings are user turns, :class:`~retrieval.types.Turn` values say who spoke)."""
    query = build_query(question, history, method)
    if method.kind == "none" or (method.kind != "context" and not query.turns):
        return index.search(query.question, k, method)
    if method.kind == "concat":
        return index.search(query.text, k, method)
    vecs = index.embed_queries([query.question, *query.turns])  # (1 + n_turns, dim)
    q, turns = vecs[0], vecs[1:]
    w = np.asarray(query.weights, dtype=np.float32)  # (n_turns,)
    if method.kind == "vector_sum":
        return index.search_vector(normalise(q + method.weight * (w @ turns)), k)
    return _context_search(index, query, q, turns, w, k)


def ranking_scores(
    index: VectorIndex,
    dense: np.ndarray,
    question: str,
    turns: Sequence[str],
    weights: Sequence[float],
    method: HistoryMethod,
    named_turns: Sequence[str] = (),
    named_weights: Sequence[float] = (),
) -> np.ndarray:
    """The hybrid ranking score of every passage → ``(n_passages,)``: the dense ranking scores ``dense`` fused
    with the BM25 evidence of ``question`` and of the earlier ``turns`` (see :mod:`retrieval.hybrid`), plus the name
    bonus of the documents that ``question`` and ``named_turns`` name (:mod:`retrieval.mentions`)."""
    if method.dense_only:
        return dense
    if method.mention and method.fusion == "linear":
        _, group_of = index.group_centroids()
        named = mention_scores(index.name_matcher(), question, named_turns, named_weights)
        base = ranking_scores(index, dense, question, turns, weights, replace(method, mention=0.0))
        close = base >= base.max() - method.mention_margin if len(base) else base.astype(bool)
        return base + method.mention * named[group_of] * close
    lex = index.lexical()
    terms = tokenize(question)
    bm25 = lex.scores_terms(terms) if method.lexical or method.fusion != "linear" else np.zeros_like(dense)
    context: np.ndarray | float = 0.0
    texts, ws = ([question, *turns], [1.0, *weights]) if method.include_question else (list(turns), list(weights))
    if method.lexical_context and texts and method.fusion == "linear":
        centroids, group_of = index.group_centroids()
        cached = {question: bm25} if method.lexical else {}
        score = lambda text: cached[text] if text in cached else lex.scores(text)
        context = lexical_context(score, texts, ws, group_of, len(centroids))[group_of]
    codes = [t for t in terms if is_code(t)]
    code_scores = lex.scores_terms(codes) if method.exact and codes else 0.0
    return fuse(dense, bm25, context, code_scores, kind=method.fusion, lexical=method.lexical,
                lexical_context=method.lexical_context, exact=method.exact, rrf_k=method.rrf_k)


def context_scores(
    index: VectorIndex, q: np.ndarray, turns: np.ndarray, weights: np.ndarray, method: HistoryMethod
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``"context"`` ranking score of every passage, and which context vector explains each one.

    Returns ``(scores (n_passages,), contexts (n_ctx, dim), chosen (n_passages,))``: ``contexts`` are the
    weighted context turns (the question first when ``method.include_question``), ``chosen[i]`` the row of
    ``contexts`` that gives passage ``i``'s document its bonus (``-1``: no bonus).
    """
    centroids, group_of = index.group_centroids()  # (n_groups, dim), (n_passages,)
    scores = index.dense_scores(q)  # (n_passages,): cosines (an HNSW index: of its nearest candidates)
    if method.include_question:
        turns = np.vstack([q[None, :], turns])  # (n_ctx, dim)
        weights = np.concatenate([[1.0], weights]).astype(np.float32)  # (n_ctx,)
    contexts = turns * weights[:, None]  # (n_ctx, dim)
    if len(turns) == 0 or method.weight == 0:
        return scores, contexts, np.full(len(scores), -1)
    sims = centroids @ turns.T  # (n_groups, n_ctx)
    sims -= sims.mean(axis=0, keepdims=True)  # centre each turn over the documents
    sims *= weights[None, :]
    context, chosen = sims.max(axis=1), sims.argmax(axis=1)  # (n_groups,) each
    return scores + method.weight * context[group_of], contexts, chosen[group_of]


def _context_search(
    index: VectorIndex, query: ConversationQuery, q: np.ndarray, turns: np.ndarray, weights: np.ndarray, k: int
) -> list[Hit]:
    method = query.method
    scores, contexts, chosen = context_scores(index, q, turns, weights, method)
    scores = ranking_scores(index, scores, query.question, query.turns, query.weights, method, query.mention_turns,
                            query.mention_weights)
    top = top_k(scores, k)
    vectors = index.vectors()
    hits = []
    for rank, i in enumerate(top, 1):
        # Report a cosine: the passage against the question read with the turn that named its document.
        j = chosen[i]
        is_question = j < 0 or (method.include_question and j == 0)
        read = q if is_question else normalise(q + method.score_weight * contexts[j])
        hits.append(Hit(passage=index.passages[i], score=float(vectors[i] @ read), rank=rank))
    return hits
