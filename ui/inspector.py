"""The moment inspector and the heat map: one reply token (or all of them) explained in plain words.

Credit is stored in nats of log-probability; an operator reads it here as a factor ("raised it ×8.2", "lowered it
÷2.0") and as probabilities ("with no passage the model gives this word 4%; with the passages, 61%"), never as nats.
Everything is HTML built from escaped text (:func:`ui.markup.esc`); a token's panel is hidden until the token (or its
heat-map cell) is clicked or selected with the keyboard (the chat tab's script toggles ``hidden``).
"""

from __future__ import annotations

import math

from agent.attribution.explanation import Explanation, TokenAttribution
from ui.markup import esc

#: Credit (nats) at which a heat-map cell reaches full colour: ×e² ≈ 7.4 more (or less) likely.
FULL_SCALE = 2.0
#: Below this (nats, ≈ ×1.05), a passage made no real difference to a token.
NO_EFFECT = 0.05


def pct(p: float) -> str:
    """A probability as a percentage an operator reads at a glance (``61%``, ``0.4%``, ``<0.1%``)."""
    if p >= 0.095:
        return f"{p:.0%}"
    return f"{p * 100:.1f}%" if p >= 0.001 else "<0.1%"


def effect(credit: float) -> str:
    """A credit in nats as words: ``raised it ×8.2``, ``lowered it ÷2.0`` or ``no real effect``."""
    if abs(credit) < NO_EFFECT:
        return "no real effect"
    factor = math.exp(min(abs(credit), 30.0))
    size = "1,000+" if factor >= 1000 else f"{factor:,.0f}" if factor >= 100 else f"{factor:.1f}"
    return f"raised it ×{size}" if credit > 0 else f"lowered it ÷{size}"


def cell_colour(credit: float) -> str:
    """Heat-map colour of a credit: green raises the token, red lowers it, white is no effect."""
    alpha = min(1.0, abs(credit) / FULL_SCALE)
    rgb = "22,163,74" if credit > 0 else "220,38,38"
    return f"rgba({rgb},{alpha:.2f})"


def _credit_rows(tok: TokenAttribution, exp: Explanation) -> str:
    top = max((abs(c) for c in tok.credit), default=0.0) or 1.0
    rows = []
    for j, c in enumerate(tok.credit):
        title = exp.passages[j].title if j < len(exp.passages) else ""
        width = round(100 * abs(c) / top)
        rows.append(f"<div class='mo-credit'><a href='#mo-p-{j + 1}' class='mo-cite'>[{j + 1}]</a> "
                    f"<span class='mo-bar'><span style='width:{width}%;background:{cell_colour(c)}'></span></span> "
                    f"{esc(effect(c))} <span class='mo-dim'>{esc(title)}</span></div>")
    return "".join(rows)


def _alternatives(tok: TokenAttribution) -> str:
    # spaces shown as ␣: " be" (a new word) and "be" (glued to the last one) are different choices
    items = "".join(f"<li><code>{esc(a.replace(' ', '␣'))}</code> {pct(p)}</li>" for a, p in tok.alternatives[:5])
    return f"<div>Top choices here:</div><ol class='mo-alts'>{items}</ol>" if items else ""


def token_panel(tok: TokenAttribution, exp: Explanation) -> str:
    """The inspector panel of one token: probability, alternatives, grounded/prior, credit per passage."""
    grounded = tok.flag == "grounded"
    if grounded:
        source = (f"grounded in passage <a href='#mo-p-{tok.top_passage + 1}' class='mo-cite'>"
                  f"[{tok.top_passage + 1}]</a>" if tok.top_passage is not None else "grounded in the passages")
    else:
        source = "from the model's prior: the passages barely changed it"
    head = f"<code>{esc(tok.text)}</code> · probability {pct(tok.prob)} · {source}"
    lines = [f"<div class='mo-insp-head'>{head}</div>"]
    if tok.grounding is not None:
        without = tok.prob * math.exp(-max(min(tok.grounding, 30.0), -30.0))
        lines.append(f"<div>With no passage the model gives this word {pct(min(without, 1.0))}; with the passages, "
                     f"{pct(tok.prob)}.</div>")
    lines.append(_alternatives(tok))
    if tok.credit:
        how = "Shapley: each passage's fair share" if exp.estimator == "exact" else f"{exp.method} credit"
        lines.append(f"<div>What each passage did to this word ({esc(how)}):</div>{_credit_rows(tok, exp)}")
    return (f"<div class='mo-insp' id='mo-insp-{tok.index}' data-i='{tok.index}' hidden>"
            f"{''.join(lines)}</div>")


def inspector_html(exp: Explanation) -> str:
    """Every token's panel (hidden) and the prompt shown before a token is picked."""
    panels = "".join(token_panel(t, exp) for t in exp.tokens)
    return (f"<div class='mo-inspector' id='mo-inspector'><div class='mo-insp-hint'>Click any word of the reply "
            f"(or Tab to it and press Enter) to see why the model wrote it.</div>{panels}</div>")


def heat_key() -> str:
    """The colour key of the heat map, in words."""
    stops = [(-FULL_SCALE, "lowered ÷7+"), (-1.0, "÷2.7"), (0.0, "no effect"), (1.0, "×2.7"),
             (FULL_SCALE, "raised ×7+")]
    cells = "".join(f"<span class='mo-key-cell' style='background:{cell_colour(c)}'></span>"
                    f"<span class='mo-key-label'>{esc(label)}</span>" for c, label in stops)
    return f"<div class='mo-key'>Colour key: how a passage changed a word's probability — {cells}</div>"


def heatmap_html(exp: Explanation) -> str:
    """Tokens × passages: one row per passage, one cell per reply token, coloured by that passage's credit."""
    if not exp.tokens or not exp.passages:
        return ""
    rows = []
    for j, p in enumerate(exp.passages):
        cells = "".join(
            f"<span class='mo-cell' data-i='{t.index}' style='background:{cell_colour(t.credit[j])}' "
            f"title='{esc(t.text)}: {esc(effect(t.credit[j]))}'></span>" for t in exp.tokens if j < len(t.credit))
        rows.append(f"<div class='mo-heat-row'><a href='#mo-p-{j + 1}' class='mo-cite mo-heat-label' "
                    f"title='{esc(p.title)}'>[{j + 1}]</a>{cells}</div>")
    return (f"<details class='mo-heat' open><summary>Heat map: every word (columns) × every passage (rows)"
            f"</summary>{''.join(rows)}{heat_key()}</details>")
