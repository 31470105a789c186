"""ContextCite-style surrogate: random passage ablations plus a sparse linear fit, for when ``2^k`` is too many.

Contract
--------
:func:`random_masks` draws ``n`` subsets keeping each passage independently with probability ``keep_prob`` (0.5, as in
ContextCite), from a seeded generator. :func:`fit_surrogate` fits, for every reply token ``t`` at once,

    logp[S, t] ≈ b[t] + sum_j w[t, j] * [j in S]

by Lasso (L1 penalty ``alpha``, objective ``1/(2n) ||y - b - Xw||² + alpha ||w||₁``) with cyclic coordinate descent
in ``numpy`` — one design matrix shared by all tokens, so each sweep updates all tokens' coefficient ``j`` together.
The weights ``w`` are the attribution scores (in nats, like Shapley values; for an additive game both coincide).
ContextCite fits the logit of the probability of the whole response; we fit each token's log-probability so the
scores are comparable with the exact Shapley values token by token.
"""

from __future__ import annotations

import numpy as np

from agent.attribution.games import membership


def random_masks(k: int, n: int, *, seed: int = 0, keep_prob: float = 0.5) -> list[int]:
    """``n`` random subsets of ``k`` passages (bitmasks), each passage kept with probability ``keep_prob``."""
    rng = np.random.default_rng(seed)
    keep = rng.random((n, k)) < keep_prob  # (n, k)
    return [int(sum(1 << j for j in range(k) if row[j])) for row in keep]


def fit_surrogate(masks: list[int], logp: np.ndarray, k: int, *, alpha: float = 0.01, sweeps: int = 500,
                  tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Lasso fit of ``logp`` (shape ``(n_samples, n_tokens)``) on passage membership; returns ``(w (T, k), b (T,))``."""
    x = membership(masks, k)  # (n, k)
    y = np.asarray(logp, dtype=np.float64)  # (n, T)
    n = x.shape[0]
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean  # centred: the intercept drops out
    norms = (xc ** 2).sum(axis=0) / n  # (k,)
    w = np.zeros((k, y.shape[1]))  # (k, T)
    resid = yc.copy()  # (n, T) = yc - xc @ w
    for _ in range(sweeps):
        biggest = 0.0
        for j in range(k):
            if norms[j] == 0.0:  # passage always (or never) kept in the sample: no information
                continue
            old = w[j].copy()
            rho = xc[:, j] @ resid / n + norms[j] * old  # (T,)
            w[j] = np.sign(rho) * np.maximum(np.abs(rho) - alpha, 0.0) / norms[j]
            delta = w[j] - old
            if np.any(delta):
                resid -= xc[:, j:j + 1] * delta[None, :]
                biggest = max(biggest, float(np.abs(delta).max()))
        if biggest < tol:
            break
    b = y_mean - x_mean @ w  # (T,)
    return w.T.copy(), b
