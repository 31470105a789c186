"""The passages panel: every retrieved passage, best match first, its Markdown rendered safely, and inside it the
sentences that drove the reply highlighted.

Which sentences drove the reply (:func:`driving_sentences`): the attribution credits whole passages, not sentences,
so the panel reads it word by word: a reply word "belongs" to passage ``[n]`` by the credit passage ``[n]`` gave its
tokens (only words it made more likely count, content words only). A sentence of the passage scores the credit of the
reply's words it contains; the sentences within half of the best score are highlighted. A quoted reply
(:mod:`ui.origin`) marks the sentence it was quoted from. It is a reading aid built on the exact per-token credit, not
a sentence-level attribution (that would need the model to re-score the reply without each sentence).

Safety: the passage text goes through :func:`ui.markup.markdown` (raw HTML escaped); highlights are placed with
private-use marker characters before rendering and turned into ``<mark>`` only where the rendered HTML between two
markers is balanced (a sentence cut across a table cell or a link stays unmarked rather than breaking the markup).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html.parser import HTMLParser

from agent.attribution.explanation import Explanation
from retrieval.types import Hit
from ui.inspector import NO_EFFECT
from ui.markup import esc, markdown

#: One colour per passage number ([1] .. [8]); reply words are tinted with their top passage's colour.
PALETTE = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc", "#e5e7eb"]
#: A sentence is highlighted when it scores at least this share of the passage's best sentence.
KEEP = 0.5
_OPEN, _CLOSE = "\ue000", "\ue001"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: Sentence ends inside a line (the panel never lets a sentence cross a line or a table cell).
_SENTENCE = re.compile(r"(?:[^.!?|\n]|[.!?](?=[^\s|]))+(?:[.!?]+(?=\s|\||$)|(?=\||$))", re.MULTILINE)


def colour(index: int | None) -> str:
    return PALETTE[index % len(PALETTE)] if index is not None and index >= 0 else "transparent"


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (stripped of surrounding spaces and Markdown markers)."""
    spans = []
    for m in _SENTENCE.finditer(text):
        chunk = m.group(0)
        lead = len(chunk) - len(chunk.lstrip(" \t#>*-+0123456789."))
        body = chunk[lead:].rstrip()
        if len(words(body)) >= 3:
            spans.append((m.start() + lead, m.start() + lead + len(body)))
    return spans


def reply_word_credit(exp: Explanation, j: int) -> dict[str, float]:
    """Reply words (lower-cased) → the credit passage ``j`` gave them (summed over their tokens), only where it made
    the word more likely (above :data:`ui.inspector.NO_EFFECT`) and the word is a content word."""
    out: dict[str, float] = {}
    word, credit, content = "", 0.0, False

    def flush() -> None:
        if word and content and credit > NO_EFFECT:
            for w in words(word):
                out[w] = out.get(w, 0.0) + credit

    for tok in exp.tokens:
        starts = not tok.text[:1].isalnum()  # a space or punctuation starts a new word
        if starts:
            flush()
            word, credit, content = "", 0.0, False
        word += tok.text
        credit += tok.credit[j] if j < len(tok.credit) else 0.0
        content = content or tok.content
    flush()
    return out


def driving_sentences(text: str, exp: Explanation | None, j: int, quoted: str | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences of passage ``j``'s ``text`` that drove the reply (see the module docstring); with
    ``quoted``, the sentence the reply was quoted from."""
    spans = _sentences(text)
    if quoted:
        target = " ".join(re.sub(r"\s*\[\d+\]", "", quoted).split()).lower()
        found = [(a, b) for a, b in spans if " ".join(text[a:b].split()).lower() in target
                 or target in " ".join(text[a:b].split()).lower()]
        if found:
            return found
    if exp is None:
        return []
    credit = reply_word_credit(exp, j)
    scored = [(sum(credit.get(w, 0.0) for w in words(text[a:b])), (a, b)) for a, b in spans]
    best = max((s for s, _ in scored), default=0.0)
    return [span for s, span in scored if best > 0 and s >= KEEP * best]


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag not in ("br", "hr", "img"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.ok = False


def _balanced(fragment: str) -> bool:
    checker = _Balance()
    checker.feed(fragment)
    checker.close()
    return checker.ok and not checker.stack


def highlighted_markdown(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` rendered as safe Markdown with the ``spans`` wrapped in ``<mark class='mo-drove'>``."""
    clean = (text or "").replace(_OPEN, "").replace(_CLOSE, "")
    marked, pos = [], 0
    for a, b in sorted(spans):
        if a < pos:
            continue
        marked += [clean[pos:a], _OPEN, clean[a:b], _CLOSE]
        pos = b
    rendered = markdown("".join(marked) + clean[pos:])

    def mark(m: re.Match) -> str:
        inner = m.group(1)
        return f"<mark class='mo-drove'>{inner}</mark>" if _balanced(inner) else inner

    rendered = re.sub(f"{_OPEN}(.*?){_CLOSE}", mark, rendered, flags=re.DOTALL)
    return rendered.replace(_OPEN, "").replace(_CLOSE, "")


def _credit_words(credits: Sequence[float] | None, index: int) -> str:
    """A passage's share of the reply's positive credit, in words."""
    if credits is None or index >= len(credits):
        return ""
    positive = sum(c for c in credits if c > 0)
    if credits[index] <= 0 or positive <= 0:
        return " · did not support the reply"
    share = credits[index] / positive
    return f" · {'<1%' if share < 0.005 else f'{share:.0%}'} of the reply's support"


def passages_html(hits: Sequence[Hit], credits: Sequence[float] | None = None, *, exp: Explanation | None = None,
                  quoted_from: int | None = None, quoted: str | None = None) -> str:
    """The passages panel, best match first: ``[n]`` (the number the model and the citations use), title, match
    score, share of the reply's support (with an explanation), and the passage's Markdown rendered safely with the
    sentences that drove the reply highlighted. The passage the reply rests on most (else the best match) is open;
    the others open from their citation. ``credits``: each passage's total credit (default: the explanation's);
    ``quoted_from``/``quoted``: the reply was quoted from that passage."""
    if not hits:
        return "<div class='mo-passage'>No passages retrieved.</div>"
    if credits is None and exp is not None:
        credits = exp.passage_totals()
    order = sorted(range(len(hits)), key=lambda i: -hits[i].score)
    opened = order[0]
    if credits and max(credits) > 0:
        opened = max(range(len(credits)), key=lambda i: credits[i])
    parts = []
    for i in order:
        h = hits[i]
        spans = driving_sentences(h.passage.text, exp, i, quoted if quoted_from == i else None)
        note = ""
        if spans:
            what = "the sentence the reply quotes" if quoted_from == i and quoted else "the sentences that drove the reply"
            note = f"<div class='mo-dim mo-drove-note'>Highlighted: {what}.</div>"
        parts.append(
            f"<details class='mo-passage' id='mo-p-{i + 1}' style='border-left-color:{colour(i)}'"
            f"{' open' if i == opened else ''}><summary class='mo-head'>[{i + 1}] {esc(h.passage.title)}"
            f"<span class='mo-score'>match {h.score:.2f}{esc(_credit_words(credits, i))} · {esc(h.passage.id)}"
            f"</span></summary>{note}<div class='mo-body'>{highlighted_markdown(h.passage.text, spans)}</div></details>"
        )
    return "\n".join(parts)
