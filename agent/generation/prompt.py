"""Prompt construction with exact passage token spans.

The prompt is the model's chat template applied to: a system message, the recent conversation history, and a final
user message holding the numbered passages and the question. It is tokenized *segment by segment* — literal template
text, then each passage's content as its own segment — so the token span of every passage is known exactly, and a
passage can be ablated (its content removed, its ``[j]`` header kept) without re-tokenizing anything else. Generation
and attribution both use :meth:`PromptLayout.ids`, so the full-context ids are identical in both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from retrieval.types import Passage

#: The prompt in force for adapters that do not name one (and for the base model). An adapter trained on another
#: prompt records it (``prompt_version`` in its ``moments.json``) and is always run with that one.
PROMPT_VERSION = "p2"

SYSTEM_PROMPTS = {
    # p1: sessions 1-3 (the v8 adapter was trained on it); question after the passages only.
    "p1": (
        "You are Moments, a friendly customer-service assistant. Answer the customer's question using only the "
        "numbered passages from the help centre. Answer briefly, in one to three sentences, and cite the passages "
        "you use like [1]. If the passages do not contain the answer, say that you don't know and offer to hand "
        "the customer to a colleague."
    ),
    # p2: the question is also put *before* the passages, so that a causal model reads them knowing what it looks
    # for (a small model cannot look back to re-read); the instruction asks for the fact in the passage's words.
    "p2": (
        "You are Moments, a customer-service assistant. Answer the customer's question from the numbered "
        "help-centre passages only: state the fact that answers it, in the passage's own words, and cite the "
        "passage like [1]. Be brief. If no passage answers the question, say that you don't know and offer to "
        "hand the customer to a colleague."
    ),
}
SYSTEM_PROMPT = SYSTEM_PROMPTS[PROMPT_VERSION]

_MARK = "\ue000{}\ue001"
_MARK_RE = re.compile("\ue000(\\d+)\ue001")


@dataclass(frozen=True)
class Exchange:
    """One earlier exchange of the conversation: the user's message and the assistant's reply."""

    user: str
    assistant: str


def passage_content(passage: Passage, version: str = PROMPT_VERSION) -> str:
    """The text of a passage as the model sees it after its ``[j]`` header (leading space included).

    From p2 on, Markdown emphasis (``**bold**``, ``__bold__``) is dropped: it carries no fact, costs tokens, and a
    model that copies a sentence should not copy the asterisks.
    """
    text = passage.text.strip()
    if version != "p1":
        text = text.replace("**", "").replace("__", "")
    return f" {passage.title}\n{text}"


@dataclass
class PromptLayout:
    """A tokenized prompt whose passage contents are separately addressable segments.

    ``segments[i]`` are token ids; ``passage_segments[j]`` is the index of passage ``j``'s content segment.
    """

    segments: list[list[int]]
    passage_segments: list[int]
    n_passages: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_passages = len(self.passage_segments)

    def ids(self, keep: Iterable[int] | None = None) -> list[int]:
        """Token ids of the prompt with only the passages in ``keep`` (all when None); headers always stay."""
        keep_set = set(range(self.n_passages)) if keep is None else set(keep)
        dropped = {seg for j, seg in enumerate(self.passage_segments) if j not in keep_set}
        return [tok for i, seg in enumerate(self.segments) if i not in dropped for tok in seg]

    @property
    def input_ids(self) -> list[int]:
        return self.ids()

    @property
    def passage_spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` token offsets of each passage's content in the full prompt."""
        spans, pos, by_segment = [], 0, {}
        for i, seg in enumerate(self.segments):
            by_segment[i] = (pos, pos + len(seg))
            pos += len(seg)
        for seg_index in self.passage_segments:
            spans.append(by_segment[seg_index])
        return spans

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)


def build_messages(question: str, passages: Sequence[Passage], history: Sequence[Exchange] = (),
                   system: str | None = None, contents: Sequence[str] | None = None,
                   version: str = PROMPT_VERSION) -> list[dict]:
    """Chat messages for a turn. Passage contents are ``contents`` (default: :func:`passage_content`)."""
    if version not in SYSTEM_PROMPTS:
        raise ValueError(f"unknown prompt version {version!r}; known: {', '.join(SYSTEM_PROMPTS)}")
    system = SYSTEM_PROMPTS[version] if system is None else system
    contents = [passage_content(p, version) for p in passages] if contents is None else list(contents)
    blocks = [f"[{j + 1}]{content}" for j, content in enumerate(contents)]
    body = "Passages:\n" + "\n\n".join(blocks) if blocks else "Passages: (none)"
    messages = [{"role": "system", "content": system}]
    for ex in history:
        if not ex.assistant.strip():  # a question known only for retrieval context (e.g. `ask --history`)
            continue
        messages.append({"role": "user", "content": ex.user})
        messages.append({"role": "assistant", "content": ex.assistant})
    lead = f"Question: {question.strip()}\n\n" if version != "p1" else ""
    messages.append({"role": "user", "content": f"{lead}{body}\n\nQuestion: {question.strip()}"})
    return messages


def build_prompt(tokenizer, question: str, passages: Sequence[Passage], history: Sequence[Exchange] = (),
                 system: str | None = None, version: str = PROMPT_VERSION) -> PromptLayout:
    """Apply the chat template and tokenize it segment by segment (see module docstring)."""
    markers = [_MARK.format(j) for j in range(len(passages))]
    messages = build_messages(question, passages, history, system, contents=markers, version=version)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    contents = [passage_content(p, version) for p in passages]
    segments: list[list[int]] = []
    passage_segments: list[int] = [-1] * len(passages)
    pos = 0
    for m in _MARK_RE.finditer(text):
        segments.append(_encode(tokenizer, text[pos:m.start()]))
        j = int(m.group(1))
        passage_segments[j] = len(segments)
        segments.append(_encode(tokenizer, contents[j]))
        pos = m.end()
    segments.append(_encode(tokenizer, text[pos:]))
    if -1 in passage_segments:
        raise ValueError("the chat template dropped a passage marker; this model's template is not supported")
    return PromptLayout(segments=segments, passage_segments=passage_segments)


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []
