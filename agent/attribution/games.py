"""Cooperative-game read-outs of a subset table: exact Shapley values, leave-one-out, grounding, additive predictions.

The game of reply token ``t`` has players = the ``k`` passages and value ``v_t(S) = logp[S, t]`` (see
:mod:`agent.attribution.rescoring`). Passage ``j`` is bit ``j`` of a subset mask. All functions take a
:class:`~agent.attribution.rescoring.SubsetScores` and return ``numpy`` arrays with tokens first:

* :func:`shapley` — ``phi[t, j] = sum_{S not containing j} |S|!(k-|S|-1)!/k! * (v(S+j) - v(S))``; needs all ``2^k``
  subsets; efficiency holds by construction: ``phi[t].sum() == v(all) - v(empty)``.
* :func:`leave_one_out` — ``loo[t, j] = v(all) - v(all - j)``.
* :func:`grounding` — ``v(all) - v(empty)``: how much the passages, together, raise the token's log-probability.
* :func:`additive_prediction` — ``v(empty) + sum_{j in S} w[t, j]`` (or a fitted intercept), the linear model behind
  the LDS faithfulness score.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from agent.attribution.rescoring import SubsetScores


def all_masks(k: int) -> list[int]:
    """Every subset of ``k`` passages, as bitmasks ``0 .. 2^k - 1``."""
    return list(range(1 << k))


def loo_masks(k: int) -> list[int]:
    """The subsets leave-one-out needs: all passages, each passage dropped once, and none."""
    full = (1 << k) - 1
    return [full] + [full ^ (1 << j) for j in range(k)] + [0]


def shapley_weights(k: int) -> np.ndarray:
    """``w[s] = s! (k - s - 1)! / k!`` for coalition sizes ``s = 0 .. k-1``."""
    return np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)])


def shapley(table: SubsetScores) -> np.ndarray:
    """Exact Shapley values, shape ``(n_tokens, k)``; raises ``ValueError`` if a subset is missing."""
    k = table.k
    missing = [m for m in all_masks(k) if not table.has(m)]
    if missing:
        raise ValueError(f"exact Shapley needs all {1 << k} subsets; {len(missing)} were not scored "
                         "(score all_masks(k), or use the surrogate for large k)")
    v = table.logp[[table.index[m] for m in all_masks(k)]]  # (2^k, T), row = mask
    w = shapley_weights(k)
    phi = np.zeros((v.shape[1], k))  # (T, k)
    for j in range(k):
        without = np.array([m for m in all_masks(k) if not m >> j & 1])  # (2^(k-1),)
        sizes = np.array([int(m).bit_count() for m in without])
        gain = v[without | (1 << j)] - v[without]  # (2^(k-1), T)
        phi[:, j] = (w[sizes][:, None] * gain).sum(axis=0)
    return phi


def leave_one_out(table: SubsetScores) -> np.ndarray:
    """``v(all) - v(all - j)`` per token and passage, shape ``(n_tokens, k)``."""
    full = table.full_mask
    v_all = table.row(full)  # (T,)
    if table.k == 0:
        return np.zeros((len(v_all), 0))
    return np.stack([v_all - table.row(full ^ (1 << j)) for j in range(table.k)], axis=1)  # (T, k)


def grounding(table: SubsetScores) -> np.ndarray:
    """``v(all) - v(empty)`` per token, shape ``(n_tokens,)``."""
    return table.row(table.full_mask) - table.row(0)


def membership(masks: list[int] | np.ndarray, k: int) -> np.ndarray:
    """0/1 design matrix, shape ``(n_subsets, k)``."""
    m = np.asarray(masks, dtype=np.int64)
    return ((m[:, None] >> np.arange(k)[None, :]) & 1).astype(np.float64)


def additive_prediction(weights: np.ndarray, masks: list[int], base: np.ndarray) -> np.ndarray:
    """``base[t] + sum_{j in S} weights[t, j]`` for each subset, shape ``(n_subsets, n_tokens)``."""
    x = membership(masks, weights.shape[1])  # (n_subsets, k)
    return base[None, :] + x @ weights.T  # (n_subsets, T)
