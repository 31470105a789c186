"""Greedy, streamed generation with a key/value cache (an own loop, so every step is visible).

Two backends choose the tokens (:func:`greedy_ids`): ``fast`` — the model's
:class:`~agent.generation.fastdecode.FastDecoder` (exact packed weights, one C call per step; the default, see
``Settings.decoder``) — and ``hf``, the transformers model step by step. Both compute the function of the fp32 model
that the attribution re-scores, so the explanation explains the model that wrote the reply.

:func:`stream_tokens` yields one :class:`Step` per generated token: the token id and the text it adds to the reply.
Byte-level tokenizers may split one character over several tokens; such a token adds ``""`` and the character
appears with the token that completes it, so the concatenated ``text`` of all steps is always the decoded reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One generated token: its id and the text it adds to the reply."""

    token_id: int
    text: str


def stop_token_ids(tokenizer, model) -> set[int]:
    """Token ids that end a reply: the tokenizer's EOS, the model's EOS ids and the chat end-of-turn token."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tok = tokenizer.convert_tokens_to_ids(special)
        if isinstance(tok, int) and tok != tokenizer.unk_token_id and tok is not None and tok >= 0:
            ids.add(tok)
    return ids


#: The attribute of a loaded transformers model that holds its :class:`~agent.generation.fastdecode.FastDecoder`
#: (set by :func:`agent.generation.loading.load_generator` when ``Settings.decoder`` is ``fast``).
FAST_DECODER_ATTR = "moments_fast_decoder"

#: The attribute of a loaded model naming its adapter, ``(directory or None, hash or None)``: where the learned
#: attention estimator's weights are found (:mod:`agent.attribution.estimator`).
ADAPTER_ATTR = "moments_adapter"

#: Decode backends: ``auto`` (the model's fast decoder when it has one, else ``hf``), ``fast``, ``hf``.
BACKENDS = ("auto", "fast", "hf")


def fast_decoder(model):
    """The :class:`~agent.generation.fastdecode.FastDecoder` attached to ``model``, or None."""
    return getattr(model, FAST_DECODER_ATTR, None)


def greedy_ids(model, input_ids: Sequence[int], max_new_tokens: int, backend: str = "auto") -> Iterator[int]:
    """Greedy token ids after ``input_ids``, one at a time, from the chosen backend (see :data:`BACKENDS`).

    ``hf`` is the transformers model step by step with its own cache (the reference); ``fast`` the lean decoder
    with exact packed weights, which computes the same function."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown decode backend {backend!r}; use one of {', '.join(BACKENDS)}")
    decoder = fast_decoder(model) if backend != "hf" else None
    if backend == "fast" and decoder is None:
        raise ValueError("this model has no fast decoder: load it with Settings(decoder='fast')")
    if decoder is not None:
        yield from decoder.greedy(input_ids, max_new_tokens)
        return
    import torch

    with torch.inference_mode():
        # logits_to_keep=1: only the last position's logits, never a (prompt_len, vocab) tensor.
        out = model(input_ids=torch.tensor([list(input_ids)]), use_cache=True, logits_to_keep=1)
        for step in range(max_new_tokens):
            token = int(out.logits[0, -1].argmax())  # logits: (1, 1, vocab)
            yield token
            if step + 1 < max_new_tokens:
                out = model(input_ids=torch.tensor([[token]]), cache=out.cache, use_cache=True)


def stream_tokens(model, tokenizer, input_ids: Sequence[int], max_new_tokens: int = 160,
                  stop_ids: set[int] | None = None, backend: str = "auto") -> Iterator[Step]:
    """Greedily decode after ``input_ids``, yielding each token as soon as it is chosen."""
    stop_ids = stop_token_ids(tokenizer, model) if stop_ids is None else stop_ids
    generated: list[int] = []
    held: list[Step] = []  # steps that may open a passage header; shown once the line turns out to be text
    shown = ""
    tokens = greedy_ids(model, input_ids, max_new_tokens, backend)
    try:
        for token in tokens:
            if token in stop_ids:
                break
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            if runaway(text):
                return  # held steps are dropped with the runaway token
            delta = ""
            if not text.endswith("\ufffd") and text.startswith(shown):
                delta, shown = text[len(shown):], text
            held.append(Step(token, delta))
            if not _PARTIAL_HEADER.search(text):
                yield from held
                held.clear()
    finally:
        tokens.close()
    yield from held


_PARTIAL_HEADER = re.compile(r"\n\s*(\[\d*\]?\s*)?$")
_HEADER = re.compile(r"\n\s*\[\d+\]\s*\S")


def runaway(text: str) -> bool:
    """True when the reply has left the answer: it starts copying a passage block (a new line opening with a
    ``[n]`` header, as in the prompt), repeats the same short line three times in a row, or completes a line of
    20 characters or more that it already wrote (a loop). The token that triggers it is dropped, so a reply never
    ends inside such a block's header."""
    if _HEADER.search(text):
        return True
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 3 and lines[-1] == lines[-2] == lines[-3]:
        return True
    completed = [line.strip() for line in text.split("\n")[:-1] if len(line.strip()) >= 20]
    return len(completed) != len(set(completed))
