"""Faithfulness metrics for the attribution benchmark, computed from an exact subset table.

Contract
--------
* :func:`lds` — linear datamodeling score (ContextCite): Spearman correlation, over the evaluation subsets, between
  the additive prediction ``sum_{j in S} w[t, j]`` and the actual log-probability ``logp[S, t]``; averaged over
  tokens (token level), over sentences after summing their tokens (sentence level), and for the whole reply.
  Units with a constant prediction or target (e.g. a method that gives a token no credit at all) are skipped.
* :func:`removal_drops` — reply log-probability drop when the passage ranked first by a method is removed, and when
  a random other passage is removed (both exact, from the table).
* :func:`rank_spearman` — Spearman of two score vectors (NaN when either is constant).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import spearmanr

from agent.attribution.games import additive_prediction
from agent.attribution.rescoring import SubsetScores


def rank_spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) < 1e-9 or np.ptp(b) < 1e-9:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def token_lds(table: SubsetScores, weights: np.ndarray, masks: list[int]) -> list[float]:
    """Each reply token's LDS (Spearman over ``masks`` of the additive prediction from ``weights`` (T, k) vs the
    table's log-probs); NaN where either side is constant."""
    actual = table.logp[[table.index[m] for m in masks]]  # (n_eval, T)
    pred = additive_prediction(weights, masks, np.zeros(weights.shape[0]))  # (n_eval, T)
    return [rank_spearman(pred[:, t], actual[:, t]) for t in range(actual.shape[1])]


def lds(table: SubsetScores, weights: np.ndarray, masks: list[int],
        sentences: list[tuple[int, int]]) -> dict[str, float | None]:
    """Token-, sentence- and reply-level LDS of ``weights`` (T, k) over the subsets ``masks``."""
    actual = table.logp[[table.index[m] for m in masks]]  # (n_eval, T)
    pred = additive_prediction(weights, masks, np.zeros(weights.shape[0]))  # (n_eval, T)
    token = token_lds(table, weights, masks)
    sent = [rank_spearman(pred[:, a:b].sum(axis=1), actual[:, a:b].sum(axis=1)) for a, b in sentences if b > a]
    return {"token": _mean(token), "sentence": _mean(sent),
            "reply": _mean([rank_spearman(pred.sum(axis=1), actual.sum(axis=1))])}


def removal_drops(table: SubsetScores, credit: np.ndarray, order: list[int]) -> dict:
    """``{top, drop_top, random, drop_random}`` for the ranking given by ``credit`` (T, k) summed over tokens.

    The "random other" passage is the first of ``order`` (a random permutation drawn once per turn, shared by all
    methods) that is not the method's top passage, so methods that agree on the top compare against the same one.
    """
    k = table.k
    full = table.full_mask
    v_all = table.row(full).sum()
    drops = [float(v_all - table.row(full ^ (1 << j)).sum()) for j in range(k)]
    totals = credit.sum(axis=0)
    top = int(np.argmax(totals))
    other = next(j for j in order if j != top)
    return {"top": top, "drop_top": drops[top], "random": other, "drop_random": drops[other], "drops": drops}
