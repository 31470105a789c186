"""Quoted answers: the reply is the help centre's own sentence that answers the question, cited.

Why
---
Measured side by side (``bench/results/answers.md``), the 135M generator copies the wrong sentence of a passage, or
its heading, even when the answering sentence is in passage [1]: the evidence focus (:mod:`agent.generation.focus`)
picks that sentence far more often than the generator does. In ``quote`` answer mode (``Settings.answer_mode``) the
reply is therefore the best sentence of the retrieved passages (picked by the answer selector,
:mod:`agent.generation.selector`, or by cosine alone with ``Settings.answer_selector`` = ``cosine``), with the ``[n]`` of
its passage (passage [1] when the evidence focus orders passages) before its final punctuation. Nothing is
paraphrased, so no fact can be garbled on the way. When the selector judges that even that sentence does not answer
the question (support below ``Settings.answer_threshold``, set on development data only), the agent hands over
instead of quoting something unrelated.

The reply is still explained by the language model, exactly as a generated one: it is tokenized with the
generator's tokenizer and re-scored under every passage subset (:mod:`agent.attribution`), which tells, word by word,
how much each passage raises the model's probability of the quoted text, whether a word is grounded or the model's
prior, and what the model would have said instead. The turn records ``answer_mode`` and the method that wrote the reply
(``answer_method``: ``quote``, or ``generate`` when there was nothing to quote) in its versions, so a reader knows the
words were quoted, not generated. A sentence that reads as an instruction to the assistant (an injection
in the knowledge base, :mod:`agent.generation.injection`) is never quoted.
"""

from __future__ import annotations

import re

from agent.generation.decoding import Step
from agent.generation.focus import Selection

_END = re.compile(r"[.!?]$")


def cite(sentence: str, n: int = 1) -> str:
    """``sentence`` with ``[n]`` before its final punctuation (after it when there is none)."""
    sentence = sentence.strip()
    m = _END.search(sentence)
    return f"{sentence[:m.start()]} [{n}]{sentence[m.start():]}" if m else f"{sentence} [{n}]"


def too_far(selection: Selection, threshold: float) -> bool:
    """True when there is a quote but its support (the selector's answerability probability, or the best cosine
    without a selector: :meth:`~agent.generation.focus.Focus.select`) is below ``threshold``: hand over rather than
    quote it (``Settings.answer_threshold``)."""
    return selection.support is not None and selection.support < threshold


def quote(selection: Selection) -> str | None:
    """The selected sentence, cited with the ``[n]`` of its passage; None when no passage has a candidate sentence
    (then the caller generates)."""
    return cite(selection.quote, selection.cited) if selection.quote else None


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
