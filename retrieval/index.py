"""The knowledge index: passages, their embeddings in FAISS and their BM25 index, persisted with a version hash.

Contract
--------
* ``KnowledgeIndex.load_or_build(kb_path, index_dir, embedder_name, chunk_tokens)`` computes the KB version
  (:func:`kb_version`: sha256 over the embedder name, ``chunk_tokens``, :data:`CHUNKING_VERSION`, the
  retrieval method (:func:`method_signature`: BM25 tokenizer and fusion weights) and every KB file's relative
  path and bytes; first 12 hex digits). When ``index_dir`` holds an index of that
  version it is loaded without embedding anything; otherwise it is updated and saved: files whose bytes are
  unchanged since the saved index keep their passages and vectors, only changed and new files are loaded,
  chunked and embedded (tqdm bar; :mod:`retrieval.update`; ``meta["n_embedded"]`` / ``["n_reused"]`` count
  them). The dense index is exact below :data:`retrieval.ann.ANN_THRESHOLD` passages, HNSW above (``meta["faiss"]``;
  :mod:`retrieval.ann`). A bad, oversized or vanishing KB file is skipped with a warning naming it, its last good
  version kept (``meta["skipped"]``, :mod:`retrieval.update`); the path is checked before the embedder loads.
  Saving is atomic (:mod:`retrieval.persist`); concurrent builders of one ``index_dir`` are serialised by a lock.
* ``index_dir`` holds the files of :mod:`retrieval.persist`: ``index.faiss``, ``passages.jsonl`` (one
  Passage per line, in vector order), ``meta.json`` (version, embedder, chunk_tokens, kb_path, created, counts)
  and ``lexical/`` (the BM25 index).
  :func:`index_dir_for` gives each KB path its own folder under a base directory.
* ``search(query, k)`` returns up to ``k`` :class:`~retrieval.types.Hit` values, best first (rank 1-based),
  ranked by the hybrid (dense + BM25) score of :mod:`retrieval.hybrid`, each hit's score its cosine with the
  query (what the abstention threshold compares). ``search_dense(query, k)`` / ``search_vector(vec, k)`` rank
  by cosine alone. ``search_conversation(question, history, k)`` folds earlier user turns into the query (see
  :mod:`retrieval.followup`).
* A saved index whose files changed since they were written (content hashes, :mod:`retrieval.persist`) is refused
  on load (``CorruptIndexError``; ``load_or_build`` rebuilds it). No score is NaN or infinite: before its first
  search an index checks that its vectors are finite unit vectors (:mod:`retrieval.integrity`).
* ``KnowledgeIndex.from_passages(passages, model)`` builds an in-memory index (benchmarks, tests).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.ann import ANN_POLICY, make_index, prepare
from retrieval.ann import dense_scores as ann_dense_scores
from retrieval.chunking import CHUNKING_VERSION
from retrieval.embedder import (
    PACKAGED_EMBEDDER,
    embed,
    embed_passages,
    embedding_dim,
    load_embedder,
    normalise,
    token_counter,
)
from retrieval.errors import KnowledgeBaseError
from retrieval.followup import (
    DEFAULT_METHOD,
    HistoryMethod,
    method_signature,
    ranking_scores,
    search_with_history,
)
from retrieval.hybrid import top_k
from retrieval.integrity import check_hits, check_queries, check_vectors
from retrieval.lexical import LexicalIndex
from retrieval.mentions import NameMatcher, name_matcher
from retrieval.persist import (
    INDEX_FILE,
    build_lock,
    read_folder,
    saved_version,
    write_folder,
)
from retrieval.types import Hit, Passage, Turn
from retrieval.update import MAX_FILE_BYTES, present_files, report_skipped
from retrieval.update import plan as plan_build

if TYPE_CHECKING:  # pragma: no cover
    import faiss
    from sentence_transformers import SentenceTransformer


log = logging.getLogger(__name__)

#: Format of the files in an index folder; part of the version so that old layouts are rebuilt.
INDEX_FORMAT = "2"
__all__ = ["INDEX_FILE", "INDEX_FORMAT", "KnowledgeIndex", "index_dir_for", "kb_version", "method_signature"]
#: Query embeddings kept per index (earlier turns are re-used on every turn of a conversation).
QUERY_CACHE_SIZE = 2048
#: Meta fields that must match for an update to re-use a previous index's passages and vectors.
_REUSE_KEYS = ("embedder", "chunk_tokens", "chunking_version", "format")


def kb_version(kb_path: Path, embedder_name: str, chunk_tokens: int) -> str:
    """12 hex digits of sha256 over the embedder, chunking settings, retrieval method and every KB file's path
    and bytes."""
    kb_path = Path(kb_path)
    root = kb_path if kb_path.is_dir() else kb_path.parent
    h = hashlib.sha256()
    for part in (embedder_name, str(chunk_tokens), CHUNKING_VERSION, INDEX_FORMAT, method_signature(), ANN_POLICY):
        h.update(part.encode() + b"\0")
    for f, data in present_files(kb_path):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:12]


def index_dir_for(base: Path, kb_path: Path) -> Path:
    """A folder under ``base`` of its own for the KB at ``kb_path``: ``<name>-<8 hex of its absolute path>``."""
    resolved = Path(kb_path).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return Path(base) / f"{resolved.name or 'kb'}-{digest}"


class KnowledgeIndex:
    """Passages and their normalised embeddings in a FAISS inner-product index, searchable by text."""

    def __init__(
        self,
        passages: Sequence[Passage],
        faiss_index: faiss.Index,
        model: SentenceTransformer,
        meta: dict[str, Any],
        directory: Path | None = None,
        rebuilt: bool = False,
        lexical: LexicalIndex | None = None,
    ) -> None:
        if faiss_index.ntotal != len(passages):
            raise ValueError(f"{faiss_index.ntotal} vectors for {len(passages)} passages; rebuild the index.")
        self.passages: list[Passage] = list(passages)
        self.faiss_index = faiss_index
        self.model = model
        self.meta = meta
        #: Where the index is saved (None for an in-memory index).
        self.directory = directory
        #: True when this object was built (embedded) by ``load_or_build``, False when loaded from disk.
        self.rebuilt = rebuilt
        self._vectors: np.ndarray | None = None
        self._groups: tuple[np.ndarray, np.ndarray] | None = None
        self._names: NameMatcher | None = None  # the documents' distinctive names, found on first use
        self._lexical = lexical  # the BM25 index, built on first use when not loaded
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._checked = False  # the vectors are checked once, before the first search (retrieval.integrity)


    @property
    def version(self) -> str:
        return str(self.meta.get("version", ""))

    def __len__(self) -> int:
        return len(self.passages)

    def __repr__(self) -> str:
        return f"KnowledgeIndex(version={self.version!r}, passages={len(self)}, directory={self.directory})"


    @classmethod
    def from_passages(
        cls,
        passages: Sequence[Passage],
        model: SentenceTransformer,
        meta: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> KnowledgeIndex:
        """Embed ``passages`` (title + text) and index them in memory."""
        return cls.from_vectors(passages, embed_passages(model, passages, progress), model, meta)

    @classmethod
    def from_vectors(
        cls, passages: Sequence[Passage], vectors: np.ndarray, model: SentenceTransformer, meta: dict[str, Any] | None
    ) -> KnowledgeIndex:
        """Index ``passages`` with their normalised embeddings ``vectors`` ``(n_passages, dim)`` in memory (exact
        flat index, or HNSW above :data:`retrieval.ann.ANN_THRESHOLD` passages)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index, kind = make_index(vectors)
        meta = {"n_passages": len(passages), "dim": int(vectors.shape[1]), "faiss": kind, **(meta or {})}
        built = cls(passages, index, model, meta)
        built._vectors = vectors
        return built

    @classmethod
    def build(
        cls,
        kb_path: Path,
        embedder_name: str = PACKAGED_EMBEDDER,
        chunk_tokens: int = 180,
        progress: bool = True,
        model: SentenceTransformer | None = None,
        previous: KnowledgeIndex | None = None,
        max_file_bytes: int | None = MAX_FILE_BYTES,
    ) -> KnowledgeIndex:
        """Load, chunk and embed the KB at ``kb_path`` into an in-memory index (not saved).

        With a ``previous`` index of the same embedder and chunking, the files whose bytes did not change keep
        their passages and vectors and only the others are loaded and embedded (:mod:`retrieval.update`).
        """
        kb_path = Path(kb_path)
        version = kb_version(kb_path, embedder_name, chunk_tokens)
        model = model if model is not None else load_embedder(embedder_name)
        meta = {"version": version, "embedder": embedder_name, "chunk_tokens": chunk_tokens,
                "chunking_version": CHUNKING_VERSION, "format": INDEX_FORMAT,
                "kb_path": str(kb_path.expanduser().resolve()), "created": time.time()}
        reusable = previous is not None and all(previous.meta.get(k) == meta[k] for k in _REUSE_KEYS)
        plan = plan_build(kb_path, chunk_tokens, token_counter(model), previous.passages if reusable else (),
                          previous.meta.get("files") if reusable else None, max_file_bytes)
        if not plan.passages:
            raise KnowledgeBaseError(f"{kb_path}: the documents hold no text to index. Add content to them.")
        t0 = time.perf_counter()
        vectors = np.zeros((len(plan.passages), embedding_dim(model)), dtype=np.float32)  # (n_passages, dim)
        kept = [i for i, row in enumerate(plan.reuse) if row is not None]
        if kept:
            vectors[kept] = previous.vectors()[[plan.reuse[i] for i in kept]]
        todo = plan.to_embed
        vectors[todo] = embed_passages(model, [plan.passages[i] for i in todo], progress)
        meta |= {"n_files": len(plan.files), "n_documents": plan.n_documents, "files": plan.files,
                 "n_embedded": len(todo), "n_reused": len(kept), "skipped": plan.skipped}
        index = cls.from_vectors(plan.passages, vectors, model, meta)
        index.meta["embed_seconds"] = round(time.perf_counter() - t0, 3)
        log.info("Built index %s: %d passages from %d documents (%d embedded, %d re-used)", version,
                 len(plan.passages), plan.n_documents, len(todo), len(kept))
        return index

    @classmethod
    def load(cls, index_dir: Path, model: SentenceTransformer | None = None) -> KnowledgeIndex:
        """Load a saved index (raises :class:`KnowledgeBaseError` if it is missing or damaged)."""

        index_dir = Path(index_dir)
        try:
            meta, passages, faiss_index, lexical = read_folder(index_dir)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise KnowledgeBaseError(
                f"The saved index in {index_dir} is missing or damaged ({e}). Delete the folder to rebuild it."
            ) from e
        if faiss_index.ntotal != len(passages) or meta.get("n_passages") != len(passages):
            raise KnowledgeBaseError(
                f"The saved index in {index_dir} is inconsistent ({faiss_index.ntotal} vectors, "
                f"{len(passages)} passages). Delete the folder to rebuild it."
            )
        model = model if model is not None else load_embedder(meta.get("embedder", PACKAGED_EMBEDDER))
        prepare(faiss_index)
        return cls(passages, faiss_index, model, meta, directory=index_dir, lexical=lexical)

    @classmethod
    def load_or_build(
        cls,
        kb_path: Path,
        index_dir: Path,
        embedder_name: str = PACKAGED_EMBEDDER,
        chunk_tokens: int = 180,
        progress: bool = True,
        max_file_bytes: int | None = MAX_FILE_BYTES,
    ) -> KnowledgeIndex:
        """The saved index in ``index_dir`` if it matches the KB's current version, else a fresh one (saved)."""
        kb_path, index_dir = Path(kb_path), Path(index_dir)
        with build_lock(index_dir):
            version = kb_version(kb_path, embedder_name, chunk_tokens)  # a missing path: refused before the model
            model, saved = load_embedder(embedder_name), saved_version(index_dir)
            if saved == version:
                try:
                    index = cls.load(index_dir, model=model)
                    log.info("Reusing index %s in %s", version, index_dir)
                    return report_skipped(index)
                except KnowledgeBaseError as e:
                    log.warning("%s; rebuilding", e)
            elif saved is not None:
                log.info("Index in %s is version %s, KB is now %s; updating", index_dir, saved, version)
            previous = _previous(index_dir, model) if saved is not None else None
            index = cls.build(kb_path, embedder_name, chunk_tokens, progress, model, previous, max_file_bytes)
            if index.version != version:  # the KB changed while we embedded it: still consistent, just newer
                log.warning("The KB at %s changed during the build; saved version %s", kb_path, index.version)
            index.save(index_dir)
            index.rebuilt = True
            return index


    def save(self, index_dir: Path) -> None:
        """Write the index to ``index_dir`` atomically (temporary folder beside it, then a rename)."""
        index_dir = Path(index_dir)
        write_folder(index_dir, self.faiss_index, self.passages, self.meta, self.lexical())
        self.directory = index_dir
        log.info("Saved index %s (%d passages) to %s", self.version, len(self), index_dir)


    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed query texts with the index's model → ``(len(texts), dim)`` normalised float32 (cached)."""
        cache = self._query_cache
        found = {t: cache[t] for t in texts if t in cache}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vecs = embed(self.model, missing)  # (len(missing), dim)
            check_queries(vecs, str(self.meta.get("embedder", PACKAGED_EMBEDDER)))
            found.update(zip(missing, vecs))
        for t in texts:  # most recently used last; a batch larger than the cache keeps its tail
            cache[t] = found[t]
            cache.move_to_end(t)
        while len(cache) > QUERY_CACHE_SIZE:
            cache.popitem(last=False)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, self.faiss_index.d), np.float32)

    def dense_scores(self, q: np.ndarray) -> np.ndarray:
        """Every passage's dense score for the normalised query ``q`` ``(dim,)`` → ``(n_passages,)``: exact cosines,
        or for an HNSW index those of the nearest candidates (see :func:`retrieval.ann.dense_scores`)."""
        return ann_dense_scores(self.faiss_index, self.vectors(), q)

    def vectors(self) -> np.ndarray:
        """All passage embeddings, in passage order → ``(n_passages, dim)`` float32 (computed once)."""
        if self._vectors is None:
            self._vectors = self.faiss_index.reconstruct_n(0, self.faiss_index.ntotal)  # (n_passages, dim)
        return self._vectors

    def group_centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised mean embedding per source document, and each passage's document index.

        Passages are grouped by ``source`` (the file; for DSTC9 the entity), else by ``doc_id``.
        Returns ``(centroids (n_groups, dim), group_of (n_passages,))``, computed once.
        """
        if self._groups is None:
            keys = [p.source or p.doc_id for p in self.passages]
            ids: dict[str, int] = {}
            group_of = np.array([ids.setdefault(key, len(ids)) for key in keys], dtype=np.int64)  # (n_passages,)
            vectors = self.vectors()
            sums = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)  # (n_groups, dim)
            np.add.at(sums, group_of, vectors)
            self._groups = (normalise(sums), group_of)
        return self._groups

    def name_matcher(self) -> NameMatcher:
        """The entity documents' distinctive names (:mod:`retrieval.mentions`), found once on first use."""
        if self._names is None:
            self._names = name_matcher(self.passages, self.group_centroids()[1], self.lexical())
        return self._names

    def lexical(self) -> LexicalIndex:
        """The BM25 index of the passages (loaded with the index, else built once on first use)."""
        if self._lexical is None:
            self._lexical = LexicalIndex.build(self.passages)
        return self._lexical

    def search(self, query: str, k: int, method: HistoryMethod | None = None) -> list[Hit]:
        """The ``k`` best passages for ``query``, best first: ranked by ``method``'s hybrid score (default: the
        product's, :data:`retrieval.followup.DEFAULT_METHOD`), each hit's score its cosine with ``query``."""
        method = method or DEFAULT_METHOD
        if method.dense_only:
            return self.search_dense(query, k)
        k = min(int(k), len(self))
        if k <= 0:
            return []
        self.check()
        q = self.embed_queries([query])[0]
        ranking = ranking_scores(self, self.dense_scores(q), query, (), (), method)
        vectors = self.vectors()
        hits = [Hit(passage=self.passages[i], score=float(vectors[i] @ q), rank=r)
                for r, i in enumerate(top_k(ranking, k), 1)]
        return check_hits(hits, self.directory, self.meta.get("kb_path"))

    def search_dense(self, query: str, k: int) -> list[Hit]:
        """The ``k`` passages closest to ``query`` by cosine alone (the FAISS index), best first."""
        return self.search_vector(self.embed_queries([query])[0], k)

    def search_vector(self, vec: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` passages closest to the query vector ``vec`` (``(dim,)`` or ``(1, dim)``; normalised here)."""
        k = min(int(k), len(self))
        if k <= 0:
            return []
        self.check()
        query = normalise(np.asarray(vec, dtype=np.float32).reshape(1, -1))  # (1, dim)
        check_queries(query, str(self.meta.get("embedder", PACKAGED_EMBEDDER)))
        scores, ids = self.faiss_index.search(query, k)  # (1, k) each
        hits = [Hit(passage=self.passages[i], score=float(s), rank=r)
                for r, (s, i) in enumerate(zip(scores[0], ids[0]), 1) if i >= 0]
        return check_hits(hits, self.directory, self.meta.get("kb_path"))

    def check(self) -> None:
        """Refuse a damaged index (:class:`~retrieval.errors.CorruptIndexError`): every vector must be a finite unit
        vector. Done once, before the first search; every search also refuses a score that is not a cosine."""
        if not self._checked:
            check_vectors(self.vectors(), self.directory, self.meta.get("kb_path"))
            self._checked = True

    def search_conversation(
        self, question: str, history: Sequence[str | Turn], k: int, method: HistoryMethod | None = None
    ) -> list[Hit]:
        """Search for ``question`` in the context of earlier turns ``history`` (oldest first; strings: user turns).

        Scores are those of :func:`retrieval.followup.search_with_history` (cosine plus a context bonus).
        """
        self.check()
        hits = search_with_history(self, question, history, k, method or DEFAULT_METHOD)
        return check_hits(hits, self.directory, self.meta.get("kb_path"))


def _previous(index_dir: Path, model: SentenceTransformer) -> KnowledgeIndex | None:
    """The saved index whose unchanged files an update may re-use (None when it is missing or damaged)."""
    try:
        previous = KnowledgeIndex.load(index_dir, model=model)
        previous.check()  # never carry damaged vectors into the new index
        return previous
    except KnowledgeBaseError as e:
        log.warning("Not re-using the previous index in %s: %s", index_dir, e)
        return None
