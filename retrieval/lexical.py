"""Lexical (BM25) search over the knowledge base's passages, the exact-word half of hybrid retrieval.

Contract
--------
* :func:`tokenize` turns text into BM25 terms: lower-cased words, English stop words dropped, Snowball-stemmed
  (PyStemmer), and every code-like compound (``E-204``, ``NW-12345678``, ``192.168.50.1``, ``2.4``) kept whole
  as one more term besides its parts, so that an exact code matches exactly. Single letters are dropped, digits
  are kept. :func:`is_code` says which terms are codes.
* ``LexicalIndex.build(passages)`` indexes each passage's title and text with ``bm25s`` (Lucene BM25, k1 1.5,
  b 0.75). ``scores(text)`` returns the BM25 score of every passage for ``text`` (``(n_passages,)`` float32,
  zeros when no term of ``text`` is in the index); ``scores_terms(terms)`` does the same for ready-made terms,
  ``code_scores(text)`` for the code-like terms of ``text`` alone.
* ``save(folder)`` / ``LexicalIndex.load(folder, n_passages)`` persist it beside the dense index (files under
  ``folder``); a missing or damaged copy raises ``ValueError`` and is rebuilt by the caller.
* :data:`LEXICAL_VERSION` names the tokenizer and BM25 settings; it is part of the index version.

bm25s and PyStemmer are imported lazily.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.types import Passage

log = logging.getLogger(__name__)

#: Tokenizer + BM25 parameters; changing either changes every index's version.
LEXICAL_VERSION = "bm25-lucene-k1.5-b0.75-snowball-codes-1"
_WORD = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*")
_SPLIT = re.compile(r"[-./]")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """BM25 terms of ``text`` (see the module docstring)."""
    stop = _stopwords()
    terms: list[str] = []
    words: list[str] = []
    for match in _WORD.finditer(text.lower()):
        word = match.group()
        parts = _SPLIT.split(word)
        if len(parts) > 1 and any(ch.isdigit() for ch in word):
            terms.append(word)  # a code or number: matched whole, unstemmed
        words.extend(p for p in parts if p not in stop and (len(p) > 1 or p.isdigit()))
    return terms + list(_stemmer().stemWords(words))


def is_code(term: str) -> bool:
    """True for a code-like term: digits with a separator (``e-204``, ``2.4``) or mixed with 2+ letters (``tr7075``)."""
    if not any(ch.isdigit() for ch in term):
        return False
    return bool(_SPLIT.search(term)) or sum(ch.isalpha() for ch in term) >= 2


def passage_text(passage: Passage) -> str:
    """What BM25 reads of a passage: its title and its text."""
    return f"{passage.title}\n{passage.text}"


class LexicalIndex:
    """A BM25 index over passages (in passage order)."""

    def __init__(self, bm25: Any, n_passages: int) -> None:
        self.bm25 = bm25
        self.n_passages = n_passages

    @classmethod
    def build(cls, passages: Sequence[Passage]) -> LexicalIndex:
        """Tokenize and index ``passages`` (title + text)."""
        import bm25s

        bm25 = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        corpus = [tokenize(passage_text(p)) or [""] for p in passages]
        if corpus:
            bm25.index(corpus, show_progress=False)
        return cls(bm25, len(passages))

    def scores_terms(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for the query ``terms`` → ``(n_passages,)`` float32."""
        known = [t for t in terms if t in getattr(self.bm25, "vocab_dict", {})]
        if not known or self.n_passages == 0:
            return np.zeros(self.n_passages, dtype=np.float32)
        return np.asarray(self.bm25.get_scores(known), dtype=np.float32)

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every passage for ``text`` → ``(n_passages,)`` float32."""
        return self.scores_terms(tokenize(text))

    def code_scores(self, text: str) -> np.ndarray:
        """BM25 score of every passage for the code-like terms of ``text`` only (:func:`is_code`)."""
        return self.scores_terms([t for t in tokenize(text) if is_code(t)])

    def save(self, folder: Path) -> None:
        """Write the BM25 index into ``folder`` (created if needed)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.bm25.save(str(folder))

    @classmethod
    def load(cls, folder: Path, n_passages: int) -> LexicalIndex:
        """Read a saved BM25 index of ``n_passages`` passages (``ValueError`` if missing, damaged or of another size)."""
        import bm25s

        try:
            bm25 = bm25s.BM25.load(str(folder))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"no usable BM25 index in {folder}: {e}") from e
        if int(bm25.scores.get("num_docs", -1)) != n_passages:
            raise ValueError(f"the BM25 index in {folder} has {bm25.scores.get('num_docs')} documents, not {n_passages}")
        return cls(bm25, n_passages)
