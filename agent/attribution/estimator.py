"""The learned attention estimator: an instant estimate of the exact Shapley values from one pass's attention.

Contract
--------
AT2-style (Madry lab, arXiv 2504.13752), fitted on the project's own exact tables. Per reply token ``t`` and passage
``j`` the features (:func:`features`) are, for every layer and head: the attention mass on passage ``j``'s tokens
(``x``) and that span's direct logit attribution towards the reply token (``dla``), each at the query predicting
``t``, at the one before it, and averaged over the reply so far (influence also reaches a token through the earlier
reply positions' states) — plus the passage's rank (``[1]`` is the one a quoted reply copies). The estimate is::

    score[t, j]  = features[t, j] . w                       # one weight per head and feature kind, plus ranks
    credit[t, j] = scale_t * softmax_j(score[t, :])         # scale_t = exp(beta . z_t), z_t: see token_context

``w`` is fitted so that the additive game ``sum_{j in S} credit[t, j]`` correlates with the exact log-probabilities
``log p(reply[t] | S)`` over all ``2^k`` subsets (AT2's Pearson loss); the softmax makes each token's credit go
mostly to one passage, which is how the exact values look on focused prompts (the exact top passage alone, as a
one-hot credit, already scores a token LDS of about 0.71). ``beta`` then sets the size in nats (least squares to the
exact Shapley values: the correlation is blind to a positive per-token scale; citations and flags are not). The
grounding estimate is ``scale_t`` (Shapley efficiency: the credits sum to ``v(all) - v(empty)``).

The weights are fitted per model and adapter (:func:`fit`, run by ``python -m bench.estimator_fit``) and shipped
beside the adapter as ``attention_estimator.json`` (:data:`FILENAME`) with the adapter's hash: :func:`load` refuses
weights fitted for another adapter. The ``learned`` attribution method (registered here) reads them; it is an
*estimate*: explanations built from it carry ``estimator = "learned"``, and the exact method stays the reference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.generation.decoding import ADAPTER_ATTR

log = logging.getLogger(__name__)

FILENAME = "attention_estimator.json"
N_RANKS = 4  # rank features: [1], [2], [3], [4] and after


def features(x: np.ndarray, dla: np.ndarray) -> np.ndarray:
    """The estimator's inputs ``(T, k, 6 * L * H + N_RANKS)`` from ``x`` and ``dla`` (T, L, H, k): each at the token,
    at the token before (zeros for the first) and averaged over the reply up to the token; then the rank one-hot."""
    n, n_l, n_h, k = x.shape
    parts = []
    for a in (x.astype(np.float32), dla.astype(np.float32)):
        prev = np.zeros_like(a)
        prev[1:] = a[:-1]
        mean = np.cumsum(a, axis=0) / np.arange(1, n + 1, dtype=np.float32)[:, None, None, None]
        parts += [v.reshape(n, n_l * n_h, k) for v in (a, prev, mean)]
    ranks = np.zeros((n, N_RANKS, k), dtype=np.float32)
    ranks[:, np.minimum(np.arange(k), N_RANKS - 1), np.arange(k)] = 1.0
    return np.concatenate(parts + [ranks], axis=1).transpose(0, 2, 1)  # (T, k, F)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Estimator:
    """Fitted weights: ``w`` over :func:`features`, ``beta`` (5,) for the per-token scale."""

    w: np.ndarray
    beta: np.ndarray
    adapter_hash: str | None = None
    report: dict = field(default_factory=dict)

    def shares(self, x: np.ndarray, dla: np.ndarray) -> np.ndarray:
        """Each token's split of credit over the passages ``(T, k)`` (rows sum to 1)."""
        if x.shape[0] == 0:
            return np.zeros((0, x.shape[3]))
        return _softmax(features(x, dla).astype(np.float64) @ self.w)

    def credit(self, x: np.ndarray, dla: np.ndarray, logp: np.ndarray, top_logp: np.ndarray) -> np.ndarray:
        """Estimated Shapley values ``(T, k)`` from the features ``x``, ``dla`` (T, L, H, k) and the full-context
        log-probs."""
        return self.shares(x, dla) * np.exp(token_context(x, logp, top_logp) @ self.beta)[:, None]

    def to_json(self) -> dict:
        return {"format": 3, "adapter_hash": self.adapter_hash, "w": np.round(self.w, 6).tolist(),
                "beta": np.round(self.beta, 6).tolist(), "report": self.report}

    @classmethod
    def from_json(cls, data: dict) -> Estimator:
        if data.get("format") != 3:
            raise ValueError(f"unknown estimator format {data.get('format')!r}; fit it again (bench.estimator_fit)")
        return cls(np.asarray(data["w"], dtype=np.float64), np.asarray(data["beta"], dtype=np.float64),
                   data.get("adapter_hash"), data.get("report", {}))


def token_context(x: np.ndarray, logp: np.ndarray, top_logp: np.ndarray) -> np.ndarray:
    """Per-token inputs of the scale, ``(T, 5)``: 1, log p[all], top-1 log-prob, log-prob mass outside the top
    alternatives (an entropy proxy), mean attention mass on all passages."""
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 5))
    rest = np.log1p(-np.clip(np.exp(top_logp).sum(axis=1), 0.0, 1.0 - 1e-6))  # (T,)
    mass = x.sum(axis=3).mean(axis=(1, 2))  # (T,)
    return np.stack([np.ones(n), np.maximum(logp, -20.0), top_logp[:, 0], rest, mass], axis=1)


def load(adapter_dir: Path | None, adapter_hash: str | None) -> Estimator | None:
    """The estimator shipped beside an adapter, or None (none shipped, or fitted for another adapter: logged)."""
    if adapter_dir is None:
        return None
    path = Path(adapter_dir) / FILENAME
    if not path.is_file():
        return None
    est = Estimator.from_json(json.loads(path.read_text()))
    if est.adapter_hash != adapter_hash:
        log.warning("%s was fitted for adapter %s, this one is %s: not used", path, est.adapter_hash, adapter_hash)
        return None
    return est


_loaded: dict[tuple, Estimator | None] = {}


def for_model(model) -> Estimator | None:
    """The estimator for a loaded model (cached per adapter), or None."""
    adapter_dir, adapter_hash = getattr(model, ADAPTER_ATTR, (None, None))
    key = (str(adapter_dir), adapter_hash)
    if key not in _loaded:
        _loaded[key] = load(adapter_dir, adapter_hash)
    return _loaded[key]


# ------------------------------------------------------------------------------------------------------ fitting
@dataclass
class FitTurn:
    """One turn's training data: features ``x`` and ``dla`` (T, L, H, k), the exact table ``table`` (2^k, T) by
    mask, and the full-context log-probs."""

    x: np.ndarray
    dla: np.ndarray
    table: np.ndarray
    logp: np.ndarray
    top_logp: np.ndarray


def fit(turns: Sequence[FitTurn], *, steps: int = 300, l2: float = 1e-3, seed: int = 0) -> Estimator:
    """Fit ``w`` (Pearson loss over all subsets, per token) then ``beta`` (least squares to exact Shapley)."""
    import torch

    from agent.attribution.games import shapley_weights

    torch.manual_seed(seed)
    by_k: dict[int, list[FitTurn]] = {}
    for t in turns:
        if t.x.shape[0]:
            by_k.setdefault(t.x.shape[3], []).append(t)
    groups = []
    for k, ts in by_k.items():
        f = torch.tensor(np.concatenate([features(t.x, t.dla) for t in ts]), dtype=torch.float32)  # (N, k, F)
        v = torch.tensor(np.concatenate([t.table.T for t in ts]), dtype=torch.float32)  # (N, 2^k)
        member = torch.tensor([[m >> j & 1 for j in range(k)] for m in range(1 << k)], dtype=torch.float32)
        keep = v.std(dim=1) > 1e-4  # tokens whose log-prob moves at all
        groups.append((f[keep], v[keep], member))
    w = torch.zeros(groups[0][0].shape[-1], requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss, count = torch.zeros(()), 0
        for f, v, member in groups:
            pred = torch.softmax(f @ w, dim=-1) @ member.T  # (N, 2^k)
            loss = loss - _pearson(pred, v).sum()
            count += len(v)
        loss = loss / max(count, 1) + l2 * w.pow(2).sum()
        loss.backward()
        opt.step()
    est = Estimator(w=w.detach().double().numpy(), beta=np.zeros(5))
    # stage 2: the per-token scale, by weighted least squares on log(best scale) over tokens with a clear signal
    rows, targets, weights = [], [], []
    for t in turns:
        if not t.x.shape[0]:
            continue
        k = t.x.shape[3]
        phi = _shapley(t.table, k, shapley_weights(k))  # (T, k)
        raw = est.shares(t.x, t.dla)  # (T, k)
        num, den = (raw * phi).sum(axis=1), (raw * raw).sum(axis=1)  # best scale per token: num / den
        ok = (den > 1e-12) & (num > 0)
        rows.append(token_context(t.x, t.logp, t.top_logp)[ok])
        targets.append(np.log(num[ok] / den[ok]))
        weights.append(np.abs(phi[ok]).sum(axis=1))
    z, y, wt = np.concatenate(rows), np.concatenate(targets), np.concatenate(weights) + 1e-3
    a = z * wt[:, None]
    est.beta = np.linalg.solve(z.T @ a + 1e-3 * np.eye(z.shape[1]), a.T @ y)
    return est


def _pearson(pred, target):
    """Pearson correlation per row of two (N, S) tensors."""
    p = pred - pred.mean(dim=1, keepdim=True)
    t = target - target.mean(dim=1, keepdim=True)
    return (p * t).sum(dim=1) / (p.norm(dim=1) * t.norm(dim=1) + 1e-8)


def _shapley(table: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
    """Exact Shapley values ``(T, k)`` of a table whose row ``m`` is subset mask ``m``."""
    phi = np.zeros((table.shape[1], k))
    for j in range(k):
        without = np.array([m for m in range(1 << k) if not m >> j & 1])
        sizes = np.array([int(m).bit_count() for m in without])
        phi[:, j] = (w[sizes][:, None] * (table[without | (1 << j)] - table[without])).sum(axis=0)
    return phi


# ------------------------------------------------------------------------------------------------------ method
def _register() -> None:
    from agent.attribution.headfeatures import head_features
    from agent.attribution.methods import MethodResult, Options, register

    @register("learned", "learned attention estimator (per-head weights fitted to exact Shapley tables; instant "
                         "estimate, not exact)")
    def learned_method(model, layout, reply_ids: Sequence[int], *, options: Options) -> MethodResult:
        est = for_model(model)
        if est is None:
            raise ValueError("no learned estimator for this model/adapter (attention_estimator.json beside the "
                             "adapter, fitted for it): use method 'shapley', or fit one with bench.estimator_fit")
        f = head_features(model, layout, reply_ids, top_n=options.top_n)
        if f.dla is None:
            raise ValueError("this model's architecture has no direct-logit features: use method 'shapley'")
        credit = est.credit(f.x, f.dla, f.logp, f.top_logp)  # (T, k)
        return MethodResult(credit=credit, logp=f.logp, top_logp=f.top_logp, top_ids=f.top_ids,
                            estimator="learned", grounding=credit.sum(axis=1), forward_passes=1,
                            tokens_rescored=f.computed_tokens, plain_tokens=f.computed_tokens,
                            notes=[("instant estimate: learned attention weights fitted to exact Shapley values; "
                                   "the exact explanation is the reference")])


_register()
