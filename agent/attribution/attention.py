"""Attention baseline: how much attention each reply token pays to each passage's content (one forward pass).

Contract
--------
:func:`attention_scores` runs the full-context prompt once (cached), then the reply under teacher forcing with
attention weights returned, and gives per reply token ``t`` and passage ``j`` the attention mass that the query
predicting ``reply[t]`` puts on passage ``j``'s content tokens, averaged over all layers and heads (values in
``[0, 1]``). It also returns the full-context log-probabilities and top alternatives from the same pass. This is a
cheap *estimate* of influence, not a causal one: it is exposed as the ``attention`` method and never replaces the
exact Shapley default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def attention_scores(model, layout, reply_ids: Sequence[int], *, top_n: int = 5):
    """Returns ``(scores (T, k), logp (T,), top_logp (T, top_n), top_ids (T, top_n), forward_passes, tokens)``."""
    import torch

    reply = list(reply_ids)
    prompt = layout.input_ids
    spans = layout.passage_spans
    n_t, k = len(reply), layout.n_passages
    if n_t == 0:
        empty = np.zeros((0, top_n))
        return np.zeros((0, k)), np.zeros(0), empty, empty.astype(np.int64), 0, 0
    with torch.inference_mode():
        head = model.get_decoder()(input_ids=torch.tensor([prompt[:-1]]), use_cache=True)
        queries = torch.tensor([[prompt[-1]] + reply[:-1]])  # (1, T): the inputs that predict reply[0..T-1]
        out = model(input_ids=queries, cache=head.cache, use_cache=True, output_attentions=True)
        mean_attn = torch.stack([a[0].mean(dim=0) for a in out.attentions]).mean(dim=0)  # (T, prompt + T)
        scores = torch.stack([mean_attn[:, a:b].sum(dim=-1) for a, b in spans], dim=1) if k else \
            torch.zeros((n_t, 0))  # (T, k)
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)  # (T, vocab)
        picked = logp.gather(1, torch.tensor(reply)[:, None])[:, 0]  # (T,)
        top_logp, top_ids = logp.topk(top_n, dim=-1)  # (T, top_n) each
    return (scores.double().numpy(), picked.double().numpy(), top_logp.double().numpy(), top_ids.numpy(), 2,
            len(prompt) + n_t - 1)
