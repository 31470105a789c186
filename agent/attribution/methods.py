"""Attribution methods behind one small interface, and the registry :data:`METHODS` (exact Shapley is the default).

Contract
--------
A method is a callable ``method(model, layout, reply_ids, *, options) -> MethodResult`` with a ``name`` and a
one-line ``description``. Every method returns, per reply token, the credit of each passage (``credit``, shape
``(T, k)``, in nats unless the method says otherwise), the full-context log-probabilities and top alternatives, and
what it cost. Methods:

* ``shapley`` (default) — all ``2^k`` subsets re-scored through the prefix trie; exact Shapley values, leave-one-out
  and grounding from the same table. For ``k > max_exact_k`` it falls back to leave-one-out + the ContextCite-style
  surrogate, with ``estimator = "surrogate"`` and a note saying so.
* ``loo`` — leave-one-out only (``k + 2`` subsets).
* ``surrogate`` — ContextCite-style: ``n_ablations`` random subsets + the leave-one-out subsets, Lasso fit.
* ``attention`` — attention mass on each passage (one pass, plus the no-passage pass for grounding); a fast
  estimate, not causal.

Register another method with :func:`register`, or a read-out of the subset table with :func:`register_table`
(``shapley``, ``loo`` and ``surrogate`` are such read-outs: :func:`readout` computes them again from a stored table,
without the model).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.attribution import games
from agent.attribution.attention import attention_scores
from agent.attribution.rescoring import SubsetScores, score_subsets
from agent.attribution.surrogate import fit_surrogate, random_masks

log = logging.getLogger(__name__)


@dataclass
class Options:
    """Knobs of the attribution methods and of the explanation built from them (all have defaults)."""

    max_exact_k: int = 5  # exact Shapley up to this many passages (2^k subsets)
    batch_size: int = 4  # trie nodes per forward pass
    min_shared_tokens: int = 16  # shorter shared runs are recomputed per branch rather than cached
    n_ablations: int = 32  # random subsets for the surrogate
    lasso_alpha: float = 0.01  # L1 penalty of the surrogate (nats)
    seed: int = 0
    top_n: int = 5  # alternatives per token
    grounding_threshold: float = 1.0  # nats: logp[all] - logp[none] at or above → "grounded"
    min_token_credit: float = 0.1  # nats: a token's top passage must have at least this credit
    cite_min_score: float = 1.0  # nats summed over a sentence, to cite a passage
    cite_min_ratio: float = 0.5  # ... and at least this share of the sentence's best passage score
    max_cites: int = 2
    score_floor: float = 0.2  # retrieval score mapped to support 0 (confidence)
    score_ceiling: float = 0.6  # retrieval score mapped to support 1
    use_lock: bool = True  # hold generator.lock while the model runs

    @classmethod
    def from_kwargs(cls, **kwargs) -> Options:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown attribution option(s) {unknown}; known options: {sorted(known)}")
        return cls(**kwargs)


@dataclass
class MethodResult:
    """What a method computed for one reply (arrays have tokens first)."""

    credit: np.ndarray  # (T, k)
    logp: np.ndarray  # (T,) full-context log-probabilities of the reply tokens
    top_logp: np.ndarray  # (T, top_n)
    top_ids: np.ndarray  # (T, top_n)
    estimator: str
    shapley: np.ndarray | None = None  # (T, k)
    loo: np.ndarray | None = None  # (T, k)
    grounding: np.ndarray | None = None  # (T,)
    forward_passes: int = 0
    tokens_rescored: int = 0
    plain_tokens: int = 0
    notes: list[str] = field(default_factory=list)
    table: SubsetScores | None = None  # the subset table, when the method built one


Method = Callable[..., MethodResult]
METHODS: dict[str, Method] = {}
#: For the methods computed from a subset table: which subsets they need, and the read-out of a scored table.
#: A stored table (see :func:`~agent.attribution.rescoring.pack_table`) can be read out again without the model.
TABLE_METHODS: dict[str, tuple[Callable[[int, Options], list[int]], Callable[[SubsetScores, Options], MethodResult]]] = {}


def register(name: str, description: str) -> Callable[[Method], Method]:
    """Decorator adding a method to :data:`METHODS` under ``name``."""

    def wrap(fn: Method) -> Method:
        fn.name = name  # type: ignore[attr-defined]
        fn.description = description  # type: ignore[attr-defined]
        METHODS[name] = fn
        return fn

    return wrap


def register_table(name: str, description: str, masks: Callable[[int, Options], list[int]]):
    """Decorator for a read-out ``fn(table, options)`` of a subset table: registers it in :data:`TABLE_METHODS`
    and, in :data:`METHODS`, the method that scores the ``masks(k, options)`` subsets with the model first."""

    def wrap(readout: Callable[[SubsetScores, Options], MethodResult]):
        def method(model, layout, reply_ids: Sequence[int], *, options: Options) -> MethodResult:
            table = _score(model, layout, reply_ids, masks(layout.n_passages, options), options)
            return readout(table, options)

        method.__doc__ = readout.__doc__
        TABLE_METHODS[name] = (masks, readout)
        register(name, description)(method)
        return readout

    return wrap


def readout(name: str, table: SubsetScores, options: Options) -> MethodResult:
    """Method ``name`` computed from an already scored subset table (no model call); ``ValueError`` when the method
    needs the model itself (``attention``) or the table lacks subsets the method needs."""
    if name not in TABLE_METHODS:
        raise ValueError(f"{name!r} cannot be computed from a stored subset table; use one of {sorted(TABLE_METHODS)}")
    masks, read = TABLE_METHODS[name]
    missing = [m for m in masks(table.k, options) if not table.has(m)]
    if missing:
        raise ValueError(f"the stored table lacks {len(missing)} of the subsets {name!r} needs; explain the turn "
                         "again with the model")
    return read(table, options)


def _from_table(table: SubsetScores, credit: np.ndarray, estimator: str, **extra) -> MethodResult:
    if table.top_ids is None:
        raise RuntimeError("the full-context subset was not scored")
    return MethodResult(credit=credit, logp=table.row(table.full_mask), top_logp=table.top_logp,
                        top_ids=table.top_ids, estimator=estimator, forward_passes=table.forward_passes,
                        tokens_rescored=table.tokens_rescored, plain_tokens=table.plain_tokens, table=table, **extra)


def _score(model, layout, reply_ids: Sequence[int], masks: list[int], opt: Options) -> SubsetScores:
    return score_subsets(model, layout, reply_ids, masks, batch_size=opt.batch_size,
                         min_shared_tokens=opt.min_shared_tokens, top_n=opt.top_n)


def _surrogate_masks(k: int, options: Options) -> list[int]:
    return games.loo_masks(k) + random_masks(k, options.n_ablations, seed=options.seed)


def _shapley_masks(k: int, options: Options) -> list[int]:
    return games.all_masks(k) if k <= options.max_exact_k else _surrogate_masks(k, options)


@register_table("shapley", "exact Shapley values over all 2^k passage subsets (default); surrogate above max_exact_k",
                _shapley_masks)
def shapley_method(table: SubsetScores, options: Options) -> MethodResult:
    k = table.k
    if k > options.max_exact_k:
        result = surrogate_method(table, options)
        result.notes.insert(0, f"k={k} > {options.max_exact_k}: leave-one-out + ContextCite-style surrogate "
                               f"({options.n_ablations} random ablations, Lasso alpha={options.lasso_alpha}); "
                               f"exact Shapley would need {1 << k} subsets")
        return result
    phi = games.shapley(table)
    return _from_table(table, phi, "exact", shapley=phi, loo=games.leave_one_out(table),
                       grounding=games.grounding(table))


@register_table("loo", "leave-one-out: log-prob drop when each passage alone is removed (k + 2 subsets)",
                lambda k, options: games.loo_masks(k))
def loo_method(table: SubsetScores, options: Options) -> MethodResult:
    loo = games.leave_one_out(table)
    return _from_table(table, loo, "loo", loo=loo, grounding=games.grounding(table))


@register_table("surrogate", "ContextCite-style sparse linear surrogate fitted on random ablations + leave-one-out",
                _surrogate_masks)
def surrogate_method(table: SubsetScores, options: Options) -> MethodResult:
    k = table.k
    masks = _surrogate_masks(k, options)
    rows = [table.index[m] for m in masks]  # repeated draws count as repeated samples
    weights, _ = fit_surrogate(masks, table.logp[rows], k, alpha=options.lasso_alpha)
    return _from_table(table, weights, "surrogate", loo=games.leave_one_out(table),
                       grounding=games.grounding(table))


@register("attention", "attention mass of each reply token on each passage (fast estimate, not causal)")
def attention_method(model, layout, reply_ids: Sequence[int], *, options: Options) -> MethodResult:
    scores, logp, top_logp, top_ids, passes, tokens = attention_scores(model, layout, reply_ids, top_n=options.top_n)
    empty = _score(model, layout, reply_ids, [0], options)
    return MethodResult(credit=scores, logp=logp, top_logp=top_logp, top_ids=top_ids, estimator="attention",
                        grounding=logp - empty.row(0), forward_passes=passes + empty.forward_passes,
                        tokens_rescored=tokens + empty.tokens_rescored,
                        plain_tokens=tokens + empty.plain_tokens,
                        notes=["attention credit is attention mass (0..1), not log-probability; a fast estimate"])
