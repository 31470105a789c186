"""HTML rendering: everything from users, passages and the model is escaped; explanations render per token."""

from __future__ import annotations

from pathlib import Path

from agent.attribution.explanation import (
    Explanation,
    PassageCredit,
    SentenceCitation,
    TokenAttribution,
)
from agent.turn import TurnResult
from retrieval.types import Hit, Passage
from ui import render

KB = Path(__file__).resolve().parent.parent / "data" / "kb"


def test_passage_with_script_is_escaped():
    text = (KB / "security-tips.md").read_text()
    assert "<script>alert('x')</script>" in text
    html = render.passages_html([Hit(Passage(id="security-tips#1", doc_id="security-tips",
                                             title="Security <b>tips</b>", text=text), score=0.5, rank=1)])
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>tips</b>" not in html


def _token(index: int, text: str, prob: float, alternatives, grounding: float, flag: str, top) -> TokenAttribution:
    return TokenAttribution(index=index, text=text, token_id=index, logprob=0.0, prob=prob, alternatives=alternatives,
                            credit=[0.0, 0.0], shapley=None, loo=None, grounding=grounding, flag=flag,
                            top_passage=top, content=True)


def _result(tokens: list[TokenAttribution]) -> TurnResult:
    passages = [PassageCredit(index=j, id=f"p#{j}", doc_id="p", title="P", score=None, credit=c, grounded_tokens=0)
                for j, c in enumerate((0.1, 2.0))]
    explanation = Explanation(
        method="shapley", estimator="exact", k=2, reply="".join(t.text for t in tokens), tokens=tokens,
        passages=passages, sentences=[SentenceCitation(text="A <b>", start=0, end=5, token_start=0, token_end=1,
                                                       scores=[0.0, 1.0], cited=[1], model_cited=[],
                                                       grounded_share=None)],
        confidence=0.8, grounded_share=0.5, top_doc_id="p", forward_passes=5, tokens_rescored=0, plain_tokens=0,
        seconds=1.0, notes=["<i>note</i>"])
    return TurnResult(question="q", answer=explanation.reply, explanation=explanation)


def test_explanation_tokens_are_escaped_and_flagged():
    tokens = [
        _token(0, "<img src=x onerror=alert(1)>", 0.9, [("<script>", 0.05)], 2.0, "grounded", 1),
        _token(1, " maybe", 0.4, [], 0.0, "prior", None),
    ]
    html = render.explanation_html(_result(tokens))
    assert "<img" not in html and "&lt;img" in html and "<script>" not in html and "<i>note</i>" not in html
    assert html.count("class='mo-tok") == 2
    assert "mo-tok mo-prior" in html  # the prior token is marked
    assert render.PALETTE[1] in html  # the grounded token is tinted with passage [2]'s colour
    assert "grounded in [2]" in html
    assert render.passage_credits(_result(tokens).explanation) == [0.1, 2.0]


def test_abstained_and_unexplained_replies():
    hit = Hit(Passage(id="x#0", doc_id="x", title="X", text="..."), score=0.2, rank=1)
    html = render.explanation_html(TurnResult(question="q", status="abstained", hits=[hit]))
    assert "Abstained" in html and "0.200" in html
    html = render.explanation_html(TurnResult(question="q", answer="<b>hi</b>"))
    assert "&lt;b&gt;hi&lt;/b&gt;" in html and "No explanation" in html
