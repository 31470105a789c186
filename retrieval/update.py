"""Incremental index builds: which knowledge-base files changed since the saved index, and what can be re-used.

Contract
--------
* :func:`scan` lists the KB's files (the order and ``doc_id`` prefixes of :func:`retrieval.loaders.load_documents`)
  with the sha256 of each file's bytes.
* :func:`plan` walks them against the previous index's per-file record (``meta["files"]``: path, sha256, base id,
  passage and document counts, in passage order). A file whose path, bytes and base id are unchanged keeps its
  passages, and the rows of their vectors in the previous index are named for re-use; any other file is loaded
  and chunked anew and its passages are to be embedded. Only changed files are parsed, so a malformed file still
  raises :class:`~retrieval.errors.KnowledgeBaseError` (naming it) before anything is written.
* Without a usable previous record (first build, other embedder or chunking, inconsistent counts) everything is
  loaded and embedded: one code path for full and incremental builds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.chunking import chunk_documents
from retrieval.loaders import kb_files, load_file
from retrieval.types import Passage


@dataclass(frozen=True)
class KbFile:
    """One knowledge-base file: where it is, its ``doc_id`` prefix and the sha256 of its bytes."""

    path: Path
    rel: str
    base_id: str
    sha256: str


@dataclass
class Plan:
    """What a build needs: every passage in order, and for each the previous index's vector row (or None)."""

    passages: list[Passage] = field(default_factory=list)
    reuse: list[int | None] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    n_documents: int = 0

    @property
    def to_embed(self) -> list[int]:
        """Positions (in :attr:`passages`) of the passages that must be embedded."""
        return [i for i, row in enumerate(self.reuse) if row is None]


def scan(kb_path: Path) -> list[KbFile]:
    """The KB's files with their base ids and content hashes (``KnowledgeBaseError`` when there is none)."""
    kb_path = Path(kb_path)
    root = kb_path if kb_path.is_dir() else kb_path.parent
    out = []
    for p, base_id in kb_files(kb_path):
        out.append(KbFile(p, p.relative_to(root).as_posix(), base_id, hashlib.sha256(p.read_bytes()).hexdigest()))
    return out


def _previous_ranges(old_passages: Sequence[Passage], old_files: Sequence[dict] | None) -> dict[str, tuple[dict, int]]:
    """Each previous file's record and the row of its first passage (empty when the record does not add up)."""
    ranges, offset = {}, 0
    for record in old_files or []:
        ranges[record["path"]] = (record, offset)
        offset += int(record["passages"])
    return ranges if offset == len(old_passages) else {}


def plan(
    kb_path: Path,
    chunk_tokens: int,
    count_tokens: Callable[[str], int],
    old_passages: Sequence[Passage] = (),
    old_files: Sequence[dict] | None = None,
) -> Plan:
    """The passages of the KB at ``kb_path``, re-using the unchanged files' passages of the previous index."""
    ranges = _previous_ranges(old_passages, old_files)
    out = Plan()
    for f in scan(kb_path):
        record, start = ranges.get(f.rel, ({}, 0))
        if record.get("sha256") == f.sha256 and record.get("base_id") == f.base_id:
            n, n_docs = int(record["passages"]), int(record.get("documents", 0))
            out.passages.extend(old_passages[start : start + n])
            out.reuse.extend(range(start, start + n))
        else:
            docs = load_file(f.path, base_id=f.base_id)
            passages = chunk_documents(docs, chunk_tokens, count_tokens)
            n, n_docs = len(passages), len(docs)
            out.passages.extend(passages)
            out.reuse.extend([None] * n)
        out.n_documents += n_docs
        out.files.append({"path": f.rel, "sha256": f.sha256, "base_id": f.base_id, "passages": n, "documents": n_docs})
    return out
