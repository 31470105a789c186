"""Exact packed weights for decoding: recover a GGUF model's 4-bit/8-bit blocks from its fp32 weights.

The preset models are converted from GGUF files, so each fp32 Linear weight is the dequantization of Q4_1 blocks
(32 weights along the input dimension: ``w = d * q + m``, ``q`` in 0..15, ``d`` and ``m`` float16) and the tied
embedding of Q8_0 blocks (``w = d * q``, ``q`` in -127..127). :func:`recover_q4_1` / :func:`recover_q8_0` find those
blocks and return them only when they reproduce the weight **bit for bit**; a weight that is not exactly such a
dequantization (another model, a merged LoRA) is never approximated — the caller keeps it in fp32.

A LoRA adapter is not merged into the packed base: :class:`PackedLinear` adds it as the low-rank side path
``B (A x)`` that the fp32 model has merged, so the packed layer computes the same function as the merged fp32 one
up to float rounding (checked by tests/test_fast_decoding.py).
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK = 32


def recover_q4_1(weight):
    """``(packed nibbles uint8 (n, k/2), (d, m) float32 (n, k/32, 2))`` when ``weight`` (n, k) is exactly a Q4_1
    dequantization, else None."""
    import torch

    n, k = weight.shape
    if k % BLOCK:
        return None
    w = weight.detach().float().reshape(n, k // BLOCK, BLOCK)  # (n, blocks, 32)
    m = w.amin(-1)  # q = 0 for the block minimum
    d = ((w.amax(-1) - m) / 15).half().float()  # q = 15 for the maximum; d is a float16 value
    safe = torch.where(d > 0, d, torch.ones_like(d))
    q = torch.where(d[..., None] > 0, ((w - m[..., None]) / safe[..., None]).round(), torch.zeros_like(w))
    q = q.clamp(0, 15)
    if not torch.equal(q * d[..., None] + m[..., None], w):
        return None
    q = q.to(torch.uint8)
    packed = (q[..., :16] | (q[..., 16:] << 4)).reshape(n, k // 2).contiguous()
    return packed, torch.stack([d, m], dim=-1).contiguous()


def recover_q8_0(weight):
    """``(q int8 (n, k), d float32 (n, k/32))`` when ``weight`` (n, k) is exactly a Q8_0 dequantization, else None."""
    import torch

    n, k = weight.shape
    if k % BLOCK:
        return None
    w = weight.detach().float().reshape(n, k // BLOCK, BLOCK)
    d = (w.abs().amax(-1) / 127).half().float()  # (n, blocks)
    safe = torch.where(d > 0, d, torch.ones_like(d))
    q = (w / safe[..., None]).round().clamp(-127, 127)
    if not torch.equal(q * d[..., None], w):
        return None
    return q.to(torch.int8).reshape(n, k).contiguous(), d.contiguous()


@dataclass
class LoraPart:
    """The unmerged low-rank update of one Linear: ``delta = up @ down`` (``up`` already times the LoRA scaling)."""

    down: object  # (r, k)
    up: object  # (n, r)


class PackedLinear:
    """``y = W x + b + up (down x)`` for one float32 vector ``x`` (k,), ``W`` in Q4_1 (or Q8_0) blocks.

    Several Linears reading the same input (q/k/v, gate/up) are fused into one: their rows are stacked.
    """

    def __init__(self, lib, kind: str, q, scales, n: int, k: int, bias=None, lora: LoraPart | None = None) -> None:
        self.lib, self.kind, self.q, self.scales, self.n, self.k = lib, kind, q, scales, n, k
        self.bias, self.lora = bias, lora
        self.fn = lib.q4_gemv if kind == "q4" else lib.q8_gemv

    def __call__(self, x):
        import torch

        x = x.contiguous()
        y = torch.empty(self.n, dtype=torch.float32)  # (n,)
        self.fn(self.q.data_ptr(), self.scales.data_ptr(), x.data_ptr(), y.data_ptr(), self.n, self.k)
        if self.bias is not None:
            y += self.bias
        if self.lora is not None:
            y += self.lora.up @ (self.lora.down @ x)  # (n, r) @ (r,)
        return y

    @property
    def nbytes(self) -> int:
        return self.q.numel() * self.q.element_size() + self.scales.numel() * 4


def linear_parts(module):
    """``(base weight, bias, LoraPart | None)`` of a Linear or of a peft LoRA Linear not yet merged; None when the
    module is something else (DoRA, several active adapters, merged)."""
    import torch

    base = getattr(module, "base_layer", None)
    if base is None:
        return (module.weight, module.bias, None) if isinstance(module, torch.nn.Linear) else None
    active = [a for a in getattr(module, "active_adapters", []) if a in module.lora_A]
    if getattr(module, "merged", False) or len(active) > 1 or any(module.use_dora.get(a) for a in active):
        return None
    if not active:
        return base.weight, base.bias, None
    name = active[0]
    down = module.lora_A[name].weight.detach().float()  # (r, k)
    up = module.lora_B[name].weight.detach().float() * float(module.scaling[name])  # (n, r)
    return base.weight, base.bias, LoraPart(down=down.contiguous(), up=up.contiguous())


def pack_group(lib, modules) -> PackedLinear | None:
    """One fused :class:`PackedLinear` over Linears that read the same input; None unless every base weight is an
    exact Q4_1 dequantization."""
    import torch

    parts = [linear_parts(m) for m in modules]
    if any(p is None for p in parts):
        return None
    packed = [recover_q4_1(w) for w, _, _ in parts]
    if any(p is None for p in packed):
        return None
    rows = [w.shape[0] for w, _, _ in parts]
    k = parts[0][0].shape[1]
    bias = None
    if any(b is not None for _, b, _ in parts):
        bias = torch.cat([b.detach().float() if b is not None else torch.zeros(r) for (_, b, _), r in zip(parts, rows)])
    lora = None
    if any(lo is not None for _, _, lo in parts):
        downs = [lo.down if lo is not None else torch.zeros(0, k) for _, _, lo in parts]
        up = torch.zeros(sum(rows), sum(d.shape[0] for d in downs))  # block-diagonal: each part its own rank
        r0 = c0 = 0
        for (_, _, lo), r, d in zip(parts, rows, downs):
            if lo is not None:
                up[r0:r0 + r, c0:c0 + d.shape[0]] = lo.up
            r0, c0 = r0 + r, c0 + d.shape[0]
        lora = LoraPart(down=torch.cat(downs).contiguous(), up=up)
    return PackedLinear(lib, "q4", torch.cat([p[0] for p in packed]).contiguous(),
                        torch.cat([p[1] for p in packed]).contiguous(), sum(rows), k, bias=bias, lora=lora)


def pack_head(lib, weight) -> PackedLinear | None:
    """The output projection (n_vocab, hidden) as exact Q8_0 (or Q4_1) blocks; None when it is neither."""
    q8 = recover_q8_0(weight)
    if q8 is not None:
        return PackedLinear(lib, "q8", q8[0], q8[1], weight.shape[0], weight.shape[1])
    q4 = recover_q4_1(weight)
    if q4 is not None:
        return PackedLinear(lib, "q4", q4[0], q4[1], weight.shape[0], weight.shape[1])
    return None
