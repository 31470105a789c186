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
* One bad file never stops the build: a file that is malformed (:class:`~retrieval.errors.KnowledgeBaseError`,
  naming it and the line), over ``max_file_bytes``, or gone before it could be read (deleted during indexing) is
  skipped with a warning naming it and why (``Plan.skipped``, kept in the index's ``meta["skipped"]``); when the
  previous index had a good version of it, that version's passages stay in (the last good content), else it is
  left out. Only when no file at all can be indexed does the build fail, with every file's reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from retrieval.chunking import chunk_documents
from retrieval.errors import KnowledgeBaseError
from retrieval.loaders import Document, iter_kb_files, kb_files, load_file
from retrieval.types import Passage

log = logging.getLogger(__name__)
T = TypeVar("T", bound=Any)


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
    #: the files left out (or kept at their last good version): {"path", "reason", "kept_previous"}
    skipped: list[dict] = field(default_factory=list)

    @property
    def to_embed(self) -> list[int]:
        """Positions (in :attr:`passages`) of the passages that must be embedded."""
        return [i for i, row in enumerate(self.reuse) if row is None]


#: Default per-file size limit (``MOMENTS_KB_MAX_FILE_MB``): a 50 MB file would take over an hour to embed here.
MAX_FILE_BYTES = 5 * 1024 * 1024


def present_files(kb_path: Path) -> Iterator[tuple[Path, bytes]]:
    """The KB's files (as :func:`retrieval.loaders.iter_kb_files` lists them) with their bytes, leaving out (with
    a warning) any that vanished between the listing and the reading."""
    for p in iter_kb_files(kb_path):
        try:
            yield p, p.read_bytes()
        except FileNotFoundError:
            log.warning("%s vanished while the knowledge base was being read (deleted or renamed); left out", p)


def scan(kb_path: Path) -> list[KbFile]:
    """The KB's files with their base ids and content hashes (``KnowledgeBaseError`` when there is none); a file
    that vanished before it could be hashed is left out, with a warning."""
    kb_path = Path(kb_path)
    root = kb_path if kb_path.is_dir() else kb_path.parent
    out = []
    for p, base_id in kb_files(kb_path):
        try:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
        except FileNotFoundError:
            log.warning("%s vanished while the knowledge base was being indexed (deleted or renamed); left out", p)
            continue
        out.append(KbFile(p, p.relative_to(root).as_posix(), base_id, digest))
    return out


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def _load(f: KbFile, max_file_bytes: int | None) -> list[Document]:
    """The file's documents; ``KnowledgeBaseError`` saying why when it is too big, malformed or gone."""
    try:
        size = f.path.stat().st_size
        if max_file_bytes is not None and size > max_file_bytes:
            raise KnowledgeBaseError(
                f"{f.path}: {_size(size)} is over the per-file limit of {_size(max_file_bytes)} "
                "(MOMENTS_KB_MAX_FILE_MB); split it into smaller files or raise the limit"
            )
        return load_file(f.path, base_id=f.base_id)
    except FileNotFoundError:
        raise KnowledgeBaseError(f"{f.path}: vanished while the knowledge base was being indexed (deleted or "
                                 "renamed)") from None


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
    max_file_bytes: int | None = MAX_FILE_BYTES,
) -> Plan:
    """The passages of the KB at ``kb_path``, re-using the unchanged files' passages of the previous index (and
    the last good version of a file that cannot be indexed now, see the module docstring)."""
    ranges = _previous_ranges(old_passages, old_files)
    out = Plan()
    for f in scan(kb_path):
        record, start = ranges.get(f.rel, ({}, 0))
        if record.get("sha256") != f.sha256 or record.get("base_id") != f.base_id:
            try:
                docs = _load(f, max_file_bytes)
            except KnowledgeBaseError as exc:
                _skip(out, f, exc, record, start, old_passages)
                continue
            passages = chunk_documents(docs, chunk_tokens, count_tokens)
            out.passages.extend(passages)
            out.reuse.extend([None] * len(passages))
            out.n_documents += len(docs)
            out.files.append({"path": f.rel, "sha256": f.sha256, "base_id": f.base_id, "passages": len(passages),
                              "documents": len(docs)})
            continue
        n = int(record["passages"])
        out.passages.extend(old_passages[start : start + n])
        out.reuse.extend(range(start, start + n))
        out.n_documents += int(record.get("documents", 0))
        out.files.append({**record, "path": f.rel})
    if not out.passages and out.skipped:
        reasons = "; ".join(s["reason"] for s in out.skipped)
        raise KnowledgeBaseError(f"{kb_path}: no file could be indexed ({reasons})")
    return out


def _skip(out: Plan, f: KbFile, exc: KnowledgeBaseError, record: dict, start: int,
          old_passages: Sequence[Passage]) -> None:
    """Leave ``f`` out of the build, or keep its previous (last good) passages when there are some."""
    kept = bool(record) and record.get("base_id") == f.base_id
    if kept:
        n = int(record["passages"])
        out.passages.extend(old_passages[start : start + n])
        out.reuse.extend(range(start, start + n))
        out.n_documents += int(record.get("documents", 0))
        out.files.append(dict(record))  # its old hash: tried again when the file changes
    log.warning("Skipped %s: %s%s", f.rel, exc, "; its last good version stays indexed" if kept else "")
    out.skipped.append({"path": f.rel, "reason": str(exc), "kept_previous": kept})


def report_skipped(index: T) -> T:
    """``index`` (a loaded :class:`~retrieval.index.KnowledgeIndex`), after warning again about each file its build
    skipped (they stay skipped until they change)."""
    for s in index.meta.get("skipped") or []:
        log.warning("Skipped %s when this index was built: %s%s", s["path"], s["reason"],
                    "; its last good version stays indexed" if s.get("kept_previous") else "")
    return index
