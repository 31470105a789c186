"""``explain()``: run an attribution method on a reply and assemble its :class:`~agent.attribution.explanation.Explanation`.

Contract
--------
``explain(generator, layout, reply_ids, token_texts, passages, scores, method="shapley", **options)``

* ``layout`` is the :class:`~agent.generation.prompt.PromptLayout` the reply was generated from, ``reply_ids`` the generated
  token ids (no stop token) and ``token_texts`` the text each token added (``"".join(token_texts)`` is the reply, as
  :func:`agent.generation.decoding.stream_tokens` yields it). ``passages[j]`` is the passage shown as ``[j+1]`` and
  ``scores[j]`` its retrieval score (``None``/empty when unknown).
* ``options`` are the fields of :class:`~agent.attribution.methods.Options`; unknown names raise ``ValueError``.
* The model runs under ``generator.lock`` (do not call while holding it, or pass ``use_lock=False``).
* An empty reply gives an empty explanation (no model call); ``k = 0`` (no passages) gives every token the flag
  ``"prior"`` and no credit.
* ``attribute(...)`` is the same, and also returns the subset table the method scored; ``reexplain(table, tokenizer,
  ...)`` computes an explanation again from such a table (stored with the turn), with no model call.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

import numpy as np

from agent.attribution import sentences as sent
from agent.attribution import summary
from agent.attribution.explanation import (
    Explanation,
    PassageCredit,
    SentenceCitation,
    TokenAttribution,
)
from agent.attribution.methods import METHODS, MethodResult, Options, readout
from agent.attribution.rescoring import SubsetScores

log = logging.getLogger(__name__)


def explain(generator, layout, reply_ids: Sequence[int], token_texts: Sequence[str], passages: Sequence,
            scores: Sequence[float | None] | None = None, method: str = "shapley", **options) -> Explanation:
    """Explain every token of a reply in terms of the retrieved passages (see module docstring)."""
    return attribute(generator, layout, reply_ids, token_texts, passages, scores, method, **options)[0]


def attribute(generator, layout, reply_ids: Sequence[int], token_texts: Sequence[str], passages: Sequence,
              scores: Sequence[float | None] | None = None, method: str = "shapley",
              **options) -> tuple[Explanation, SubsetScores | None]:
    """:func:`explain`, and the subset table the explanation was read from (None for ``attention`` or an empty
    reply): keep it to explain the turn again later with :func:`reexplain`."""
    started = time.perf_counter()
    opt = Options.from_kwargs(**options)
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {sorted(METHODS)}")
    k = layout.n_passages
    score_list = _check(k, reply_ids, token_texts, passages, scores)
    if not reply_ids:  # nothing to attribute: an empty explanation, no model call
        result = _empty(k, opt)
    else:
        lock = generator.lock if opt.use_lock and getattr(generator, "lock", None) is not None \
            else contextlib.nullcontext()
        with lock:
            result = METHODS[method](generator.model, layout, list(reply_ids), options=opt)
    exp = assemble(result, generator.tokenizer, list(reply_ids), list(token_texts), passages, score_list, method, opt)
    exp.seconds = time.perf_counter() - started
    log.info("explained %d tokens over %d passages with %s (%s): %d passes, %d tokens, %.2f s", len(reply_ids), k,
             method, result.estimator, exp.forward_passes, exp.tokens_rescored, exp.seconds)
    return exp, result.table


def reexplain(table: SubsetScores, tokenizer, reply_ids: Sequence[int], token_texts: Sequence[str],
              passages: Sequence, scores: Sequence[float | None] | None = None, method: str = "shapley",
              **options) -> Explanation:
    """The explanation of a reply computed again from its stored subset table, without the model: with another
    method (``shapley``, ``loo``, ``surrogate``) or other options (grounding threshold, citation rules ...).
    ``tokenizer`` only names the alternatives. Raises ``ValueError`` when the table cannot give ``method``."""
    started = time.perf_counter()
    opt = Options.from_kwargs(**options)
    score_list = _check(table.k, reply_ids, token_texts, passages, scores)
    if table.logp.shape != (len(table.masks), len(reply_ids)):
        raise ValueError(f"the table scores {table.logp.shape[1]} reply tokens, the reply has {len(reply_ids)}")
    result = readout(method, table, opt) if reply_ids else _empty(table.k, opt)
    result.forward_passes = result.tokens_rescored = 0
    result.notes.append("computed again from the stored subset table (no model call)")
    exp = assemble(result, tokenizer, list(reply_ids), list(token_texts), passages, score_list, method, opt)
    exp.seconds = time.perf_counter() - started
    return exp


def _check(k: int, reply_ids: Sequence[int], token_texts: Sequence[str], passages: Sequence,
           scores: Sequence[float | None] | None) -> list[float | None]:
    """The retrieval scores as a list of ``k``; ``ValueError`` (saying what to pass) when the inputs disagree."""
    if len(passages) != k:
        raise ValueError(f"{len(passages)} passages given but the prompt layout has {k}; pass the passages in prompt "
                         "order, the ones the reply was generated from")
    if len(reply_ids) != len(token_texts):
        raise ValueError(f"{len(reply_ids)} reply ids but {len(token_texts)} token texts; pass one text per token "
                         "(the Step.text values of stream_tokens)")
    score_list: list[float | None] = list(scores) if scores else [None] * k
    if len(score_list) != k:
        raise ValueError(f"{len(score_list)} retrieval scores for {k} passages")
    return score_list


def _empty(k: int, opt: Options) -> MethodResult:
    return MethodResult(credit=np.zeros((0, k)), logp=np.zeros(0), top_logp=np.zeros((0, opt.top_n)),
                        top_ids=np.zeros((0, opt.top_n), dtype=np.int64), estimator="exact",
                        notes=["empty reply: nothing to attribute"])


def assemble(result: MethodResult, tokenizer, reply_ids: list[int], token_texts: list[str], passages: Sequence,
             scores: list[float | None], method: str, opt: Options) -> Explanation:
    """Turn a method's arrays into the :class:`Explanation` value (flags, sentences, passages, confidence)."""
    k = len(passages)
    reply = "".join(token_texts)
    offsets = sent.token_offsets(token_texts)
    markers = sent.citation_spans(reply)
    tokens = [_token(t, result, tokenizer, reply_ids, token_texts, offsets, markers, opt)
              for t in range(len(reply_ids))]

    credit = np.asarray(result.credit).reshape(len(reply_ids), k)  # (T, k)
    totals = credit.sum(axis=0) if len(reply_ids) else np.zeros(k)  # (k,)
    passage_rows = []
    for j, p in enumerate(passages):
        grounded = sum(1 for t in tokens if t.flag == "grounded" and t.top_passage == j)
        passage_rows.append(PassageCredit(index=j, id=p.id, doc_id=p.doc_id, title=p.title, score=_num(scores[j]),
                                          credit=float(totals[j]), grounded_tokens=grounded))

    sentence_rows = []
    for a, b in sent.split_sentences(reply):
        lo, hi = sent.token_range(offsets, a, b)
        sums = credit[lo:hi].sum(axis=0) if hi > lo else np.zeros(k)  # (k,)
        content = [t for t in tokens[lo:hi] if t.content]
        share = sum(t.flag == "grounded" for t in content) / len(content) if content else None
        cited = sent.cite(sums.tolist(), min_score=opt.cite_min_score if result.estimator != "attention" else 0.0,
                          min_ratio=opt.cite_min_ratio, max_cites=opt.max_cites)
        sentence_rows.append(SentenceCitation(text=reply[a:b], start=a, end=b, token_start=lo, token_end=hi,
                                              scores=[float(x) for x in sums], cited=cited,
                                              model_cited=sent.model_citations(reply[a:b], k), grounded_share=share))

    share = summary.grounded_share([t.flag for t in tokens], [t.content for t in tokens])
    support = summary.retrieval_support([p.score for p in passage_rows], totals.tolist(), floor=opt.score_floor,
                                        ceiling=opt.score_ceiling)
    notes = list(result.notes)
    if support is None and k:
        notes.append("retrieval scores unknown: confidence uses the grounded share alone")
    top = int(np.argmax(totals)) if k and totals.max() > 0 else None
    return Explanation(
        method=method, estimator=result.estimator, k=k, reply=reply, tokens=tokens, passages=passage_rows,
        sentences=sentence_rows, confidence=summary.confidence(share, support), grounded_share=share,
        top_doc_id=passages[top].doc_id if top is not None else None, forward_passes=result.forward_passes,
        tokens_rescored=result.tokens_rescored, plain_tokens=result.plain_tokens, seconds=0.0, notes=notes,
        options={"grounding_threshold": opt.grounding_threshold, "min_token_credit": opt.min_token_credit,
                 "cite_min_score": opt.cite_min_score, "cite_min_ratio": opt.cite_min_ratio,
                 "max_exact_k": opt.max_exact_k, "score_floor": opt.score_floor, "score_ceiling": opt.score_ceiling})


def _token(t: int, r: MethodResult, tokenizer, reply_ids: list[int], texts: list[str],
           offsets: list[tuple[int, int]], markers: list[tuple[int, int, int]], opt: Options) -> TokenAttribution:
    credit = [float(x) for x in r.credit[t]]
    g = None if r.grounding is None else float(r.grounding[t])
    flag = "grounded" if g is not None and g >= opt.grounding_threshold else "prior"
    floor = 0.0 if r.estimator == "attention" else opt.min_token_credit
    best = int(np.argmax(credit)) if credit else None
    top = best if best is not None and credit[best] > floor else None
    a, b = offsets[t]
    in_marker = any(ma < b and a < mb for ma, mb, _ in markers)
    alts = [(tokenizer.decode([int(i)]), float(np.exp(lp))) for i, lp in zip(r.top_ids[t], r.top_logp[t])]
    return TokenAttribution(
        index=t, text=texts[t], token_id=int(reply_ids[t]), logprob=float(r.logp[t]), prob=float(np.exp(r.logp[t])),
        alternatives=alts, credit=credit, shapley=None if r.shapley is None else [float(x) for x in r.shapley[t]],
        loo=None if r.loo is None else [float(x) for x in r.loo[t]], grounding=g, flag=flag, top_passage=top,
        content=summary.is_content(texts[t], in_marker))


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if np.isnan(x) else x
