"""Evidence focus: cut each retrieved passage down to the sentences that answer the question, best passage first.

Why
---
A help-centre section holds five to ten facts; a customer asks for one. The 135M generator cannot reliably pick the
right sentence out of four sections (it stated the fact in about 1 reply in 5, although a passage shown held it
9 times in 10), but the embedder that retrieved the sections is trained on exactly this question→answer matching
and picks the answering sentence far more often. So, between retrieval and the prompt, every hit's passage is
replaced by a *focused* copy: its heading line (when it has one) and its ``keep`` best sentences for the question,
in their original order. Hits are re-ranked by their best sentence. The generator then copies and cites a sentence
it can see, the prompt is about three times shorter (faster first token, cheaper exact attribution), and the
passages stored and shown with the turn are exactly what the model read.

Contract
--------
* :func:`split_units` splits a passage body into answer units: sentences of prose, list items, and table rows
  (``| a | b |`` → ``a: b.``), Markdown emphasis dropped. A unit under three words is not a candidate.
* :class:`Focus` scores units by cosine similarity with the question (the retrieval embedder, normalised vectors),
  each unit embedded after its article title and section heading (``context``), caching vectors by text. :meth:`Focus.hits` returns new :class:`~retrieval.types.Hit`s whose passages keep
  ``id``/``doc_id``/``title``/``source`` and carry the focused text; ``score`` is the retrieval's (the cosine that
  abstention compares with its threshold), the order is by best unit and ``rank`` the new position (the ``[n]``).
* ``keep <= 0`` is the identity (full passages, retrieval order).
* With a :class:`~agent.generation.selector.Selector` (and the knowledge base's :class:`~agent.generation.selector.Idf`),
  units are scored by the selector instead of the cosine alone; :meth:`Focus.select` returns the focused hits, the
  best unit (the quote) and the support that hand-over compares with ``Settings.answer_threshold`` (the selector's
  answerability probability, or the best cosine without a selector), all from one scoring of the retrieved hits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from agent.generation.units import Unit, focused_text, split_units
from retrieval.types import Hit, Passage

__all__ = ["Focus", "Selection", "Unit", "focused_text", "split_units"]

#: Unit vectors cached by text (a knowledge base's sentences repeat across questions).
_CACHE_SIZE = 20_000
Embed = Callable[[Sequence[str]], np.ndarray]

if TYPE_CHECKING:  # pragma: no cover
    from agent.generation.selector import Idf, Selector


class Focus:
    """Scores answer units against a question and focuses hits (see module docstring)."""

    def __init__(self, embed: Embed, keep: int = 2, context: bool = True, selector: Selector | None = None,
                 idf: Idf | None = None) -> None:
        self.embed = embed
        self.keep = keep
        self.context = context
        self.selector = selector
        self.idf = idf
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the app answers several conversations from threads

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            known.update(zip(missing, self.embed(missing)))
            with self._lock:
                self._cache.update((t, known[t]) for t in missing)
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return np.stack([known[t] for t in texts])  # (len(texts), dim)

    def scored(self, question: str, hits: Sequence[Hit]) -> tuple[list[list[tuple[Unit, float]]], float | None]:
        """Per hit, its candidate units with their scores (the selector's, or the cosine without one), and the
        selector's answerability probability (None without a selector)."""
        if self.selector is None or self.idf is None:
            return self.unit_scores(question, [h.passage for h in hits]), None
        from agent.generation.selector import candidates

        cands = candidates(question, hits, self._vectors, self.idf)
        scores = self.selector.scores(cands)
        out: list[list[tuple[Unit, float]]] = [[] for _ in hits]
        for c, sc in zip(cands, scores):
            out[c.hit].append((c.unit, float(sc)))
        return out, (self.selector.answerable(cands, scores) if cands else 0.0)

    def select(self, question: str, hits: Sequence[Hit], sentences: int = 1, show: int | None = None) -> Selection:
        """Focus ``hits`` and pick the quote, from one scoring (see the module docstring): the best unit and, with
        ``sentences`` > 1, the next best units of the same passage, in reading order. With ``show``, only that many
        hits are shown (the best by their best unit; without focus, the quote's passage first, then retrieval
        order)."""
        from agent.generation.injection import looks_like_instruction

        scored, answerable = self.scored(question, hits)
        best: tuple[float, int, Unit] | None = None
        for n, units in enumerate(scored):
            for u, sc in units:
                if looks_like_instruction(u.text):  # never quote an injected instruction
                    continue
                if best is None or sc > best[0]:
                    best = (sc, n, u)
        order = self._focus(hits, scored) if self.keep > 0 else list(enumerate(hits))
        if best is not None and show is not None and (self.keep <= 0 or best[1] not in [n for n, _ in order[:show]]):
            # the quote's passage is shown first (without focus; or when an unquotable unit ranked another first)
            order = [o for o in order if o[0] == best[1]] + [o for o in order if o[0] != best[1]]
        order = order[:show] if show is not None else order
        shown = [replace(h, rank=i + 1) for i, (_, h) in enumerate(order)]
        positions = [n for n, _ in order]
        if best is None:
            return Selection(shown, None, None, positions=positions)
        picked = sorted(((u, sc) for u, sc in scored[best[1]] if not looks_like_instruction(u.text)),
                        key=lambda us: -us[1])[:max(1, sentences)]
        texts = [u.text for u, _ in sorted(picked, key=lambda us: us[0].order)]
        if len(texts) > 1:  # list items and table rows may lack a full stop: end each unit before the next
            texts = [t if t.endswith((".", "!", "?", ":")) else f"{t}." for t in texts[:-1]] + texts[-1:]
        return Selection(shown, " ".join(texts), best[0] if answerable is None else answerable,
                         1 + positions.index(best[1]), positions, best[2].text)

    def unit_scores(self, question: str, passages: Sequence[Passage]) -> list[list[tuple[Unit, float]]]:
        """Per passage, its candidate units (three words or more, headings excluded) with their cosine to the
        question."""
        all_units = [split_units(p.text) for p in passages]
        units = [[u for u in us if not u.heading and len(u.text.split()) >= 3] for us in all_units]
        flat = [self._scored_text(p, us, u) for p, us, cands in zip(passages, all_units, units) for u in cands]
        if not flat:
            return [[] for _ in passages]
        vecs = self._vectors([question, *flat])  # (1 + n_units, dim), normalised
        sims = vecs[1:] @ vecs[0]  # (n_units,)
        out, i = [], 0
        for us in units:
            out.append([(u, float(sims[i + n])) for n, u in enumerate(us)])
            i += len(us)
        return out

    def _scored_text(self, passage: Passage, units: Sequence[Unit], unit: Unit) -> str:
        """What is embedded for ``unit``: with ``context``, the article title and section heading first (a sentence
        such as "It can take up to 2 business days." says nothing of its topic alone), as retrieval embeds a
        passage with its title."""
        if not self.context:
            return unit.text
        head = next((u.text for u in units if u.heading), "")
        return f"{passage.title}. {head}: {unit.text}" if head else f"{passage.title}: {unit.text}"

    def focused(self, question: str, hits: Sequence[Hit]) -> list[tuple[int, Hit]]:
        """``(original position, focused hit)`` pairs, best unit first (see :meth:`hits`)."""
        if self.keep <= 0 or not hits:
            return list(enumerate(hits))
        return self._focus(hits, self.scored(question, hits)[0])

    def _focus(self, hits: Sequence[Hit], scored: list[list[tuple[Unit, float]]]) -> list[tuple[int, Hit]]:
        if self.keep <= 0 or not hits:
            return list(enumerate(hits))
        ranked: list[tuple[float, int, Hit]] = []
        for n, (hit, units) in enumerate(zip(hits, scored)):
            if not units:
                ranked.append((-np.inf, n, hit))
                continue
            best = sorted(units, key=lambda us: -us[1])[: self.keep]
            all_units = split_units(hit.passage.text)
            text = focused_text(all_units, {u.order for u, _ in best})
            ranked.append((best[0][1], n, replace(hit, passage=replace(hit.passage, text=text))))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return [(n, h) for _, n, h in ranked]

    def hits(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        """``hits`` with focused passages, best unit first and renumbered (``rank`` is the position shown, the
        ``[n]`` the model cites); identity when ``keep <= 0``."""
        if self.keep <= 0:
            return list(hits)
        return [replace(h, rank=i + 1) for i, (_, h) in enumerate(self.focused(question, hits))]


@dataclass(frozen=True)
class Selection:
    """What :meth:`Focus.select` found: the hits as shown (focused, best first, renumbered), the text of the best
    unit (the quote; None when no passage has a candidate sentence) and its support (see :meth:`Focus.select`)."""

    hits: list[Hit]
    quote: str | None
    support: float | None
    cited: int = 1  # the [n] of the passage holding the quote
    positions: list[int] | None = None  # each shown hit's position among the retrieved ones
    single: str | None = None  # the best unit alone (when the quote of several is longer than a reply may be)
