"""The Explanation value type: JSON round-trip, matrix accessors, text rendering (no model)."""

from __future__ import annotations

import json

import pytest

from agent.attribution.explanation import (
    Explanation,
    PassageCredit,
    SentenceCitation,
    TokenAttribution,
)


def _token(i: int, text: str, credit: list[float], flag: str, top: int | None) -> TokenAttribution:
    return TokenAttribution(index=i, text=text, token_id=100 + i, logprob=-0.1, prob=0.905,
                            alternatives=[(text, 0.905), (" x", 0.05)], credit=credit, shapley=credit,
                            loo=[c / 2 for c in credit], grounding=sum(credit), flag=flag, top_passage=top,
                            content=text.strip().isalnum())


def _explanation() -> Explanation:
    tokens = [_token(0, "Within", [0.0, 0.1], "prior", None), _token(1, " 30", [3.0, 0.2], "grounded", 0),
              _token(2, " days", [2.0, 0.0], "grounded", 0), _token(3, ".", [0.0, 0.0], "prior", None)]
    return Explanation(
        method="shapley", estimator="exact", k=2, reply="Within 30 days.", tokens=tokens,
        passages=[PassageCredit(0, "a#0", "return-policy", "Return Policy", 0.7, 5.0, 2),
                  PassageCredit(1, "b#0", "gift-cards", "Gift Cards", None, 0.3, 0)],
        sentences=[SentenceCitation("Within 30 days.", 0, 15, 0, 4, [5.0, 0.3], [0], [], 0.67)],
        confidence=0.6, grounded_share=0.67, top_doc_id="return-policy", forward_passes=3, tokens_rescored=120,
        plain_tokens=400, seconds=1.25, notes=["a note"], options={"grounding_threshold": 1.0})


def test_round_trip_through_json():
    exp = _explanation()
    text = exp.to_json()
    assert Explanation.from_json(text) == exp
    assert Explanation.from_dict(json.loads(text)) == exp
    assert isinstance(Explanation.from_json(text).tokens[0].alternatives[0], tuple)


def test_matrices_and_summary():
    exp = _explanation()
    assert exp.matrix() == [[0.0, 0.1], [3.0, 0.2], [2.0, 0.0], [0.0, 0.0]]
    assert exp.matrix("loo")[1] == [1.5, 0.1]
    assert exp.passage_totals() == [5.0, 0.3]
    assert exp.summary() == {"confidence": 0.6, "grounded_share": 0.67, "top_doc_id": "return-policy",
                             "method": "shapley", "estimator": "exact", "k": 2}
    with pytest.raises(ValueError, match="unknown matrix"):
        exp.matrix("banzhaf")
    exp.tokens[0].shapley = None
    with pytest.raises(ValueError, match="no shapley values"):
        exp.matrix("shapley")


def test_render_text_marks_grounded_runs():
    exp = _explanation()
    text = exp.render_text()
    assert "Within ‹30 days›¹." in text
    assert "[1] Return Policy (return-policy) retrieval=0.70 credit=+5.00" in text
    assert "s1: [1]" in text and "note: a note" in text
    table = exp.render_text(per_token=True)
    assert "' 30'" in table and "grounded" in table
    assert exp.cited_reply() == "Within 30 days. [1]"
