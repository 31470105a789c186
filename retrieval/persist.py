"""The on-disk form of a knowledge index: an index folder written atomically, read back whole, and a build lock.

Contract
--------
* An index folder holds ``index.faiss`` (the dense vectors' FAISS index), ``passages.jsonl`` (one
  :class:`~retrieval.types.Passage` per line, in vector order), ``meta.json`` (version, embedder, counts,
  per-file content hashes, ...) and ``lexical/`` (the BM25 index, :mod:`retrieval.lexical`). The passage vectors
  live in the FAISS index only (flat and HNSW indexes both give them back exactly), so a damaged ``index.faiss``
  is still caught by :mod:`retrieval.integrity`.
* :func:`write_folder` writes all of it to a temporary folder beside ``index_dir`` and then swaps it in with
  renames, so a reader sees either the old complete index or the new complete one, and a failed write leaves
  the old one as it was.
* :func:`read_folder` reads it back (``ValueError`` / ``OSError`` / ``RuntimeError`` on a missing or damaged
  part); a folder written before ``lexical/`` existed reads with it as ``None``.
* Content hashes: :func:`write_folder` records the sha256 of every file it wrote in ``meta["content_sha256"]``;
  :func:`read_folder` checks them before reading anything else, and refuses (:class:`DamagedFolderError`, a
  :class:`~retrieval.errors.CorruptIndexError`) a file whose bytes changed since (random bytes written into
  ``index.faiss`` with its size kept included) and a folder that records no hashes (written before they existed);
  a missing ``lexical/`` folder is let through (it is derived from the passages and rebuilt). Each file is hashed
  once per process: a file whose path, size and modification time were verified already is not read twice.
* :func:`build_lock` serialises processes building the same ``index_dir`` (a lock file beside it) and, once held,
  cleans what a killed build left (:func:`clean_stale`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import CorruptIndexError
from retrieval.lexical import LexicalIndex
from retrieval.types import Passage

log = logging.getLogger(__name__)

INDEX_FILE, PASSAGES_FILE, META_FILE = "index.faiss", "passages.jsonl", "meta.json"
LEXICAL_DIR = "lexical"
HASHES_KEY = "content_sha256"

#: (path, size, mtime_ns) of the files whose bytes this process checked, with the sha256 they had
_verified: dict[tuple[str, int, int], str] = {}


class DamagedFolderError(CorruptIndexError):
    """An index folder's file does not hold the bytes it was written with (or records no hashes to check)."""

    def __init__(self, index_dir: Path, why: str) -> None:
        super().__init__(f"The saved index in {index_dir} is corrupt: {why}. It is never searched: the next start "
                         "(or `moments index PATH`) rebuilds it from the knowledge base.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder`` but the meta file, by relative path."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != META_FILE}


def verify_folder(index_dir: Path, meta: dict[str, Any]) -> None:
    """Raise :class:`DamagedFolderError` unless every file recorded in ``meta`` still has its recorded sha256
    (each file hashed once per process, see the module docstring)."""
    recorded = meta.get(HASHES_KEY)
    if not isinstance(recorded, dict) or not recorded:
        raise DamagedFolderError(index_dir, "it records no content hashes (written by an older version of Moments)")
    for rel, expected in recorded.items():
        path = Path(index_dir) / rel
        if rel.startswith(f"{LEXICAL_DIR}/") and not (Path(index_dir) / LEXICAL_DIR).exists():
            continue  # no BM25 folder at all: it is derived from the passages, and built again on first use
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if _verified.get(key) != expected:
            actual = _sha256(path)
            if actual != expected:
                raise DamagedFolderError(index_dir, f"{rel} does not hold the bytes it was written with (sha256 "
                                         f"{actual[:12]}…, recorded {str(expected)[:12]}…)")
            _verified[key] = actual


def write_folder(
    index_dir: Path,
    faiss_index: Any,
    passages: Sequence[Passage],
    meta: dict[str, Any],
    lexical: LexicalIndex,
) -> None:
    """Write an index folder atomically (a temporary folder beside ``index_dir``, then renames)."""
    import faiss

    index_dir = Path(index_dir)
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.tmp-", dir=index_dir.parent))
    old: Path | None = None
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the index is not secret
        faiss.write_index(faiss_index, str(tmp / INDEX_FILE))
        lexical.save(tmp / LEXICAL_DIR)
        with (tmp / PASSAGES_FILE).open("w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
        meta = {**meta, HASHES_KEY: content_hashes(tmp)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        if index_dir.exists():
            old = index_dir.parent / f".{index_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(index_dir, old)
        os.rename(tmp, index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not index_dir.exists():
            os.rename(old, index_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_folder(
    index_dir: Path,
) -> tuple[dict[str, Any], list[Passage], Any, LexicalIndex | None]:
    """``(meta, passages, faiss_index, lexical or None)`` from an index folder."""
    import faiss

    index_dir = Path(index_dir)
    meta = json.loads((index_dir / META_FILE).read_text(encoding="utf-8"))
    verify_folder(index_dir, meta)
    with (index_dir / PASSAGES_FILE).open(encoding="utf-8") as f:
        passages = [Passage(**json.loads(line)) for line in f if line.strip()]
    faiss_index = faiss.read_index(str(index_dir / INDEX_FILE))
    lexical = None
    if (index_dir / LEXICAL_DIR).is_dir():
        lexical = LexicalIndex.load(index_dir / LEXICAL_DIR, len(passages))
    return meta, passages, faiss_index, lexical


def saved_version(index_dir: Path) -> str | None:
    """The version recorded in ``index_dir``'s meta file (None when there is no readable one)."""
    try:
        return str(json.loads((Path(index_dir) / META_FILE).read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clean_stale(index_dir: Path) -> None:
    """Remove what a build killed half-way left beside ``index_dir`` (call holding :func:`build_lock`): its
    ``.tmp-*`` folders, and its ``.old-*`` ones, the newest of which becomes ``index_dir`` again when a kill between
    the two renames of a save left no index (the last good one)."""
    index_dir = Path(index_dir)
    olds = sorted(index_dir.parent.glob(f".{index_dir.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not index_dir.exists():
        os.rename(olds.pop(), index_dir)
        log.warning("restored the last good index %s (a save was interrupted between its renames)", index_dir)
    for stale in [*index_dir.parent.glob(f".{index_dir.name}.tmp-*"), *olds]:
        shutil.rmtree(stale, ignore_errors=True)
        log.info("removed %s, left by an interrupted index build", stale)


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``<index_dir>.lock`` beside the index (processes building the same index wait)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
        yield
        return
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = index_dir.parent / f".{index_dir.name}.lock"
    with lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            clean_stale(index_dir)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
