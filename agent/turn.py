"""A finished turn: the one value that the pipeline produces, the store records and reads back, the API and the CLI
return as JSON, and the renderers draw.

Contract
--------
* :class:`TurnResult` holds the question, the answer and its status (``ok``, ``abstained`` or ``error``), the
  retrieved passages (:class:`~retrieval.types.Hit`, in prompt order), the prompt and reply token ids with each reply
  token's text, the token span of every passage in the prompt, timings, versions, the explanation and the subset
  table it was computed from (kept, so that a stored turn can be explained again without the model's 2^k passes).
* :meth:`TurnResult.to_dict` is its only JSON form (``moments ask --json``, the ``/ask`` endpoint). The store maps it
  to rows and back (:mod:`agent.store.turns`); nothing else re-describes a turn.
* ``conversation_id`` and ``turn_id`` are set once the turn is stored (:class:`agent.conversation.ConversationRunner`).
  ``stored`` says whether it was; when a store was asked to keep it and could not, ``not_stored`` says why (the
  answer is still given: the caller shows it together with that warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.attribution.explanation import Explanation
from agent.attribution.rescoring import SubsetScores
from agent.generation.prompt import PromptLayout
from agent.vocabulary import TurnStatus
from retrieval.types import Hit, best_score


@dataclass
class TurnResult:
    """Everything one turn produced (see the module docstring)."""

    question: str
    answer: str = ""
    status: TurnStatus = "ok"
    hits: list[Hit] = field(default_factory=list)
    #: the prompt the reply was generated from (empty when the turn abstained), and each passage's token span in it
    prompt_ids: list[int] = field(default_factory=list)
    passage_spans: list[tuple[int, int]] = field(default_factory=list)
    #: the reply: generated token ids (no stop token) and the text each one added (``"".join`` is the raw reply)
    token_ids: list[int] = field(default_factory=list)
    token_texts: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    explanation: Explanation | None = None
    #: log p of every reply token under the passage subsets the explanation scored (None when not explained)
    subsets: SubsetScores | None = field(default=None, repr=False)
    error: str | None = None
    conversation_id: str | None = None
    turn_id: int | None = None
    stored: bool = False
    not_stored: str | None = None

    @property
    def abstained(self) -> bool:
        return self.status == "abstained"

    @property
    def best_score(self) -> float:
        return best_score(self.hits)

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def layout(self) -> PromptLayout | None:
        """The prompt as a :class:`PromptLayout` (passage contents as separate segments), rebuilt from the ids and
        spans; None when there was no prompt."""
        if not self.prompt_ids:
            return None
        segments, pos = [], 0
        for start, end in self.passage_spans:
            segments += [self.prompt_ids[pos:start], self.prompt_ids[start:end]]
            pos = end
        segments.append(self.prompt_ids[pos:])
        return PromptLayout(segments=segments, passage_segments=list(range(1, 2 * len(self.passage_spans), 2)))

    def use_prompt(self, layout: PromptLayout) -> None:
        """Record the prompt the reply is generated from."""
        self.prompt_ids = list(layout.input_ids)
        self.passage_spans = [tuple(span) for span in layout.passage_spans]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``moments ask --json`` prints and the API returns)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "status": self.status,
            "abstained": self.abstained,
            "passages": [h.to_dict() for h in self.hits],
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
            "versions": self.versions,
            "prompt_tokens": self.prompt_tokens,
            "reply_tokens": len(self.token_ids),
            "explanation": self.explanation.to_dict() if self.explanation is not None else None,
            "conversation_id": self.conversation_id,
            "turn_id": self.turn_id,
            "stored": self.stored,
            "not_stored": self.not_stored,
        }
