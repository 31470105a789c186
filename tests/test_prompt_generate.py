"""Prompt layout (exact passage spans, ablation) on the real tokenizer; streamed generation on the real model."""

from __future__ import annotations

import pytest

from agent.generation.decoding import runaway, stream_tokens
from agent.generation.prompt import Exchange, build_messages, build_prompt
from retrieval.types import Passage

PASSAGES = [
    Passage("a#0", "returns", "Return policy", "Return window\nYou can return most items within 30 days of delivery."),
    Passage("b#0", "shipping", "Shipping options", "Standard shipping costs $5.95 and is free over $50."),
    Passage("c#0", "gift", "Gift cards", "Gift cards never expire."),
]


def test_segments_match_joint_tokenization(tokenizer):
    tok = tokenizer
    layout = build_prompt(tok, "How long do I have to return an item?", PASSAGES,
                          [Exchange("hi", "Hello! How can I help?")])
    text = tok.apply_chat_template(build_messages("How long do I have to return an item?", PASSAGES,
                                                  [Exchange("hi", "Hello! How can I help?")]),
                                   tokenize=False, add_generation_prompt=True)
    assert layout.input_ids == tok.encode(text, add_special_tokens=False)
    for (start, end), p in zip(layout.passage_spans, PASSAGES):
        assert tok.decode(layout.input_ids[start:end]).strip() == f"{p.title}\n{p.text}".strip()


def test_ablation_removes_exactly_the_passage_tokens(tokenizer):
    layout = build_prompt(tokenizer, "q?", PASSAGES)
    spans = layout.passage_spans
    full = layout.input_ids
    for j, (start, end) in enumerate(spans):
        keep = [i for i in range(3) if i != j]
        assert layout.ids(keep) == full[:start] + full[end:]
    empty = tokenizer.decode(layout.ids([]))
    assert "[1]" in empty and "[2]" in empty and "[3]" in empty  # headers stay
    assert "30 days" not in empty and "$5.95" not in empty
    assert len(layout.ids([])) == len(full) - sum(e - s for s, e in spans)


def test_a_turn_keeps_the_prompt_layout_exactly(tokenizer):
    """A turn stores the prompt as token ids and passage spans; the layout rebuilt from them is the same layout."""
    from agent.turn import TurnResult

    layout = build_prompt(tokenizer, "How long do I have to return an item?", PASSAGES,
                          [Exchange("hi", "Hello! How can I help?")])
    turn = TurnResult(question="q")
    turn.use_prompt(layout)
    rebuilt = turn.layout
    assert rebuilt.segments == layout.segments and rebuilt.passage_segments == layout.passage_segments
    assert rebuilt.passage_spans == layout.passage_spans and turn.prompt_tokens == len(layout)
    assert all(rebuilt.ids(keep) == layout.ids(keep) for keep in ([], [0], [1, 2], None))


@pytest.mark.slow
def test_stream_concatenates_to_the_decoded_reply(generator):
    layout = build_prompt(generator.tokenizer, "How long do I have to return an item?", PASSAGES)
    steps = list(stream_tokens(generator.model, generator.tokenizer, layout.input_ids, max_new_tokens=24))
    assert 0 < len(steps) <= 24
    text = "".join(s.text for s in steps)
    assert text == generator.tokenizer.decode([s.token_id for s in steps], skip_special_tokens=True)
    assert "30" in text  # greedy answer reads the passage


@pytest.mark.parametrize("text,expected", [
    ("You can return it within 30 days.", False),
    ("You can return it within 30 days.\n\n[2] Shipping options", True),
    ("Yes.\nYes.\nYes.", True),
    ("See [1] for details.", False),
    ("Free shipping over $50 applies.\n\nFree shipping over $50 applies.\n", True),
    ("Free shipping over $50 applies.\n\nFree shipping over $50 applies", False),  # not completed yet
    ("Yes.\nNo.\nYes.\n", False),
])
def test_runaway_guard(text, expected):
    assert runaway(text) is expected
