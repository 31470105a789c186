"""A lean greedy decoder for Llama/Qwen2-style models: own forward pass, preallocated KV cache, packed weights.

Why: at 135M parameters a decode step of the transformers model is bound by reading 540 MB of fp32 weights plus
Python overhead. :class:`FastDecoder` runs the same network with

* the prompt (prefill) through the model's own fp32 weights, with ``scaled_dot_product_attention`` — or, with
  ``batched_bf16`` (``Settings.prefill_precision``, on by default where the CPU has AMX-BF16), through bfloat16
  copies of the projections (attention and everything else stay float32): about 2x faster to the first token, and
  the replies measured token-identical to the fp32 model's (bench/results/speed.md);
* each decode step through the exact packed 4-bit/8-bit blocks of :mod:`agent.generation.packing` (the fp32
  weights *are* their dequantization, so no weight changes) plus the unmerged LoRA side path, with float32
  activations, a preallocated key/value cache and a few dozen torch calls per layer.

It computes the function of the fp32 model that the attribution re-scores, up to float rounding (with the bf16
prefill: up to the bfloat16 rounding of the prompt's projections), so the explanation explains the model that
produced the reply: the fp32 re-scoring's argmax is the generated token (tests/test_fast_decoding.py,
bench/speed.py measure the agreement).
Weights that are not exact packed blocks stay fp32 (:meth:`FastDecoder.describe` says which).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from agent.generation.packing import linear_parts, pack_group, pack_head

log = logging.getLogger(__name__)

_GROUPS = {"qkv": ("self_attn", ("q_proj", "k_proj", "v_proj")), "o": ("self_attn", ("o_proj",)),
           "gate_up": ("mlp", ("gate_proj", "up_proj")), "down": ("mlp", ("down_proj",))}


def supported(model) -> bool:
    """True for the architectures this decoder implements (Llama, Qwen2 with default RoPE and SiLU MLP)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", "") not in ("llama", "qwen2"):
        return False
    rope = getattr(cfg, "rope_parameters", None) or {}
    return rope.get("rope_type", "default") == "default" and getattr(cfg, "hidden_act", "") == "silu"


def pack_model(lib, model) -> dict:
    """Packed fused groups per layer (``{(layer, group): PackedLinear}``) and ``"head"``, read from ``model``
    *before* its LoRA adapter is merged (a peft model or a plain causal LM); groups that are not exact are absent."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    packed: dict = {}
    for i, layer in enumerate(base.model.layers):
        for group, (owner, names) in _GROUPS.items():
            parent = getattr(layer, owner)
            lin = pack_group(lib, [getattr(parent, n) for n in names])
            if lin is not None:
                packed[(i, group)] = lin
    parts = linear_parts(base.get_output_embeddings())
    if parts is not None and parts[1] is None and parts[2] is None:  # a plain head (an adapter on it: fp32)
        head = pack_head(lib, parts[0])
        if head is not None:
            packed["head"] = head
    return packed


class FastDecoder:
    """Greedy decoding of a merged fp32 causal LM, with optional exact packed weights for the decode steps."""

    def __init__(self, model, packed: dict | None = None, *, c_step: bool = True, reuse_prefix: bool = True,
                 batched_bf16: bool = False) -> None:
        import threading

        import torch

        cfg = model.config
        self.model = model
        self.packed = packed or {}
        self.layers = list(model.model.layers)
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        theta = cfg.rope_parameters["rope_theta"]
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim))
        self.embed = model.get_input_embeddings().weight
        self.norm = model.model.norm.weight
        self.head = model.get_output_embeddings()
        self.inter = cfg.intermediate_size
        self.fast = [self._prepare(i, layer) for i, layer in enumerate(self.layers)]
        groups = [self.packed.get((i, g)) for i in range(len(self.layers)) for g in _GROUPS]
        #: the kernels, when every projection is packed: then a decode step is one C call (agent.generation.cstep)
        self.lib = groups[0].lib if c_step and groups and all(g is not None for g in groups) else None
        self.reuse_prefix = reuse_prefix
        #: bfloat16 copies of every layer's projections for passes over several tokens (the prompt's prefill, the
        #: instant explanation's pass over a reply), or None: those passes then use the fp32 weights
        self.batched = _bf16_copies(self.layers, self.head) if batched_bf16 else None
        self.reused_tokens = 0  # tokens taken from the previous prompt's cache by the last call
        self._prefix: tuple[list[int], list] | None = None
        self._prefix_lock = threading.Lock()

    def describe(self) -> str:
        """One line: which weights decode packed (and how many bytes a step reads) and which stay fp32."""
        n_groups = len(self.layers) * len(_GROUPS)
        packed = sum(1 for key in self.packed if key != "head")
        mb = sum(p.nbytes for p in self.packed.values()) / 1e6
        return (f"{packed}/{n_groups} layer groups packed, head {'packed' if 'head' in self.packed else 'fp32'} "
                f"({mb:.0f} MB packed); passes over many tokens in {'bf16' if self.batched else 'fp32'}")

    def greedy(self, input_ids: Sequence[int], max_new_tokens: int) -> Iterator[int]:
        """Token ids chosen greedily after ``input_ids``, one at a time (the caller stops when it wants).

        The prompt's cache is kept, and the next call reuses it for the tokens both prompts start with (the system
        prompt, earlier exchanges): only the rest is prefilled."""
        import torch

        n = len(input_ids)
        total = n + max_new_tokens
        caches = [(torch.empty(self.n_kv, total, self.head_dim), torch.empty(self.n_kv, total, self.head_dim))
                  for _ in self.layers]
        with torch.inference_mode():
            reused = self.reused_tokens = self._reuse_prefix(input_ids, caches)
            hidden = self._forward(torch.tensor(list(input_ids)[reused:]), reused, caches)
            with self._prefix_lock:
                self._prefix = (list(input_ids), caches)  # positions < n are never written again
            if self.lib is not None:
                from agent.generation.cstep import CStep

                c_step = CStep(self.lib, self, caches, total)
                step_fn = lambda token, pos: _rms(c_step(self.embed[token].clone(), pos), self.norm, self.eps)
            else:
                tables = _StepTables(self, total)
                step_fn = lambda token, pos: self._step(token, pos, caches, tables)
            for step in range(max_new_tokens):
                token = int(self._logits(hidden).argmax())
                yield token
                if step + 1 < max_new_tokens:
                    hidden = step_fn(token, n + step)

    def _reuse_prefix(self, input_ids: Sequence[int], caches) -> int:
        """Copy the cached keys/values of the longest prefix shared with the previous prompt (at most all tokens
        but the last, whose logits are needed) into ``caches``; the number of tokens copied."""
        with self._prefix_lock:
            previous = self._prefix
        if previous is None or not self.reuse_prefix:
            return 0
        ids, old = previous
        limit = min(len(ids), len(input_ids) - 1)
        shared = next((i for i in range(limit) if ids[i] != input_ids[i]), limit)
        if shared < 16:  # not worth a copy
            return 0
        for (keys, values), (old_keys, old_values) in zip(caches, old):
            keys[:, :shared] = old_keys[:, :shared]
            values[:, :shared] = old_values[:, :shared]
        return shared

    def _prepare(self, i: int, layer) -> tuple:
        """A layer's norms and its four projections as callables on one vector: packed, or fp32 where not."""
        from functools import partial

        fns = []
        for group, (owner, names) in _GROUPS.items():
            lin = self.packed.get((i, group))
            if lin is None:
                mods = [getattr(getattr(layer, owner), name) for name in names]
                lin = partial(_dense, [(m.weight, m.bias) for m in mods])
            fns.append(lin)
        return (layer.input_layernorm.weight, layer.post_attention_layernorm.weight, *fns)

    def _step(self, token: int, pos: int, caches, tables: _StepTables):
        """One decode step: ``token`` at position ``pos``; the final hidden state ``(hidden,)``. The same network
        as :meth:`_layer`, written for one vector with as few torch calls as possible."""
        import torch
        from torch.nn.functional import rms_norm, silu

        cos, sin = tables.cos[pos], tables.sin[pos]  # (heads + kv_heads, hd); queries pre-scaled by hd**-0.5
        n_qk, group, hd, inter = (self.n_heads + self.n_kv) * self.head_dim, self.n_heads // self.n_kv, \
            self.head_dim, self.inter
        x = self.embed[token]  # (hidden,)
        shape = x.shape
        for (w_in, w_post, qkv, o, gate_up, down), (keys, values) in zip(self.fast, caches):
            y = qkv(rms_norm(x, shape, w_in, self.eps))  # (q | k | v,)
            qk = y[:n_qk].view(-1, hd)  # (heads + kv_heads, hd)
            qk = qk * cos + (qk @ tables.rot) * sin
            keys[:, pos] = qk[self.n_heads:]
            values[:, pos] = y[n_qk:].view(self.n_kv, hd)
            q = qk[:self.n_heads].view(self.n_kv, group, hd)  # query head j reads kv head j // group
            att = torch.softmax(q @ keys[:, :pos + 1].transpose(1, 2), dim=-1) @ values[:, :pos + 1]
            x = x + o(att.reshape(-1))  # att: (kv_heads, group, hd)
            g = gate_up(rms_norm(x, shape, w_post, self.eps))  # (gate | up,)
            x = x + down(silu(g[:inter]) * g[inter:])
        return rms_norm(x, shape, self.norm, self.eps)

    def head_logits(self, hidden):
        """Logits ``(rows, vocab)`` for final hidden states ``(rows, hidden)`` of a pass over several tokens (the
        instant explanation's): with the bfloat16 head when the batched passes are bfloat16, else fp32."""
        import torch

        if self.batched is not None and hidden.shape[0] > 1:
            weight, bias = self.batched["head"]
            return torch.nn.functional.linear(hidden.to(torch.bfloat16), weight, bias).float()
        return torch.nn.functional.linear(hidden, self.head.weight, self.head.bias)

    def _logits(self, hidden):
        """Logits ``(vocab,)`` for the last position's final hidden state ``(hidden,)``."""
        import torch

        head = self.packed.get("head")
        if head is not None:
            return head(hidden)
        return torch.nn.functional.linear(hidden, self.head.weight, self.head.bias)

    def _forward(self, ids, pos: int, caches):
        """Run ``ids`` (n,) at positions ``pos..pos+n-1``, filling the caches; the last position's final hidden
        state ``(hidden,)``."""
        n = ids.shape[0]
        x = self.embed[ids]  # (n, hidden)
        rope = self.rope(pos, n)
        for i, layer in enumerate(self.layers):
            x = self._layer(i, layer, x, pos, rope, caches[i])
        return _rms(x[-1], self.norm, self.eps)

    def rope(self, pos: int, n: int) -> tuple:
        """The rotary tables ``(cos, sin)``, each (n, head_dim), for positions ``pos..pos+n-1``."""
        import torch

        freqs = torch.arange(pos, pos + n, dtype=torch.float)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)  # (n, head_dim)
        return emb.cos(), emb.sin()

    def _linear(self, i: int, group: str, layer, h):
        """The outputs of one group's Linears for ``h`` (n, in): packed for one vector, fp32 otherwise."""
        import torch

        owner, names = _GROUPS[group]
        parent = getattr(layer, owner)
        mods = [getattr(parent, name) for name in names]
        lin = self.packed.get((i, group))
        if lin is not None and h.shape[0] == 1:
            return lin(h[0])[None, :].split([m.out_features for m in mods], dim=-1)
        if self.batched is not None and h.shape[0] > 1:
            weight, bias = self.batched[(i, group)]
            y = torch.nn.functional.linear(h.to(torch.bfloat16), weight, bias).float()
            return y.split([m.out_features for m in mods], dim=-1)
        return [torch.nn.functional.linear(h, m.weight, m.bias) for m in mods]

    def _layer(self, i: int, layer, x, pos: int, rope, cache):
        from torch.nn.functional import silu

        n, hd = x.shape[0], self.head_dim
        h = _rms(x, layer.input_layernorm.weight, self.eps)
        q, k, v = self._linear(i, "qkv", layer, h)
        q = _rotate(q.view(n, self.n_heads, hd).transpose(0, 1), *rope)  # (heads, n, hd)
        k = _rotate(k.view(n, self.n_kv, hd).transpose(0, 1), *rope)  # (kv_heads, n, hd)
        keys, values = cache
        keys[:, pos:pos + n] = k
        values[:, pos:pos + n] = v.view(n, self.n_kv, hd).transpose(0, 1)
        attn = causal_attention(q, keys, values, pos)  # (heads, n, hd)
        (o,) = self._linear(i, "o", layer, attn.transpose(0, 1).reshape(n, self.n_heads * hd))
        x = x + o
        h = _rms(x, layer.post_attention_layernorm.weight, self.eps)
        gate, up = self._linear(i, "gate_up", layer, h)
        (down,) = self._linear(i, "down", layer, silu(gate) * up)
        return x + down


class _StepTables:
    """Per-position rotary tables for :meth:`FastDecoder._step`, for positions ``0..total-1``."""

    def __init__(self, dec: FastDecoder, total: int) -> None:
        import torch

        freqs = torch.arange(total, dtype=torch.float)[:, None] * dec.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]  # (total, 1, hd)
        rows = torch.ones(dec.n_heads + dec.n_kv, 1)
        rows[:dec.n_heads] = dec.head_dim ** -0.5  # the attention scale, folded into the queries
        self.cos, self.sin = emb.cos() * rows, emb.sin() * rows  # (total, heads + kv_heads, hd)
        half = dec.head_dim // 2
        self.rot = torch.zeros(dec.head_dim, dec.head_dim)  # x @ rot == cat(-x[half:], x[:half])
        self.rot[torch.arange(half) + half, torch.arange(half)] = -1.0
        self.rot[torch.arange(half), torch.arange(half) + half] = 1.0


def causal_attention(q, keys, values, pos: int):
    """Attention of the queries ``q`` (heads, n, hd) at positions ``pos..pos+n-1`` over the cached keys/values
    (kv_heads, >= pos + n, hd): each sees the prefix and the new positions up to its own; (heads, n, hd)."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention

    n = q.shape[1]
    mask = None
    if n > 1 and pos > 0:  # new tokens after a cached prefix: each sees the prefix and the new ones before it
        mask = torch.ones(n, pos + n, dtype=torch.bool).tril(diagonal=pos)
    return scaled_dot_product_attention(q[None], keys[None, :, :pos + n], values[None, :, :pos + n],
                                        attn_mask=mask, is_causal=n > 1 and pos == 0, enable_gqa=True)[0]


def _bf16_copies(layers, head) -> dict:
    """``{(layer, group): (weight, bias)}``: each group's projections stacked (q|k|v, gate|up) in bfloat16; and
    ``"head"``: the output head's."""
    import torch

    out = {"head": (head.weight.detach().to(torch.bfloat16),
                    None if head.bias is None else head.bias.detach().to(torch.bfloat16))}
    for i, layer in enumerate(layers):
        for group, (owner, names) in _GROUPS.items():
            mods = [getattr(getattr(layer, owner), name) for name in names]
            weight = torch.cat([m.weight.detach() for m in mods]).to(torch.bfloat16)
            biases = [m.bias for m in mods]
            bias = None
            if any(b is not None for b in biases):
                bias = torch.cat([b.detach() if b is not None else torch.zeros(m.out_features)
                                  for b, m in zip(biases, mods)]).to(torch.bfloat16)
            out[(i, group)] = (weight, bias)
    return out


def _dense(weights, h):
    """Fused fp32 projections of one vector (the fallback for groups without packed weights)."""
    import torch

    return torch.cat([torch.nn.functional.linear(h, w, b) for w, b in weights])


def _rms(x, weight, eps: float):
    import torch

    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate(x, cos, sin):
    """Rotary embedding (the transformers "rotate half" convention) of ``x`` (heads, n, hd); cos/sin (n, hd)."""
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
