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
from ui import inspector, render

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


def test_passage_markdown_is_formatted_after_escaping_and_ordered_by_score():
    text = "## Prices\n\n| Option | Cost |\n|---|---|\n| **Express** | $14.95 <script>x()</script> |\n\n" \
           "[click](javascript:alert(1)) <img src=x onerror=alert(1)>"
    hits = [Hit(Passage(id="a#0", doc_id="a", title="A", text="plain"), score=0.41, rank=1),
            Hit(Passage(id="b#0", doc_id="b", title="B <i>", text=text), score=0.83, rank=2)]
    html = render.passages_html(hits, credits=[0.5, 1.5])
    assert "<table>" in html and "<strong>Express</strong>" in html and "<h2>Prices</h2>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html and "<img" not in html and "<i>" not in html
    assert 'href="javascript' not in html  # an unsafe link stays text
    assert html.index("id='mo-p-2'") < html.index("id='mo-p-1'")  # best score first, numbers kept
    assert "75% of the reply" in html and "25% of the reply" in html  # credit in words, not nats


def test_inspector_speaks_in_probabilities_and_factors_never_nats():
    import math

    tokens = [_token(0, " 30", 0.61, [(" 30", 0.61), (" 14", 0.2)], math.log(0.61 / 0.04), "grounded", 1),
              _token(1, " days", 0.9, [], 0.01, "prior", None)]
    tokens[0].credit = [0.0, math.log(8.2)]
    html = render.explanation_html(_result(tokens))
    assert "With no passage the model gives this word 4.0%; with the passages, 61%." in html
    assert "raised it ×8.2" in html and "no real effect" in html and "nats" not in html
    assert "grounded in passage <a href='#mo-p-2' class='mo-cite'>[2]</a>" in html
    assert "from the model's prior" in html
    assert html.count("class='mo-insp'") == 2 and "id='mo-insp-0'" in html  # one panel per token, hidden
    assert "data-i='0' tabindex='0'" in html  # keyboard-selectable
    assert "Colour key" in html and html.count("class='mo-cell'") == 2 * 2  # heat map: tokens × passages
    assert "lowered it ÷2.0" == inspector.effect(-math.log(2.0))


def test_confidence_badge_levels_follow_the_settings(tmp_path):
    from tests.conftest import make_settings
    from ui.confidence import grade, level

    settings = make_settings(tmp_path, confidence_high=0.6, confidence_low=0.3)
    assert [level(c, settings) for c in (0.95, 0.6, 0.59, 0.3, 0.29, None)] == \
        ["high", "high", "check", "check", "low", "unknown"]
    low = _result([_token(0, " maybe", 0.4, [], 0.0, "prior", None)])
    low.explanation.confidence = 0.12
    low.explanation.sentences[0].grounded_share = 0.0
    g = grade(low, settings)
    assert g.level == "low" and g.offer_handover and "weakest sentence: “A <b>”" in g.warning
    html = render.explanation_html(low, settings)
    assert "data-level='low'" in html and "Low confidence · 0.12" in html and "A &lt;b&gt;" in html
    assert grade(low, make_settings(tmp_path, confidence_high=0.1, confidence_low=0.05)).level == "high"
    abstained = TurnResult(question="q", status="abstained")
    assert grade(abstained, settings).offer_handover and "data-level='abstained'" in render.explanation_html(abstained)


def test_a_citation_the_attribution_does_not_back_is_flagged():
    result = _result([_token(0, " Within", 0.9, [], 2.0, "grounded", 1)])
    sentence = result.explanation.sentences[0]
    sentence.model_cited = [0]  # the model wrote [1]; the attribution credits [2]
    html = render.explanation_html(result)
    assert "The model cites [1] here, but the attribution credits [2]." in html
    sentence.model_cited = [1]
    assert "mo-mismatch" not in render.explanation_html(result)
