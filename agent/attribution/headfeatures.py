"""Per-head attention features of a reply: one teacher-forced pass over the reply with the full context.

Contract
--------
:func:`head_features` returns a :class:`HeadFeatures`: for every reply token ``t`` (the query at the position that
*predicts* ``reply[t]``: the last prompt token for ``t = 0``, ``reply[t-1]`` after), every layer ``l``, head ``h``
and passage ``j``, the attention mass on passage ``j``'s content tokens::

    x[t, l, h, j] = sum_{i in span_j} softmax(q_{t,l,h} . K_{l,h}^T / sqrt(d))[i]        # (T, L, H, k), in [0, 1]

and the *direct logit attribution* of the same span through the same head: what the head's output from passage
``j``'s tokens adds to the logit of the reply token itself (the unembedding row of ``reply[t]``, times the final
norm's weights, read through the head's slice of the output projection)::

    dla[t, l, h, j] = (sum_{i in span_j} a[t,l,h,i] v_{l,h,i}) . W_O[l, h]^T (w_norm * W_U[reply[t]])    # (T, L, H, k)

plus the full-context log-probability of each reply token and its top alternatives, from the same pass. These are
the inputs of the learned estimator (:mod:`agent.attribution.estimator`) and everything the instant explanation
needs besides the learned weights.

Two paths compute the same numbers (up to float rounding):

* the generator's :class:`~agent.generation.fastdecode.FastDecoder` (the default decoder): the prompt's key/value cache
  is taken from its last call (after a generated reply: all of the prompt; after a quoted one: the system prompt and
  any earlier shared prefix), so only the rest of the prompt and the reply are computed, in one pass, the reply's
  rows with explicit attention;
* any transformers causal LM (``decoder = "hf"``): one forward over prompt + reply with ``output_attentions``.

Greedy decoding reads the same attention at every step (teacher forcing the greedy tokens reproduces the decode
steps), so in generate mode these are the decode steps' own attention weights, computed once more after the last
token rather than captured inside the C decode step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class HeadFeatures:
    """Attention mass per reply token, layer, head and passage, with the full-context log-probabilities."""

    x: np.ndarray  # (T, L, H, k) float32
    dla: np.ndarray | None  # (T, L, H, k) float32 (None on the transformers reference path)
    logp: np.ndarray  # (T,) log p(reply[t] | full prompt, reply[:t])
    top_logp: np.ndarray  # (T, top_n)
    top_ids: np.ndarray  # (T, top_n)
    computed_tokens: int = 0  # tokens run through the model (the rest came from a cached prefix)


def head_features(generator_or_model, layout, reply_ids: Sequence[int], *, top_n: int = 5) -> HeadFeatures:
    """The features of ``reply_ids`` after ``layout`` (see module docstring). ``generator_or_model`` is a
    :class:`~agent.generation.loading.LoadedModel` or a causal LM; the caller holds the generator's lock."""
    from agent.generation.decoding import fast_decoder

    # a LoadedModel has a tokenizer beside its model (a causal LM's own ``.model`` is its inner decoder)
    model = generator_or_model.model if hasattr(generator_or_model, "tokenizer") else generator_or_model
    reply = [int(t) for t in reply_ids]
    spans = list(layout.passage_spans)
    if not reply:
        return _empty(model, len(spans), top_n)
    dec = fast_decoder(model)
    if dec is None:
        from agent.generation.fastdecode import FastDecoder, supported

        if not supported(model):
            return _hf(model, list(layout.input_ids), reply, spans, top_n)
        dec = FastDecoder(model, reuse_prefix=False)  # the same network on the model's fp32 weights
    return _fast(dec, list(layout.input_ids), reply, spans, top_n)


def _empty(model, k: int, top_n: int) -> HeadFeatures:
    cfg = model.config
    zeros = np.zeros((0, cfg.num_hidden_layers, cfg.num_attention_heads, k), np.float32)
    return HeadFeatures(zeros, zeros.copy(), np.zeros(0), np.zeros((0, top_n)), np.zeros((0, top_n), np.int64))


def _readout(logits, reply: list[int], top_n: int):
    """(logp (T,), top_logp (T, top_n), top_ids (T, top_n)) from logits (T, vocab)."""
    import torch

    logits = logits.float()
    norm = torch.logsumexp(logits, dim=-1, keepdim=True)  # (T, 1): log-softmax without writing it out
    picked = (logits.gather(1, torch.tensor(reply)[:, None]) - norm)[:, 0]  # (T,)
    top, top_ids = logits.topk(top_n, dim=-1)  # (T, top_n) each
    return picked.double().numpy(), (top - norm).double().numpy(), top_ids.numpy()


def _span_mass(probs, spans) -> object:
    """``probs`` (..., n_keys) summed over each span: (..., k)."""
    import torch

    if not spans:
        return probs.new_zeros(probs.shape[:-1] + (0,))
    return torch.stack([probs[..., a:b].sum(dim=-1) for a, b in spans], dim=-1)


def _hf(model, prompt: list[int], reply: list[int], spans, top_n: int) -> HeadFeatures:
    import torch

    n = len(prompt)
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt + reply[:-1]]), use_cache=False, output_attentions=True)
        # each attention: (1, H, n + T - 1, n + T - 1); rows n-1 .. n+T-2 predict the reply
        att = torch.stack([a[0, :, n - 1:] for a in out.attentions])  # (L, H, T, n + T - 1)
        x = _span_mass(att, spans).permute(2, 0, 1, 3)  # (T, L, H, k)
        logp, top_logp, top_ids = _readout(out.logits[0, n - 1:], reply, top_n)
    return HeadFeatures(x.float().numpy(), None, logp, top_logp, top_ids, computed_tokens=n + len(reply) - 1)


def _fast(dec, prompt: list[int], reply: list[int], spans, top_n: int) -> HeadFeatures:
    """The FastDecoder path: the cached prefix, then one pass over the rest of the prompt and the reply (the prompt's
    rows attend as in a prefill, the reply's rows with explicit attention weights)."""
    import torch

    from agent.generation.fastdecode import _rms

    n, n_t = len(prompt), len(reply)
    total = n + n_t
    caches = [(torch.empty(dec.n_kv, total, dec.head_dim), torch.empty(dec.n_kv, total, dec.head_dim))
              for _ in dec.layers]
    with torch.inference_mode():
        pos = min(dec._reuse_prefix(prompt, caches), n - 1)  # the first position not taken from the cache
        ids = torch.tensor(prompt[pos:] + reply[:-1])  # the prompt's uncached tokens, then the reply's inputs
        first = ids.shape[0] - n_t  # rows from here on predict reply[0..T-1]
        rope = dec.rope(pos, ids.shape[0])
        x = dec.embed[ids]  # (rows, hidden)
        target = dec.head.weight[torch.tensor(reply)] * dec.norm  # (T, hidden): the reply tokens' directions
        masses, dlas = [], []
        for i, layer in enumerate(dec.layers):
            x, mass, dla = _layer(dec, i, layer, x, pos, rope, caches[i], spans, target, first)
            masses.append(mass)  # (H, T, k)
            dlas.append(dla)  # (H, T, k)
        with dec._prefix_lock:
            dec._prefix = (prompt, caches)  # the prompt's positions are final: the next turn may reuse them
        hidden = _rms(x[first:], dec.norm, dec.eps)  # (T, hidden)
        logits = dec.head_logits(hidden)  # (T, vocab)
        logp, top_logp, top_ids = _readout(logits, reply, top_n)
        feats = torch.stack(masses).permute(2, 0, 1, 3)  # (T, L, H, k)
        dla = torch.stack(dlas).permute(2, 0, 1, 3)  # (T, L, H, k)
    return HeadFeatures(feats.float().numpy(), dla.float().numpy(), logp, top_logp, top_ids,
                        computed_tokens=total - 1 - pos)


def _layer(dec, i: int, layer, x, pos: int, rope, cache, spans, target, first: int):
    """One layer for ``x`` (m, hidden) at positions ``pos..pos+m-1``: rows before ``first`` (prompt tokens) attend
    as in the decoder's prefill, the rest (the T reply rows) with explicit attention weights. The new ``x``, and for
    the reply rows the attention mass on each span ``(H, T, k)`` and each span's direct logit attribution
    ``(H, T, k)`` towards ``target`` (T, hidden)."""
    import torch
    from torch.nn.functional import silu

    from agent.generation.fastdecode import _rms, _rotate, causal_attention

    m, hd = x.shape[0], dec.head_dim
    h = _rms(x, layer.input_layernorm.weight, dec.eps)
    q, k, v = dec._linear(i, "qkv", layer, h)
    q = _rotate(q.view(m, dec.n_heads, hd).transpose(0, 1), *rope)  # (H, m, hd)
    k = _rotate(k.view(m, dec.n_kv, hd).transpose(0, 1), *rope)  # (KV, m, hd)
    keys, values = cache
    keys[:, pos:pos + m] = k
    values[:, pos:pos + m] = v.view(m, dec.n_kv, hd).transpose(0, 1)
    parts = []
    if first > 0:  # the prompt's rows: what the decoder's prefill computes
        parts.append(causal_attention(q[:, :first], keys, values, pos))
    group = dec.n_heads // dec.n_kv
    kk = keys[:, :pos + m].repeat_interleave(group, dim=0)  # (H, pos + m, hd)
    vv = values[:, :pos + m].repeat_interleave(group, dim=0)
    scores = (q[:, first:] @ kk.transpose(1, 2)) * hd ** -0.5  # (H, T, pos + m)
    visible = torch.ones(m - first, pos + m, dtype=torch.bool).tril(diagonal=pos + first)  # row r sees <= its own
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)  # (H, T, pos + m)
    parts.append(probs @ vv)  # (H, T, hd)
    att = torch.cat(parts, dim=1)  # (H, m, hd)
    w_o = layer.self_attn.o_proj.weight  # (hidden, H * hd)
    back = (target @ w_o).view(m - first, dec.n_heads, hd).transpose(0, 1)  # (H, T, hd): target through W_O
    vdot = back @ vv.transpose(1, 2)  # (H, T, pos + m): each position's value, projected on the target
    dla = _span_mass(probs * vdot, spans)  # (H, T, k)
    (o,) = dec._linear(i, "o", layer, att.transpose(0, 1).reshape(m, dec.n_heads * hd))
    x = x + o
    h = _rms(x, layer.post_attention_layernorm.weight, dec.eps)
    gate, up = dec._linear(i, "gate_up", layer, h)
    (down,) = dec._linear(i, "down", layer, silu(gate) * up)
    return x + down, _span_mass(probs, spans), dla
