"""A whole decode step in one C call: :func:`decode_layers` of :mod:`agent.generation.kernels` over all layers.

At 135M parameters the torch version of a step (:meth:`agent.generation.fastdecode.FastDecoder._step`) spends
about as long in ~25 small torch calls per layer as in the weight reads; this runs the same arithmetic (RMSNorm,
packed projections + LoRA side path, rotary embedding, attention over the cache, SiLU MLP) in C, float32
throughout. Used when every projection of every layer is packed; the final norm and the head stay in Python.
"""

from __future__ import annotations

import ctypes

_F = ctypes.POINTER(ctypes.c_float)


class _Proj(ctypes.Structure):
    _fields_ = [("q", ctypes.c_void_p), ("s", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("down", ctypes.c_void_p), ("up", ctypes.c_void_p), ("n", ctypes.c_int), ("k", ctypes.c_int),
                ("r", ctypes.c_int)]


class _Layer(ctypes.Structure):
    _fields_ = [("norm_in", ctypes.c_void_p), ("norm_post", ctypes.c_void_p), ("qkv", _Proj), ("o", _Proj),
                ("gate_up", _Proj), ("down", _Proj), ("keys", ctypes.c_void_p), ("values", ctypes.c_void_p)]


class _Dims(ctypes.Structure):
    _fields_ = [("n_layers", ctypes.c_int), ("hidden", ctypes.c_int), ("n_heads", ctypes.c_int),
                ("n_kv", ctypes.c_int), ("hd", ctypes.c_int), ("inter", ctypes.c_int), ("total", ctypes.c_int),
                ("eps", ctypes.c_float), ("scale", ctypes.c_float)]


def _proj(lin) -> _Proj:
    lora = lin.lora
    return _Proj(lin.q.data_ptr(), lin.scales.data_ptr(), lin.bias.data_ptr() if lin.bias is not None else None,
                 lora.down.data_ptr() if lora else None, lora.up.data_ptr() if lora else None, lin.n, lin.k,
                 lora.down.shape[0] if lora else 0)


class CStep:
    """The C decode step for one :class:`~agent.generation.fastdecode.FastDecoder` and one set of caches."""

    def __init__(self, lib, dec, caches, total: int) -> None:
        import torch

        self.lib = lib
        self.dims = _Dims(len(dec.layers), dec.embed.shape[1], dec.n_heads, dec.n_kv, dec.head_dim, dec.inter,
                          total, dec.eps, dec.head_dim ** -0.5)
        layers = (_Layer * len(dec.layers))()
        max_r = 0
        for i, (layer, (keys, values)) in enumerate(zip(dec.layers, caches)):
            groups = [dec.packed[(i, g)] for g in ("qkv", "o", "gate_up", "down")]
            layers[i] = _Layer(layer.input_layernorm.weight.data_ptr(),
                               layer.post_attention_layernorm.weight.data_ptr(),
                               *[_proj(g) for g in groups], keys.data_ptr(), values.data_ptr())
            max_r = max([max_r] + [g.lora.down.shape[0] for g in groups if g.lora is not None])
        self.layers = layers
        d = self.dims
        n_qkv = (d.n_heads + 2 * d.n_kv) * d.hd
        self.scratch = torch.empty(2 * d.hidden + n_qkv + d.n_heads * d.hd + total + 2 * d.inter + max_r + 16)
        self.keep = (caches, [ln.weight for ln in (layer.input_layernorm for layer in dec.layers)])
        freqs = torch.arange(total, dtype=torch.float)[:, None] * dec.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)  # (total, hd)
        self.cos, self.sin = emb.cos().contiguous(), emb.sin().contiguous()

    def __call__(self, x, pos: int):
        """Run the residual stream ``x`` (hidden,) of the token at ``pos`` through every layer, in place."""
        self.lib.decode_layers(ctypes.addressof(self.dims), ctypes.addressof(self.layers), x.data_ptr(), pos,
                               self.cos[pos].data_ptr(), self.sin[pos].data_ptr(), self.scratch.data_ptr())
        return x
