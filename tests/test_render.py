"""HTML rendering: everything from users, passages and the model is escaped; explanations render per token."""

from __future__ import annotations

from pathlib import Path

from ui import render

KB = Path(__file__).resolve().parent.parent / "data" / "kb"


def test_passage_with_script_is_escaped():
    text = (KB / "security-tips.md").read_text()
    assert "<script>alert('x')</script>" in text
    html = render.passages_html([{"id": "security-tips#1", "title": "Security <b>tips</b>", "text": text,
                                  "score": 0.5}])
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>tips</b>" not in html


def _result(tokens):
    return {"answer": "".join(t["text"] for t in tokens), "abstained": False, "passages": [],
            "explanation": {"method": "shapley", "tokens": tokens, "confidence": 0.8, "grounded_share": 0.5,
                            "forward_passes": 5, "seconds": 1.0, "notes": ["<i>note</i>"],
                            "sentences": [{"text": "A <b>", "cited": [1]}],
                            "passages": [{"credit": 0.1}, {"credit": 2.0}]}}


def test_explanation_tokens_are_escaped_and_flagged():
    tokens = [
        {"text": "<img src=x onerror=alert(1)>", "prob": 0.9, "alternatives": [["<script>", 0.05]],
         "grounding": 2.0, "flag": "grounded", "top_passage": 1},
        {"text": " maybe", "prob": 0.4, "alternatives": [], "grounding": 0.0, "flag": "prior", "top_passage": None},
    ]
    html = render.explanation_html(_result(tokens))
    assert "<img" not in html and "&lt;img" in html and "<script>" not in html and "<i>note</i>" not in html
    assert html.count("class='mo-tok") == 2
    assert "mo-tok mo-prior" in html  # the prior token is marked
    assert render.PALETTE[1] in html  # the grounded token is tinted with passage [2]'s colour
    assert "grounded in [2]" in html
    assert render.passage_credits(_result(tokens)) == [0.1, 2.0]


def test_abstained_and_unexplained_replies():
    html = render.explanation_html({"abstained": True, "passages": [{"score": 0.2}]})
    assert "Abstained" in html and "0.200" in html
    html = render.explanation_html({"abstained": False, "answer": "<b>hi</b>", "explanation": None})
    assert "&lt;b&gt;hi&lt;/b&gt;" in html and "No explanation" in html
