"""One exact-explanation job: the exact Shapley explanation of a stored turn, its agreement with the stored
estimate, stored once.

:func:`run_exact` reads the turn back from the store (prompt and reply token ids, passages), re-scores the reply under
all ``2^k`` passage subsets (:func:`agent.attribution.attribute`, method ``shapley``), compares it with the
explanation stored with the turn (:func:`agreement`: the live faithfulness monitor) and stores it with
:func:`agent.store.exactjobs.finish_exact`, which writes at most once per turn. The model is held as a background
job (:meth:`agent.generation.priority.GeneratorLock.background`): a live turn asked meanwhile is answered first, the
job waiting between two of its forward passes. A failure is recorded
(:func:`~agent.store.exactjobs.fail_exact`) and re-raised, so a queue can retry it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def run_exact(store, generator, turn_id: int, *, worker: str) -> bool:
    """Compute and store the exact explanation of ``turn_id``; True when this call stored it, False when it was
    already done (or another worker stored it first)."""
    from agent.attribution import attribute
    from agent.attribution.rescoring import pack_table
    from agent.errors import StoreError
    from agent.generation.priority import background_hold
    from agent.store.exactjobs import fail_exact, finish_exact, start_exact

    if not start_exact(store, turn_id, worker=worker):
        return False
    try:
        result = store.get_result(turn_id)
        if result is None or not result.token_ids or result.layout is None:
            raise StoreError(f"answer {turn_id} has no stored prompt and reply tokens to explain")
        estimate = result.explanation
        started = time.perf_counter()
        lock = getattr(generator, "lock", None)
        with background_hold(lock):  # a live turn goes first: the job yields the model between its passes
            exact, table = attribute(generator, result.layout, result.token_ids, result.token_texts,
                                     [h.passage for h in result.hits], [h.score for h in result.hits],
                                     method="shapley", use_lock=False)
        seconds = time.perf_counter() - started
        agree = agreement(estimate, exact, table) if estimate is not None else {}
        stored = finish_exact(store, turn_id, explanation=exact, table=pack_table(table) if table else None,
                              agreement=agree, worker=worker, exact_ms=seconds * 1000)
        log.info("exact explanation of turn %d in %.1f s by %s (%s)", turn_id, seconds, worker,
                 "stored" if stored else "already stored")
        return stored
    except Exception as exc:
        fail_exact(store, turn_id, error=f"{type(exc).__name__}: {exc}")
        raise


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    r[order] = np.arange(len(a))
    return r


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) < 1e-9 or np.ptp(b) < 1e-9:
        return None
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def agreement(estimate, exact, table) -> dict[str, Any]:
    """How well the stored estimate matched the exact explanation: the estimate's ``method``/``estimator``, same top
    passage (most summed credit), per-token top-passage agreement (tokens the exact method gives a top passage),
    Spearman of the token x passage credits, and the estimate's token-level LDS on the exact subset table (Spearman
    over all subsets of the additive prediction vs the exact log-prob, mean over tokens)."""
    est = np.array([t.credit for t in estimate.tokens], dtype=float).reshape(len(estimate.tokens), -1)  # (T, k)
    ex = np.array([t.credit for t in exact.tokens], dtype=float).reshape(len(exact.tokens), -1)  # (T, k)
    out: dict[str, Any] = {"estimate_method": estimate.method, "estimator": estimate.estimator, "tokens": len(ex)}
    if est.shape != ex.shape or not ex.size:
        return out
    out["same_top_passage"] = bool(np.argmax(est.sum(axis=0)) == np.argmax(ex.sum(axis=0)))
    marked = [i for i, t in enumerate(exact.tokens) if t.top_passage is not None]
    if marked:
        out["token_top_agreement"] = float(np.mean([np.argmax(est[i]) == exact.tokens[i].top_passage
                                                    for i in marked]))
    out["credit_spearman"] = _spearman(est.ravel(), ex.ravel())
    if table is not None and all(table.has(m) for m in range(1 << table.k)):
        from agent.attribution.games import additive_prediction

        masks = list(range(1 << table.k))
        actual = table.logp[[table.index[m] for m in masks]]  # (2^k, T)
        pred = additive_prediction(est, masks, np.zeros(len(est)))  # (2^k, T)
        values = [v for t in range(actual.shape[1]) if (v := _spearman(pred[:, t], actual[:, t])) is not None]
        out["lds_token"] = float(np.mean(values)) if values else None
    return out
