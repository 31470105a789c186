"""Greedy, streamed generation with a key/value cache (an own loop, so every step is visible).

:func:`stream_tokens` yields one :class:`Step` per generated token: the token id and the text it adds to the reply.
Byte-level tokenizers may split one character over several tokens; such a token adds ``""`` and the character
appears with the token that completes it, so the concatenated ``text`` of all steps is always the decoded reply.
"""

from __future__ import annotations

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


def stream_tokens(model, tokenizer, input_ids: Sequence[int], max_new_tokens: int = 160,
                  stop_ids: set[int] | None = None) -> Iterator[Step]:
    """Greedily decode after ``input_ids``, yielding each token as soon as it is chosen."""
    import torch

    stop_ids = stop_token_ids(tokenizer, model) if stop_ids is None else stop_ids
    generated: list[int] = []
    shown = ""
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([list(input_ids)]), use_cache=True)
        for _ in range(max_new_tokens):
            token = int(out.logits[0, -1].argmax())  # logits: (1, seq, vocab)
            if token in stop_ids:
                return
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            delta = ""
            if not text.endswith("\ufffd") and text.startswith(shown):
                delta, shown = text[len(shown):], text
            yield Step(token, delta)
            out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
