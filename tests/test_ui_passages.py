"""The passages panel's highlights (the sentences that drove the reply), the quoted / generated line and the
explanation's method line: logic on hand-built values (the real pipeline's versions are covered in test_ui_browser)."""

from __future__ import annotations

import dataclasses

from agent.attribution.explanation import Explanation, PassageCredit, TokenAttribution
from agent.turn import TurnResult
from retrieval.types import Hit, Passage
from ui import render
from ui.origin import method_html, origin
from ui.passages import driving_sentences, highlighted_markdown, passages_html

RETURNS = ("Returns\n\nYou can return most items within 30 days of delivery. Gift cards cannot be returned. "
           "Refunds go to the original payment method within 5 business days.")
SHIPPING = "Express shipping costs $14.95 and takes 1-2 business days."


def _tok(i: int, text: str, credit: list[float], content: bool = True) -> TokenAttribution:
    return TokenAttribution(index=i, text=text, token_id=i, logprob=-0.1, prob=0.9, alternatives=[], credit=credit,
                            shapley=None, loo=None, grounding=sum(credit), flag="grounded", top_passage=0,
                            content=content)


def _result(answer: str, credits: list[list[float]], mode: str | None = "quote", estimator: str = "exact",
            method: str = "shapley") -> TurnResult:
    words = answer.split(" ")
    tokens = [_tok(i, (" " if i else "") + w, credits[i] if i < len(credits) else [0.0, 0.0], w.isalnum())
              for i, w in enumerate(words)]
    passages = [PassageCredit(index=j, id=f"d{j}#0", doc_id=f"d{j}", title=t, score=0.7, grounded_tokens=0,
                              credit=sum(max(0.0, t_.credit[j]) for t_ in tokens)) for j, t in
                enumerate(("Returns", "Shipping"))]
    exp = Explanation(method=method, estimator=estimator, k=2, reply=answer, tokens=tokens, passages=passages,
                      sentences=[], confidence=0.7, grounded_share=0.8, top_doc_id="d0", forward_passes=4,
                      tokens_rescored=0, plain_tokens=0, seconds=0.5)
    hits = [Hit(Passage(id="d0#0", doc_id="d0", title="Returns", text=RETURNS), score=0.71, rank=1),
            Hit(Passage(id="d1#0", doc_id="d1", title="Shipping", text=SHIPPING), score=0.52, rank=2)]
    versions = {"generation": {"answer_mode": mode}} if mode else {}
    return TurnResult(question="q", answer=answer, hits=hits, versions=versions, explanation=exp)


def test_the_sentence_holding_the_credited_words_is_highlighted():
    # "refunds ... payment" credited to passage [1]: the third sentence drove the reply, not the other two
    r = _result("Refunds go to your payment method", [[0.0, 0], [3.0, 0], [0.0, 0], [0.0, 0], [2.5, 0], [1.0, 0]],
                mode="generate")
    spans = driving_sentences(RETURNS, r.explanation, 0)
    assert [RETURNS[a:b] for a, b in spans] == ["Refunds go to the original payment method within 5 business days."]
    assert driving_sentences(SHIPPING, r.explanation, 1) == []  # passage [2] raised nothing
    html = render.turn_passages_html(r)
    assert html.count("<mark class='mo-drove'>") == 1 and "the sentences that drove the reply" in html


def test_a_quoted_reply_says_so_and_marks_the_quoted_sentence():
    r = _result("You can return most items within 30 days of delivery [1].", [[0.1, 0.0]] * 10)
    o = origin(r)
    assert (o.kind, o.passage) == ("quoted", 0)
    html = render.explanation_html(r)
    assert "data-origin='quoted'" in html and "Quoted word for word from passage" in html
    panel = render.turn_passages_html(r)
    assert "<mark class='mo-drove'>You can return most items within 30 days of delivery.</mark>" in panel
    assert "the sentence the reply quotes" in panel


def test_a_reply_not_found_in_the_passage_is_generated_even_in_quote_mode():
    r = _result("Most things come back in a month [1].", [[0.1, 0.0]] * 8)
    assert origin(r).kind == "generated"  # quote mode fell back to generation
    assert "no sentence of passage [1] could be quoted" in render.explanation_html(r)
    assert origin(_result("Gift cards cannot be returned.", [], mode="generate")).kind == "generated"
    assert origin(dataclasses.replace(_result("x", []), status="abstained")).kind == "none"


def test_the_method_line_names_exact_and_estimated_explanations():
    exact = _result("Refunds go", [[1.0, 0.0]] * 2).explanation
    assert "data-estimator='exact'" in method_html(exact) and "every subset of the 2 passages" in method_html(exact)
    estimate = _result("Refunds go", [[1.0, 0.0]] * 2, estimator="estimate", method="instant").explanation
    line = method_html(estimate, pending=True)
    assert "Estimate" in line and "instant (estimate)" in line and "exact explanation replaces it" in line
    assert "replaces it" not in method_html(estimate)  # nothing pending: no promise of more
    assert "data-method='instant'" in render.explanation_html(
        _result("Refunds go", [[1.0, 0.0]] * 2, estimator="estimate", method="instant"))


def test_highlights_never_break_or_unescape_the_markup():
    text = ("| Option | Cost |\n|---|---|\n| Express <script>x()</script> delivery here | $14.95 |\n\n"
            "Read [the guide](https://example.com/a) before you send it back. **Bold start of a** sentence here.")
    spans = [(0, len(text))]  # one span across everything: unbalanced, so it is dropped rather than mis-nested
    html = highlighted_markdown(text, spans)
    assert "<script>" not in html and "&lt;script&gt;" in html and "\ue000" not in html and "mo-drove" not in html
    cells = highlighted_markdown(text, [(text.index("Express"), text.index(" | $14"))])
    assert "<td><mark class='mo-drove'>Express &lt;script&gt;x()&lt;/script&gt; delivery here</mark></td>" in cells
    hits = [Hit(Passage(id="a#0", doc_id="a", title="A", text="x \ue000 y \ue001 z"), score=0.4, rank=1)]
    assert "\ue000" not in passages_html(hits)  # marker characters in a passage are dropped, never interpreted
