"""Evidence focus (agent.generation.focus): answer units, the real embedder's pick, focused training examples."""

from __future__ import annotations

import pytest

from agent.generation.focus import Focus, focused_text, split_units
from agent.training.data import Example
from agent.training.focused import focus_example
from retrieval.types import Hit, Passage

SECTION = """Refund timelines
Refunds go back to your original payment method. **Card, Apple Pay or Google Pay** refunds take 5-7 business days.
- PayPal refunds arrive within 2 business days.
- Gift card refunds arrive within 24 hours.

| Method | Time |
|---|---|
| Klarna | 4-6 business days |
"""


def test_units_split_sentences_bullets_and_table_rows() -> None:
    units = split_units(SECTION)
    assert units[0].heading and units[0].text == "Refund timelines"
    texts = [u.text for u in units[1:]]
    assert texts == ["Refunds go back to your original payment method.",
                     "Card, Apple Pay or Google Pay refunds take 5-7 business days.",
                     "PayPal refunds arrive within 2 business days.",
                     "Gift card refunds arrive within 24 hours.",
                     "Method: Klarna; Time: 4-6 business days."]
    assert [u.order for u in units] == list(range(len(units)))


def test_focused_text_keeps_heading_and_original_order() -> None:
    units = split_units(SECTION)
    assert focused_text(units, {4, 2}) == ("Refund timelines\nCard, Apple Pay or Google Pay refunds take 5-7 business "
                                            "days. Gift card refunds arrive within 24 hours.")


def _hits(*texts: str) -> list[Hit]:
    return [Hit(Passage(id=f"p{i}", doc_id=f"d{i}", title=f"T{i}", text=t), 0.5 + i / 100, i + 1)
            for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def focus(kb_index) -> Focus:
    from retrieval.embedder import embed

    return Focus(lambda texts: embed(kb_index.model, list(texts)), keep=1)


def test_real_embedder_picks_the_answering_sentence_and_reorders(focus: Focus) -> None:
    hits = _hits("Opening hours\nOur stores open at 9 am. Parking is free for two hours. We sell gift cards.",
                 SECTION)
    out = focus.hits("how long until my PayPal refund shows up?", hits)
    assert [h.passage.id for h in out] == ["p1", "p0"]  # the refund section first: it holds the best sentence
    assert out[0].passage.text == "Refund timelines\nPayPal refunds arrive within 2 business days."
    assert [h.score for h in out] == [hits[1].score, hits[0].score]  # retrieval scores (abstention) untouched
    assert [h.rank for h in out] == [1, 2]  # renumbered: rank is the [n] shown to the model
    assert out[0].passage.title == "T1" and out[0].passage.doc_id == "d1"


def test_keep_zero_is_the_identity(kb_index) -> None:
    from retrieval.embedder import embed

    hits = _hits("A b c d.", "E f g h.")
    assert Focus(lambda t: embed(kb_index.model, list(t)), keep=0).hits("anything", hits) == hits


def test_focused_training_example_moves_the_citation_or_is_dropped(focus: Focus) -> None:
    ps = [h.passage for h in _hits("Opening hours\nOur stores open at 9 am. Parking is free for two hours.", SECTION)]
    answer = "PayPal refunds arrive within 2 business days."
    ex = Example(source="facts", entity="x", question="how long until my PayPal refund shows up?",
                 answer="PayPal refunds arrive within 2 business days [2].", passages=ps, gold=[1], reference=answer)
    new = focus_example(ex, focus)
    assert new is not None and new.gold == [0] and new.answer == "PayPal refunds arrive within 2 business days [1]."
    cut = Example(source="facts", entity="x", question="how long until my PayPal refund shows up?",
                  answer="Gift card refunds arrive within 24 hours [2].", passages=ps, gold=[1],
                  reference="Gift card refunds arrive within 24 hours.")
    assert focus_example(cut, focus) is None  # keep=1 cut the answer from its passage: not a hand-over example


def test_a_list_item_ending_with_or_is_joined_with_the_next_one() -> None:
    """'- Click Unsubscribe ..., or' / '- Go to Account ...' is one answer: quoted alone, the first item ended in
    'or.' (seen in bench/results/answers.md, 2026-12-02)."""
    text = ("Unsubscribing\n- Click **Unsubscribe** at the bottom of any marketing email, or\n"
            "- Go to **Account > Communication preferences** and turn off marketing emails.\n- Call us.")
    texts = [u.text for u in split_units(text) if not u.heading]
    assert texts == [("Click Unsubscribe at the bottom of any marketing email, or go to Account > Communication "
                      "preferences and turn off marketing emails."), "Call us."]
    assert [u.text for u in split_units("Pay\n- Cards, and\n- PayPal.")][1] == "Cards, and PayPal."
