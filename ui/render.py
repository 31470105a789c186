"""HTML rendering of passages and explanations for the Gradio UI.

Every piece of text that comes from a user, a passage or the model goes through :func:`ui.markup.esc` (passage
Markdown through :func:`ui.markup.markdown`, raw HTML off); the only markup in the output is the markup written here.
Functions take the typed values (:class:`~retrieval.types.Hit`, :class:`~agent.turn.TurnResult` with its
:class:`~agent.attribution.explanation.Explanation`); a stored turn is read back as the same :class:`TurnResult`
(:meth:`agent.store.Store.get_result`), so it renders exactly like a live one.

Anchors: passage ``[n]`` is the element ``#mo-p-n``; every citation ``[n]`` links to it. Reply tokens and heat-map
cells carry ``data-i`` (the token index); :data:`INSPECTOR_JS` shows the matching inspector panel ``#mo-insp-i``.
"""

from __future__ import annotations

from agent.attribution.explanation import (
    Explanation,
    SentenceCitation,
    TokenAttribution,
)
from agent.settings import Settings
from agent.turn import TurnResult
from ui import inspector
from ui.confidence import Grade, abstain_reason, citation_mismatch, grade
from ui.markup import esc
from ui.origin import method_html, origin, origin_html
from ui.passages import PALETTE, colour, passages_html

__all__ = ["CSS", "INSPECTOR_JS", "PALETTE", "badge_html", "colour", "error_html", "esc", "explanation_html",
           "passage_credits", "passages_html", "turn_passages_html"]

CSS = """
.mo-passage {border-left: 4px solid #ccc; padding: 4px 8px; margin: 6px 0; font-size: 0.9em;}
.mo-passage summary {cursor: pointer;}
.mo-passage .mo-head {font-weight: 600;}
.mo-passage .mo-score {color: #555; font-weight: 400; margin-left: 6px;}
.mo-passage .mo-body strong {font-size: inherit;}
.mo-passage .mo-body p {margin: 2px 0;}
.mo-passage .mo-body table {border-collapse: collapse; margin: 4px 0;}
.mo-passage .mo-body td, .mo-passage .mo-body th {border: 1px solid #ddd; padding: 2px 6px;}
.mo-passage .mo-body h1, .mo-passage .mo-body h2, .mo-passage .mo-body h3 {font-size: 1em; margin: 6px 0 2px;}
.mo-flash {outline: 3px solid #2563eb; outline-offset: 2px;}
.mo-reply {line-height: 1.9; font-size: 1em; white-space: pre-wrap;}
.mo-tok {border-radius: 3px; padding: 1px 0; cursor: pointer;}
.mo-tok:focus, .mo-tok.mo-picked {outline: 2px solid #1d4ed8;}
.mo-tok.mo-prior {text-decoration: underline dotted #b91c1c; text-underline-offset: 3px;}
.mo-legend {font-size: 0.85em; color: #444; margin-top: 6px;}
.mo-note {font-size: 0.85em; color: #92400e;}
.mo-error {color: #b91c1c; font-weight: 600;}
.mo-badge {display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 0.85em; font-weight: 600;}
.mo-badge.mo-high {background: #dcfce7; color: #166534;}
.mo-badge.mo-check {background: #fef9c3; color: #854d0e;}
.mo-badge.mo-low, .mo-badge.mo-abstained, .mo-badge.mo-error {background: #fee2e2; color: #991b1b;}
.mo-badge.mo-unknown {background: #f3f4f6; color: #374151;}
.mo-warn {color: #991b1b; font-size: 0.9em; margin: 4px 0;}
.mo-sent {font-size: 0.9em; margin: 2px 0;}
.mo-cite {text-decoration: none; border-radius: 3px; padding: 0 2px; font-size: 0.85em; color: #1e3a8a;}
.mo-mismatch {color: #b45309; font-size: 0.85em;}
.mo-origin {font-size: 0.85em; color: #1e3a8a; margin: 4px 0;}
.mo-method {font-size: 0.85em; color: #374151; margin: 4px 0;}
.mo-badge.mo-method-exact {background: #dbeafe; color: #1e40af;}
.mo-badge.mo-method-estimate {background: #ffedd5; color: #9a3412;}
mark.mo-drove {background: #fef08a; padding: 0 1px; border-radius: 2px;}
.mo-drove-note {font-size: 0.85em; margin: 2px 0;}
.mo-inspector {border: 1px solid #e5e7eb; border-radius: 6px; padding: 6px 8px; margin-top: 8px; font-size: 0.9em;}
.mo-insp-head {font-weight: 600; margin-bottom: 4px;}
.mo-alts {margin: 2px 0 4px 1.2em; padding: 0;}
.mo-credit {margin: 1px 0;}
.mo-bar {display: inline-block; width: 80px; height: 9px; background: #f3f4f6; vertical-align: middle;}
.mo-bar span {display: block; height: 9px;}
.mo-dim {color: #6b7280;}
.mo-heat {margin-top: 8px; font-size: 0.85em;}
.mo-heat-row {display: flex; align-items: center; gap: 1px; margin: 1px 0;}
.mo-heat-label {width: 2.2em; flex: none;}
.mo-cell {flex: 1 1 0; min-width: 2px; max-width: 10px; height: 14px; border: 1px solid #f3f4f6; cursor: pointer;}
.mo-key {margin-top: 4px;}
.mo-key-cell {display: inline-block; width: 14px; height: 10px; border: 1px solid #ddd; margin: 0 3px 0 8px;}
#mo-status .mo-error, #mo-status p {margin: 2px 0;}
"""

#: ``js_on_load`` of the explanation panel and of the review replay: clicking (or Enter/Space on) a token or heat-map
#: cell shows its inspector panel; clicking a citation ``[n]`` opens and scrolls to passage ``[n]``. Both look inside
#: the enclosing ``.mo-turn`` first (a replay holds several answers, each with its passages), then the page (the chat
#: tab's passages panel). Delegated on the component's root, so it survives every re-render. Builds no HTML: it only
#: toggles ``hidden``, ``open`` and classes.
INSPECTOR_JS = """
const scope = (node) => node.closest('.mo-turn') || element;
const pick = (root, i) => {
  root.querySelectorAll('.mo-insp').forEach(p => { p.hidden = p.dataset.i !== String(i); });
  root.querySelectorAll('.mo-tok').forEach(t => t.classList.toggle('mo-picked', t.dataset.i === String(i)));
  const hint = root.querySelector('.mo-insp-hint'); if (hint) hint.hidden = true;
};
const cite = (a) => {
  const id = a.getAttribute('href').slice(1);
  const target = scope(a).querySelector('#' + CSS.escape(id)) || document.getElementById(id);
  if (!target) return;
  for (let d = target; d; d = d.parentElement) { if (d.tagName === 'DETAILS') d.open = true; }
  target.scrollIntoView({block: 'nearest'});
  target.classList.add('mo-flash'); setTimeout(() => target.classList.remove('mo-flash'), 1500);
};
element.addEventListener('click', (e) => {
  const a = e.target.closest('a.mo-cite');
  if (a) { e.preventDefault(); cite(a); return; }
  const t = e.target.closest('.mo-tok, .mo-cell');
  if (t) pick(scope(t), t.dataset.i);
});
element.addEventListener('keydown', (e) => {
  const t = e.target.closest('.mo-tok');
  if (t && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); pick(scope(t), t.dataset.i); }
});
"""


def turn_passages_html(result: TurnResult) -> str:
    """The passages panel of a finished turn: credit from its explanation, the sentences that drove the reply (or
    the one it quotes) highlighted (see :mod:`ui.passages`)."""
    o = origin(result)
    return passages_html(result.hits, exp=result.explanation, quoted_from=o.passage if o.kind == "quoted" else None,
                         quoted=o.sentence or None)


def error_html(message: str) -> str:
    return f"<div class='mo-error'>{esc(message)}</div>"


def passage_credits(explanation: Explanation | None) -> list[float] | None:
    """Total attribution credit of each passage (in prompt order), or None without an explanation."""
    return None if explanation is None else explanation.passage_totals()


def badge_html(g: Grade) -> str:
    """The confidence badge (and its one-line warning, if any)."""
    value = "" if g.confidence is None else f" · {g.confidence:.2f}"
    badge = f"<span class='mo-badge mo-{g.level}' data-level='{g.level}'>{esc(g.label)}{value}</span>"
    return badge + (f"<div class='mo-warn'>⚠ {esc(g.warning)}</div>" if g.warning else "")


def _token_html(tok: TokenAttribution) -> str:
    top, prior = tok.top_passage, tok.flag == "prior"
    where = "model prior" if prior else f"grounded in [{top + 1}]" if top is not None else "grounded"
    style = f"background:{colour(top)}" if top is not None and not prior else ""
    cls = "mo-tok mo-prior" if prior else "mo-tok"
    return (f"<span class='{cls}' style='{style}' data-i='{tok.index}' tabindex='0' role='button' "
            f"title='{esc(f'{inspector.pct(tok.prob)} · {where}')}'>{esc(tok.text)}</span>")


def _cite(j: int) -> str:
    return f"<a class='mo-cite' href='#mo-p-{j + 1}' style='background:{colour(j)}'>[{j + 1}]</a>"


def _sentence_html(sent: SentenceCitation) -> str:
    mismatch = citation_mismatch(sent)
    flag = f" <span class='mo-mismatch'>⚠ {esc(mismatch)}</span>" if mismatch else ""
    return f"<div class='mo-sent'>{esc(sent.text)} {''.join(_cite(j) for j in sent.cited)}{flag}</div>"


def explanation_html(result: TurnResult, settings: Settings | None = None, pending: bool = False) -> str:
    """The reply explained: confidence badge and warning, whether it was quoted or written by the model, the reply
    with every token tinted by its top passage (dotted underline: model prior; click for the inspector), each
    sentence with the passages it rests on, the method that produced the explanation (``pending``: an estimate
    shown while the exact explanation is computed), the inspector panels and the heat map."""
    settings = settings or Settings()
    g = grade(result, settings)
    if result.abstained:
        return (f"{badge_html(Grade(g.level, None))}<div class='mo-note'>Abstained: "
                f"{esc(abstain_reason(result, settings))}, so Moments handed over instead of guessing.</div>")
    exp = result.explanation
    if exp is None:
        return (f"{badge_html(g)}{origin_html(result)}<div class='mo-reply'>{esc(result.answer)}</div>"
                "<div class='mo-legend'>No explanation was computed for this reply (turn on “Explain each "
                "reply”).</div>")
    spans = "".join(_token_html(tok) for tok in exp.tokens)
    sentences = "".join(_sentence_html(s) for s in exp.sentences)
    notes = "".join(f"<div class='mo-note'>{esc(n)}</div>" for n in exp.notes)
    legend = (f"<div class='mo-legend'>Colour = the passage that did most for the word; dotted underline = from "
              f"the model's prior. Grounded words {exp.grounded_share:.0%}.</div>")
    cited = f"<div class='mo-legend'><b>Sources by sentence:</b></div>{sentences}" if sentences else ""
    return (f"{badge_html(g)}{origin_html(result)}<div class='mo-reply'>{spans}</div>{cited}{legend}"
            f"{method_html(exp, pending)}{notes}{inspector.inspector_html(exp)}{inspector.heatmap_html(exp)}")
