"""The learned attention estimator: an instant estimate of the exact Shapley values from one pass's attention.

Contract
--------
AT2-style (Madry lab, arXiv 2504.13752): the estimate of passage ``j``'s credit for reply token ``t`` is a weighted
sum, over layers ``l`` and heads ``h``, of the attention mass the query predicting ``reply[t]`` puts on passage
``j``'s tokens (:mod:`agent.attribution.headfeatures`), times a per-token scale::

    credit[t, j] = scale_t * sum_{l,h} theta[l, h] * x[t, l, h, j]
    scale_t      = exp(beta . z_t)        # z_t = (1, log p[all], top-1 log-prob, entropy proxy, total mass)

``theta`` (one weight per head) is fitted so that the additive game ``sum_{j in S} credit[t, j]`` correlates with
the exact log-probabilities ``log p(reply[t] | S)`` over all ``2^k`` subsets (AT2's Pearson loss, on our own exact
tables), then ``beta`` so that the credits match the exact Shapley values in nats (the correlation is blind to a
positive per-token scale; citations and grounding thresholds are not). The grounding estimate is
``sum_j credit[t, j]`` (Shapley efficiency: ``v(all) - v(empty)``).

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

log = logging.getLogger(__name__)

from agent.generation.decoding import ADAPTER_ATTR

FILENAME = "attention_estimator.json"


@dataclass
class Estimator:
    """Fitted weights: ``theta`` (L, H) per head, ``beta`` (5,) for the per-token scale."""

    theta: np.ndarray
    beta: np.ndarray
    adapter_hash: str | None = None
    report: dict = field(default_factory=dict)

    def credit(self, x: np.ndarray, logp: np.ndarray, top_logp: np.ndarray) -> np.ndarray:
        """Estimated Shapley values ``(T, k)`` from features ``x`` (T, L, H, k) and the full-context log-probs."""
        raw = np.einsum("tlhj,lh->tj", x.astype(np.float64), self.theta)  # (T, k)
        return raw * np.exp(token_context(x, logp, top_logp) @ self.beta)[:, None]

    def to_json(self) -> dict:
        return {"format": 1, "adapter_hash": self.adapter_hash, "theta": np.round(self.theta, 6).tolist(),
                "beta": np.round(self.beta, 6).tolist(), "report": self.report}

    @classmethod
    def from_json(cls, data: dict) -> Estimator:
        if data.get("format") != 1:
            raise ValueError(f"unknown estimator format {data.get('format')!r}")
        return cls(np.asarray(data["theta"], dtype=np.float64), np.asarray(data["beta"], dtype=np.float64),
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
    """One turn's training data: features ``x`` (T, L, H, k), the exact table ``table`` (2^k, T) by mask, and the
    full-context log-probs."""

    x: np.ndarray
    table: np.ndarray
    logp: np.ndarray
    top_logp: np.ndarray


def fit(turns: Sequence[FitTurn], *, steps: int = 300, l2: float = 1e-3, seed: int = 0) -> Estimator:
    """Fit ``theta`` (Pearson loss over all subsets, per token) then ``beta`` (squared error to exact Shapley)."""
    import torch

    from agent.attribution.games import shapley_weights

    torch.manual_seed(seed)
    by_k: dict[int, list[FitTurn]] = {}
    for t in turns:
        if t.x.shape[0]:
            by_k.setdefault(t.x.shape[3], []).append(t)
    n_l, n_h = turns[0].x.shape[1:3]
    groups = []
    for k, ts in by_k.items():
        x = torch.tensor(np.concatenate([t.x for t in ts]), dtype=torch.float32)  # (N, L, H, k)
        v = torch.tensor(np.concatenate([t.table.T for t in ts]), dtype=torch.float32)  # (N, 2^k)
        member = torch.tensor([[m >> j & 1 for j in range(k)] for m in range(1 << k)], dtype=torch.float32)
        keep = v.std(dim=1) > 1e-4  # tokens whose log-prob moves at all
        groups.append((x[keep], v[keep], member))
    theta = torch.full((n_l, n_h), 1.0 / (n_l * n_h), requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.zeros(())
        count = 0
        for x, v, member in groups:
            c = torch.einsum("nlhj,lh->nj", x, theta)  # (N, k)
            pred = c @ member.T  # (N, 2^k)
            loss = loss - _pearson(pred, v).sum()
            count += len(v)
        loss = loss / max(count, 1) + l2 * theta.pow(2).sum()
        loss.backward()
        opt.step()
    th = theta.detach().double().numpy()
    # stage 2: the per-token scale, by least squares on log |phi| / |raw| over tokens with a clear signal
    rows, targets, weights = [], [], []
    for t in turns:
        if not t.x.shape[0]:
            continue
        k = t.x.shape[3]
        phi = _shapley(t.table, k, shapley_weights(k))  # (T, k)
        raw = np.einsum("tlhj,lh->tj", t.x.astype(np.float64), th)  # (T, k)
        num, den = (raw * phi).sum(axis=1), (raw * raw).sum(axis=1)  # best scale per token: num / den
        ok = (den > 1e-12) & (num > 0)
        z = token_context(t.x, t.logp, t.top_logp)
        rows.append(z[ok])
        targets.append(np.log(num[ok] / den[ok]))
        weights.append(np.abs(phi[ok]).sum(axis=1))
    z, y, w = np.concatenate(rows), np.concatenate(targets), np.concatenate(weights) + 1e-3
    a = z * w[:, None]
    beta = np.linalg.solve(z.T @ a + 1e-3 * np.eye(z.shape[1]), a.T @ y)
    return Estimator(theta=th, beta=beta)


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
        credit = est.credit(f.x, f.logp, f.top_logp)  # (T, k)
        return MethodResult(credit=credit, logp=f.logp, top_logp=f.top_logp, top_ids=f.top_ids,
                            estimator="learned", grounding=credit.sum(axis=1), forward_passes=1,
                            tokens_rescored=f.computed_tokens, plain_tokens=f.computed_tokens,
                            notes=[("instant estimate: learned attention weights fitted to exact Shapley values; "
                                   "the exact explanation is the reference")])


_register()
