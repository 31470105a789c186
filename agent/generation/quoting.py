"""Quoted answers: the reply is the help centre's own sentence that answers the question, cited.

Why
---
Measured side by side (``bench/results/answers.md``), the 135M generator copies the wrong sentence of a passage, or
its heading, even when the answering sentence is in passage [1]: the evidence focus (:mod:`agent.generation.focus`)
picks that sentence far more often than the generator does. In ``quote`` answer mode (``Settings.answer_mode``) the
reply is therefore the focus's best sentence of passage [1] (the passage holding the best sentence of all), with
``[1]`` before its final punctuation. Nothing is paraphrased, so no fact can be garbled on the way. When even that
sentence is far from the question (cosine below ``Settings.answer_threshold``, set on DSTC development data for at
3-4% false hand-overs there: ``python -m bench.focus_dev``), the agent hands over instead of quoting something unrelated.

The reply is still explained by the language model, exactly as a generated one: it is tokenized with the
generator's tokenizer and re-scored under every passage subset (:mod:`agent.attribution`), which tells, word by word,
how much each passage raises the model's probability of the quoted text, whether a word is grounded or the model's
prior, and what the model would have said instead. The turn records ``answer_mode`` in its versions, so a reader
knows the words were quoted, not generated. A sentence that reads as an instruction to the assistant (an injection
in the knowledge base, :mod:`agent.generation.injection`) is never quoted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.generation.decoding import Step
from agent.generation.focus import Focus
from agent.generation.injection import looks_like_instruction
from retrieval.types import Hit

_END = re.compile(r"[.!?]$")


def cite(sentence: str, n: int = 1) -> str:
    """``sentence`` with ``[n]`` before its final punctuation (after it when there is none)."""
    sentence = sentence.strip()
    m = _END.search(sentence)
    return f"{sentence[:m.start()]} [{n}]{sentence[m.start():]}" if m else f"{sentence} [{n}]"


def best_sentence(focus: Focus, question: str, hits: Sequence[Hit]) -> tuple[str, float] | None:
    """The best sentence of ``hits[0]`` (the focused passage holding the best sentence of all) and its cosine with
    the question; None when there is no candidate sentence."""
    if not hits:
        return None
    (units,) = focus.unit_scores(question, [hits[0].passage])
    units = [(u, score) for u, score in units if not looks_like_instruction(u.text)]  # never quote an injection
    if not units:
        return None
    unit, score = max(units, key=lambda us: us[1])
    return unit.text, score


def too_far(focus: Focus, question: str, hits: Sequence[Hit], threshold: float) -> bool:
    """True when the best sentence exists and its cosine with the question is below ``threshold``: hand over rather
    than quote it (``Settings.answer_threshold``)."""
    picked = best_sentence(focus, question, hits)
    return picked is not None and picked[1] < threshold


def quote(focus: Focus, question: str, hits: Sequence[Hit]) -> str | None:
    """The best sentence of ``hits[0]`` for ``question``, cited ``[1]``; None when that passage has no candidate
    sentence (then the caller generates)."""
    picked = best_sentence(focus, question, hits)
    return cite(picked[0], 1) if picked else None


def quote_steps(tokenizer, text: str) -> list[Step]:
    """``text`` as the steps a generator would have streamed: one per token, each with the text it adds (a token
    that only starts a multi-byte character adds ``""``), so that the steps' texts concatenate to ``text``."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    steps: list[Step] = []
    shown = ""
    for n, token in enumerate(ids):
        decoded = tokenizer.decode(ids[: n + 1], skip_special_tokens=True)
        delta = ""
        if not decoded.endswith("\ufffd") and decoded.startswith(shown):
            delta, shown = decoded[len(shown):], decoded
        steps.append(Step(token, delta))
    return steps
