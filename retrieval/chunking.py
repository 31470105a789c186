"""Chunking: documents → passages small enough for the embedder, cut at headings, paragraphs and sentences.

Contract
--------
``chunk_document(doc, max_tokens, count_tokens)`` splits a :class:`~retrieval.loaders.Document` into
:class:`~retrieval.types.Passage` values ``Passage(id=f"{doc_id}#{n}", doc_id, title, text, source, line)``
(``n`` from 0, ``line`` = the file line where the chunk starts):

* Sections start at Markdown headings (``##``, ``###``, … outside code fences); text before the first heading
  is a section without heading. A chunk never spans two sections, and its ``text`` starts with its section's
  heading text (``"Return window\\n..."``), so that every chunk says what it is about.
* Within a section, whole paragraphs (blank-line separated) are merged while they fit; a paragraph that is
  too long on its own is cut between sentences (and lines), a sentence that is too long on its own between
  words (a word too long on its own, between characters).
* "Fit" means ``count_tokens(embedding_text(passage)) <= max_tokens``, i.e. the text actually embedded, the
  document title included (when a title and heading alone leave less than a quarter of the budget, the body
  gets that quarter and the limit is exceeded by the title's excess; a warning is logged).

``embedding_text(passage)`` = ``title + "\\n" + text`` is what gets embedded: the title is kept with every
chunk. :data:`CHUNKING_VERSION` changes whenever the output for the same input changes (index versions
include it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from retrieval.loaders import Document
from retrieval.types import Passage

log = logging.getLogger(__name__)

#: Bump when chunk boundaries or texts change for the same input (it is part of the index version).
CHUNKING_VERSION = "1"

_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def embedding_text(passage: Passage) -> str:
    """The text embedded for ``passage``: its document title, a newline, then its text."""
    return f"{passage.title}\n{passage.text}"


def chunk_documents(
    docs: Iterable[Document], max_tokens: int, count_tokens: Callable[[str], int]
) -> list[Passage]:
    """Chunk every document (see the module docstring); passages keep the documents' order."""
    return [p for doc in docs for p in chunk_document(doc, max_tokens, count_tokens)]


def chunk_document(doc: Document, max_tokens: int, count_tokens: Callable[[str], int]) -> list[Passage]:
    """Split one document into passages of at most ``max_tokens`` embedded tokens."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens={max_tokens} is too small to hold a chunk; use 32 or more.")
    passages: list[Passage] = []
    for heading, heading_line, paragraphs in _sections(doc):
        prefix = f"{doc.title}\n{heading}\n" if heading else f"{doc.title}\n"
        budget = max_tokens - count_tokens(prefix)
        if budget < max_tokens // 4:
            log.warning(
                "%s: title and heading %r take most of the %d-token chunk budget; shorten them",
                doc.source, heading, max_tokens,
            )
            budget = max_tokens // 4
        for i, (body, line) in enumerate(_pack(paragraphs, budget, count_tokens)):
            text = f"{heading}\n{body}" if heading else body
            start = heading_line if (heading and i == 0) else line
            passages.append(Passage(f"{doc.doc_id}#{len(passages)}", doc.doc_id, doc.title, text, doc.source, start))
    if not passages:
        log.warning("%s: document %r has no text besides its title; it is not indexed", doc.source, doc.doc_id)
    return passages


# ------------------------------------------------------------------------------------------ structure


def _sections(doc: Document) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """``(heading, heading_line, [(paragraph, line), ...])`` per non-empty section, in order."""
    sections: list[tuple[str, int, list[tuple[str, int]]]] = []
    heading, heading_line = "", doc.line
    paragraphs: list[tuple[str, int]] = []
    current: list[str] = []
    current_line = doc.line
    in_fence = False

    def end_paragraph() -> None:
        if current:
            paragraphs.append(("\n".join(current).strip(), current_line))
            current.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            sections.append((heading, heading_line, list(paragraphs)))
            paragraphs.clear()

    for offset, raw in enumerate(doc.text.splitlines()):
        line_no = doc.line + offset
        if _FENCE.match(raw):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(raw.strip())
        if m:
            end_section()
            heading, heading_line = m.group(1).strip(), line_no
        elif not raw.strip() and not in_fence:
            end_paragraph()
        else:
            if not current:
                current_line = line_no
            current.append(raw.rstrip())
    end_section()
    return sections


@dataclass(frozen=True)
class _Unit:
    """A piece of a section that is never split further: its text, file line, and the separator before it."""

    text: str
    line: int
    sep: str  # "\n\n" before a new paragraph, "\n" before a new line, " " between sentences or words


def _units(paragraphs: list[tuple[str, int]], budget: int, count_tokens: Callable[[str], int]) -> list[_Unit]:
    """Whole paragraphs where they fit the budget, else their sentences (or words, or characters)."""
    units: list[_Unit] = []
    for para, line in paragraphs:
        if count_tokens(para) <= budget:
            units.append(_Unit(para, line, "\n\n"))
            continue
        sep = "\n\n"
        for k, text_line in enumerate(para.split("\n")):
            for sentence in _SENTENCE_END.split(text_line.strip()):
                if not sentence:
                    continue
                for piece in _fit(sentence, budget, count_tokens):
                    units.append(_Unit(piece, line + k, sep))
                    sep = " "
            sep = "\n"
    return units


def _fit(sentence: str, budget: int, count_tokens: Callable[[str], int]) -> list[str]:
    """``sentence`` itself if it fits, else greedy runs of its words (and of characters of a huge word)."""
    if count_tokens(sentence) <= budget:
        return [sentence]
    pieces: list[str] = []
    run: list[str] = []
    for word in sentence.split():
        if count_tokens(" ".join([*run, word])) <= budget:
            run.append(word)
            continue
        if run:
            pieces.append(" ".join(run))
            run = []
        if count_tokens(word) <= budget:
            run = [word]
        else:
            pieces.extend(_split_chars(word, budget, count_tokens))
    if run:
        pieces.append(" ".join(run))
    return pieces


def _split_chars(word: str, budget: int, count_tokens: Callable[[str], int]) -> list[str]:
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start + 1 and count_tokens(word[start:end]) > budget:
            end = start + max(1, (end - start) * 3 // 4)
        pieces.append(word[start:end])
        start = end
    return pieces


def _pack(
    paragraphs: list[tuple[str, int]], budget: int, count_tokens: Callable[[str], int]
) -> list[tuple[str, int]]:
    """Greedily merge a section's units into bodies of at most ``budget`` tokens: ``[(body, line)]``."""
    bodies: list[tuple[str, int]] = []
    body, line = "", 0
    for unit in _units(paragraphs, budget, count_tokens):
        if body and count_tokens(body + unit.sep + unit.text) <= budget:
            body += unit.sep + unit.text
            continue
        if body:
            bodies.append((body, line))
        body, line = unit.text, unit.line
    if body:
        bodies.append((body, line))
    return bodies
