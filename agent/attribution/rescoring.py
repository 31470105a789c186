"""Teacher-forced re-scoring of a fixed reply under passage ablations, sharing prompt prefixes through a trie.

Contract
--------
:func:`score_subsets` returns, for every requested subset ``S`` of the ``k`` passages (a bitmask: bit ``j`` set =
passage ``j``'s content kept, its ``[j+1]`` header always kept, exactly :meth:`PromptLayout.ids`), the log-probability
of every reply token under teacher forcing::

    logp[s, t] = log p(reply[t] | layout.ids(keep=S_s), reply[:t])

plus the top-``n`` next-token alternatives under the full context (when the full subset is requested).

How it is computed (exact, no approximation): the prompt is a chain of segments
``gap_0, content_0, gap_1, content_1, ..., content_{k-1}, gap_k`` where ``gap_j`` is the template text between passage
contents (``gap_k`` holds the question and the assistant header). A subset's prompt is the chain with some contents
left out, so subsets that agree on passages ``0..j-1`` share the prompt up to ``gap_j`` *token for token*, and causal
attention makes their key/value cache identical there. The subsets are therefore arranged as a trie over passage
inclusion (passage 0 first); each trie node that branches forwards its pending tokens once, and both branches
continue from its cache. Short pending runs (fewer than ``min_shared_tokens``, e.g. a lone ``"\\n\\n[3]"`` header)
are not worth a model call of their own and are passed down to the children instead. Nodes of one trie level are
batched (``batch_size`` rows; past caches left-padded, new tokens right-padded, both masked out; positions per row),
and only the reply positions of the leaves go through the LM head and the log-softmax. Before every forward pass a
background job gives the model to a waiting live turn (:func:`agent.generation.priority.checkpoint`).

:func:`score_plain` is the reference: one plain forward pass over ``prompt + reply`` (used by tests and benches).
:func:`pack_table` / :func:`unpack_table` keep a table compactly (float16, compressed) so that a stored turn can be
explained again (:func:`agent.attribution.reexplain`) without re-scoring.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

KV = list[tuple["object", "object"]]  # per layer (keys, values), each a tensor (1, n_kv_heads, length, head_dim)


@dataclass
class SubsetScores:
    """The result of re-scoring a reply under a list of passage subsets.

    ``masks[s]`` is subset ``s`` as a bitmask over passages; ``logp`` has shape ``(n_subsets, n_reply_tokens)``.
    ``top_ids``/``top_logp`` (shape ``(n_reply_tokens, top_n)``) are the best next tokens under the full context,
    present when the full subset was among ``masks``.
    """

    k: int
    masks: list[int]
    logp: np.ndarray
    top_ids: np.ndarray | None = None
    top_logp: np.ndarray | None = None
    forward_passes: int = 0
    tokens_rescored: int = 0
    padded_tokens: int = 0
    plain_tokens: int = 0
    seconds: float = 0.0
    index: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {m: i for i, m in enumerate(self.masks)}

    @property
    def full_mask(self) -> int:
        return (1 << self.k) - 1

    def row(self, mask: int) -> np.ndarray:
        """``logp`` of one subset, shape ``(n_reply_tokens,)``; ``KeyError`` when it was not scored."""
        return self.logp[self.index[mask]]

    def has(self, mask: int) -> bool:
        return mask in self.index


@dataclass
class _Node:
    """A trie node: the cache of a prompt prefix plus the tokens not yet forwarded after it."""

    kv: KV | None  # None: empty prefix
    length: int  # tokens held in ``kv`` (= position id of the next token)
    pending: list[int]
    members: list[int]  # indices into the (deduplicated) mask list of the subsets below this node


def chain(layout) -> tuple[list[list[int]], list[list[int]]]:
    """Split a :class:`~agent.generation.prompt.PromptLayout` into ``gaps`` (k + 1 token runs) and ``contents`` (k runs)."""
    segs, pseg = layout.segments, list(layout.passage_segments)
    if pseg != sorted(pseg):
        raise ValueError("passage segments are not in prompt order; rebuild the layout with agent.generation.prompt.build_prompt")
    gaps: list[list[int]] = []
    start = 0
    for s in pseg:
        gaps.append([t for seg in segs[start:s] for t in seg])
        start = s + 1
    gaps.append([t for seg in segs[start:] for t in seg])
    return gaps, [list(segs[s]) for s in pseg]


def score_subsets(model, layout, reply_ids: Sequence[int], masks: Sequence[int], *, batch_size: int = 4,
                  min_shared_tokens: int = 16, top_n: int = 5) -> SubsetScores:
    """Log-probabilities of ``reply_ids`` under each passage subset in ``masks`` (see module docstring)."""
    import torch

    started = time.perf_counter()
    k = layout.n_passages
    reply = [int(t) for t in reply_ids]
    uniq = list(dict.fromkeys(int(m) for m in masks))
    if any(m < 0 or m >> k for m in uniq):
        raise ValueError(f"subset masks must be bitmasks over k={k} passages (0 .. {(1 << k) - 1})")
    n_t = len(reply)
    result = SubsetScores(k=k, masks=uniq, logp=np.zeros((len(uniq), n_t), dtype=np.float64))
    if n_t == 0 or not uniq:
        return result
    gaps, contents = chain(layout)
    result.plain_tokens = sum(len(layout.ids(keep=_members(m, k))) + n_t - 1 for m in uniq)
    runner = _Runner(model, batch_size=batch_size, top_n=top_n)
    full = (1 << k) - 1

    with torch.inference_mode():
        nodes = [_Node(kv=None, length=0, pending=list(gaps[0]), members=list(range(len(uniq))))]
        for j in range(k):
            branching = [n for n in nodes if len(n.pending) >= min_shared_tokens and _branches(n, uniq, j)]
            runner.extend(branching)
            children: list[_Node] = []
            for n in nodes:
                inc = [s for s in n.members if uniq[s] >> j & 1]
                exc = [s for s in n.members if not uniq[s] >> j & 1]
                if inc:
                    children.append(_Node(n.kv, n.length, n.pending + contents[j] + gaps[j + 1], inc))
                if exc:
                    children.append(_Node(n.kv, n.length, n.pending + gaps[j + 1], exc))
            nodes = children
        for leaf, (logp, top) in zip(nodes, runner.score_leaves(nodes, reply, want_top=[uniq[n.members[0]] == full
                                                                                         for n in nodes])):
            (s,) = leaf.members
            result.logp[s] = logp
            if top is not None:
                result.top_logp, result.top_ids = top

    result.forward_passes = runner.calls
    result.tokens_rescored = runner.tokens
    result.padded_tokens = runner.padded
    result.seconds = time.perf_counter() - started
    log.debug("rescored %d subsets x %d tokens: %d passes, %d tokens (plain: %d) in %.2f s", len(uniq), n_t,
              result.forward_passes, result.tokens_rescored, result.plain_tokens, result.seconds)
    return result


def pack_table(table: SubsetScores) -> bytes:
    """The table as compact bytes for the store: masks, ``logp`` and the top alternatives' log-probabilities in
    float16 (|error| about 1e-3 relative), token ids in int32, in one compressed ``.npz``."""
    arrays = {"k": np.array([table.k]), "masks": np.array(table.masks, dtype=np.int64),
              "logp": table.logp.astype(np.float16),  # (n_subsets, n_reply_tokens)
              "counts": np.array([table.forward_passes, table.tokens_rescored, table.padded_tokens,
                                  table.plain_tokens], dtype=np.int64)}
    if table.top_ids is not None and table.top_logp is not None:
        arrays["top_ids"] = table.top_ids.astype(np.int32)  # (n_reply_tokens, top_n)
        arrays["top_logp"] = table.top_logp.astype(np.float16)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def unpack_table(data: bytes) -> SubsetScores:
    """The table :func:`pack_table` wrote (``logp`` back in float64; ``seconds`` is not kept)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        passes, rescored, padded, plain = (int(x) for x in z["counts"])
        has_top = "top_ids" in z.files
        return SubsetScores(k=int(z["k"][0]), masks=[int(m) for m in z["masks"]], logp=z["logp"].astype(np.float64),
                            top_ids=z["top_ids"].astype(np.int64) if has_top else None,
                            top_logp=z["top_logp"].astype(np.float64) if has_top else None, forward_passes=passes,
                            tokens_rescored=rescored, padded_tokens=padded, plain_tokens=plain)


def score_plain(model, prompt_ids: Sequence[int], reply_ids: Sequence[int]) -> np.ndarray:
    """Reference: ``log p(reply[t] | prompt, reply[:t])`` from one plain forward pass, shape ``(n_reply_tokens,)``."""
    import torch

    reply = list(reply_ids)
    if not reply:
        return np.zeros(0)
    ids = torch.tensor([list(prompt_ids) + reply[:-1]])  # (1, n_prompt + T - 1)
    with torch.inference_mode():
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=len(reply)).logits  # (1, T, vocab)
        logp = torch.log_softmax(logits[0].float(), dim=-1)  # (T, vocab)
        picked = logp.gather(1, torch.tensor(reply)[:, None])[:, 0]  # (T,)
    return picked.double().numpy()


def _members(mask: int, k: int) -> set[int]:
    return {j for j in range(k) if mask >> j & 1}


def _branches(node: _Node, masks: list[int], j: int) -> bool:
    """True when the subsets below ``node`` split on some passage ``>= j`` (the node has two or more leaves)."""
    first = masks[node.members[0]] >> j
    return any(masks[s] >> j != first for s in node.members[1:])


class _Runner:
    """Batched forward passes over trie nodes: extends node caches, or scores the reply at the leaves."""

    def __init__(self, model, *, batch_size: int, top_n: int) -> None:
        self.model = model
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.batch_size = max(1, int(batch_size))
        self.top_n = top_n
        self.calls = self.tokens = self.padded = 0

    def _batches(self, items: list) -> list[list]:
        order = sorted(items, key=lambda it: (len(it[0].pending), it[0].length))
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def extend(self, nodes: list[_Node]) -> None:
        """Forward each node's pending tokens once; afterwards its cache covers them and ``pending`` is empty."""
        for batch in self._batches([(n,) for n in nodes if n.pending]):
            group = [b[0] for b in batch]
            _, kv_rows = self._forward(group, [n.pending for n in group])
            for n, kv in zip(group, kv_rows):
                n.kv, n.length, n.pending = kv, n.length + len(n.pending), []

    def score_leaves(self, leaves: list[_Node], reply: list[int], want_top: list[bool]):
        """Per leaf: (logp of the reply tokens ``(T,)``, optional ``(top_logp, top_ids)`` each ``(T, top_n)``)."""
        import torch

        n_t = len(reply)
        out: list = [None] * len(leaves)
        items = [(leaf, i) for i, leaf in enumerate(leaves)]
        target = torch.tensor(reply)  # (T,)
        for batch in self._batches(items):
            group = [leaf for leaf, _ in batch]
            if any(not leaf.pending for leaf in group):
                raise RuntimeError("a trie leaf has no pending prompt tokens; cannot predict the first reply token")
            hidden, _ = self._forward(group, [leaf.pending + reply[:-1] for leaf in group], keep_cache=False)
            # the reply tokens are predicted from the last prompt token on: rows n_pending-1 .. n_pending+T-2
            starts = torch.tensor([len(leaf.pending) - 1 for leaf in group])  # (B,)
            rows = starts[:, None] + torch.arange(n_t)[None, :]  # (B, T)
            h = hidden.gather(1, rows[:, :, None].expand(-1, -1, hidden.shape[-1]))  # (B, T, hidden)
            logp = torch.log_softmax(self.head(h).float(), dim=-1)  # (B, T, vocab)
            picked = logp.gather(2, target[None, :, None].expand(len(group), -1, 1))[:, :, 0]  # (B, T)
            for r, (_, i) in enumerate(batch):
                top = None
                if want_top[i] and self.top_n > 0:
                    values, ids = logp[r].topk(self.top_n, dim=-1)  # (T, top_n) each
                    top = (values.double().numpy(), ids.numpy())
                out[i] = (picked[r].double().numpy(), top)
            del logp
        return out

    def _forward(self, nodes: list[_Node], new_tokens: list[list[int]], keep_cache: bool = True):
        """One model call over ``nodes`` (each with its own past) and their new tokens.

        Returns the decoder's hidden states ``(B, n_max, hidden)`` and, when ``keep_cache``, each row's cache
        (past + new tokens, padding stripped).
        """
        import torch
        from transformers import DynamicCache

        from agent.generation.priority import checkpoint

        checkpoint()  # a background job lets a waiting answer have the model between its passes
        b = len(nodes)
        lengths = [n.length for n in nodes]
        n_new = [len(t) for t in new_tokens]
        l_max, n_max = max(lengths), max(n_new)
        ids = torch.zeros((b, n_max), dtype=torch.long)  # (B, n_max), right-padded
        for r, toks in enumerate(new_tokens):
            ids[r, :len(toks)] = torch.tensor(toks)
        positions = torch.tensor(lengths)[:, None] + torch.arange(n_max)[None, :]  # (B, n_max)
        ragged = len(set(lengths)) > 1 or len(set(n_new)) > 1
        mask = None
        if ragged:
            mask = torch.zeros((b, l_max + n_max), dtype=torch.long)  # (B, past + new), 1 = attend
            for r in range(b):
                mask[r, l_max - lengths[r]:l_max + n_new[r]] = 1
        cache = DynamicCache()
        if l_max > 0:
            cache = DynamicCache(_stack_past([n.kv for n in nodes], lengths, l_max))
        out = self.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        self.calls += 1
        self.tokens += sum(n_new)
        self.padded += b * n_max - sum(n_new)
        rows: list[KV] = []
        if keep_cache:
            layers = [(layer.keys, layer.values) for layer in out.cache.layers]  # each (B, kv_heads, past+new, d)
            for r in range(b):
                lo, hi = l_max - lengths[r], l_max + n_new[r]
                rows.append([(k_[r:r + 1, :, lo:hi].clone(), v_[r:r + 1, :, lo:hi].clone()) for k_, v_ in layers])
        return out.last_hidden_state, rows  # (B, n_max, hidden)


def _stack_past(kvs: list[KV | None], lengths: list[int], l_max: int) -> KV:
    """Left-pad each row's per-layer cache to ``l_max`` and stack the rows: per layer ``(B, kv_heads, l_max, d)``."""
    reference = next(kv for kv in kvs if kv is not None)
    stacked: KV = []
    for layer in range(len(reference)):
        k0, v0 = reference[layer]
        shape = (len(kvs), k0.shape[1], l_max, k0.shape[3])
        if all(kv is kvs[0] for kv in kvs):  # one shared parent: no padding, no copy per row
            stacked.append((k0.expand(shape), v0.expand(shape)))
            continue
        keys = k0.new_zeros(shape)  # (B, kv_heads, l_max, head_dim)
        values = v0.new_zeros(shape)
        for r, kv in enumerate(kvs):
            if kv is not None and lengths[r]:
                keys[r, :, l_max - lengths[r]:] = kv[layer][0][0]
                values[r, :, l_max - lengths[r]:] = kv[layer][1][0]
        stacked.append((keys, values))
    return stacked
