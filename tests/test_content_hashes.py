"""Content hashes (issue 14, integrity): an index folder and a converted model record the sha256 of every file when
they are written, and every load checks them (once per process per file): random bytes written into ``index.faiss``
or ``model.safetensors`` with the size kept are caught, the index is rebuilt and the model converted again, and
nothing damaged is ever searched or loaded.

Real components: the packaged embedder, FAISS files and a knowledge-base folder in tmp_path; the converted model
folders are real files (the slow test copies the shared converted SmolLM2 and converts it again).
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from agent.errors import CorruptIndexError
from agent.generation import provision
from retrieval import persist
from retrieval.embedder import PACKAGED_EMBEDDER
from retrieval.index import KnowledgeIndex
from retrieval.persist import HASHES_KEY, INDEX_FILE, META_FILE
from tests.conftest import MODELS


def scribble(path, at: float = 0.5, n: int = 64, seed: int = 0) -> None:
    """Overwrite ``n`` bytes in the middle of ``path`` with random ones (its size kept)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start:start + n] = np.random.default_rng(seed).bytes(n)
    path.write_bytes(bytes(data))


@pytest.fixture
def kb(tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "returns.md").write_text("# Returns\n\nYou can return items within 30 days of delivery.\n")
    (folder / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire and cannot be exchanged.\n")
    return folder


def test_an_index_records_its_hashes_and_random_bytes_in_it_mean_a_rebuild(kb, tmp_path):
    target = tmp_path / "index"
    first = KnowledgeIndex.load_or_build(kb, target, PACKAGED_EMBEDDER, progress=False)
    recorded = json.loads((target / META_FILE).read_text())[HASHES_KEY]
    assert INDEX_FILE in recorded and "passages.jsonl" in recorded and any(k.startswith("lexical/") for k in recorded)
    assert not KnowledgeIndex.load_or_build(kb, target, PACKAGED_EMBEDDER, progress=False).rebuilt  # intact: re-used

    scribble(target / INDEX_FILE, at=0.9)  # inside the vectors, size kept
    with pytest.raises(CorruptIndexError, match=f"{target}.*index.faiss does not hold the bytes"):
        KnowledgeIndex.load(target, model=first.model)
    again = KnowledgeIndex.load_or_build(kb, target, PACKAGED_EMBEDDER, progress=False)
    assert again.rebuilt and again.meta["n_reused"] == 0  # nothing carried over from the damaged folder
    hits = again.search("Do gift cards expire?", 2)
    assert hits[0].passage.title == "Gift cards" and all(math.isfinite(h.score) for h in hits)
    KnowledgeIndex.load(target, model=first.model)  # the rebuilt folder verifies


def test_an_index_written_before_hashes_existed_is_rebuilt(kb, tmp_path):
    target = tmp_path / "index"
    built = KnowledgeIndex.load_or_build(kb, target, PACKAGED_EMBEDDER, progress=False)
    meta = json.loads((target / META_FILE).read_text())
    del meta[HASHES_KEY]
    (target / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CorruptIndexError, match="records no content hashes"):
        KnowledgeIndex.load(target, model=built.model)
    assert KnowledgeIndex.load_or_build(kb, target, PACKAGED_EMBEDDER, progress=False).rebuilt


def test_each_index_file_is_hashed_once_per_process(kb, tmp_path, monkeypatch):
    target = tmp_path / "index"
    built = KnowledgeIndex.load_or_build(kb, target, PACKAGED_EMBEDDER, progress=False)
    hashed = []
    real = persist._sha256
    monkeypatch.setattr(persist, "_sha256", lambda path: hashed.append(path.name) or real(path))
    monkeypatch.setattr(persist, "_verified", {})
    KnowledgeIndex.load(target, model=built.model)
    n_files = len(json.loads((target / META_FILE).read_text())[HASHES_KEY])
    assert len(hashed) == n_files
    KnowledgeIndex.load(target, model=built.model)
    assert len(hashed) == n_files  # unchanged files: not read again
    scribble(target / INDEX_FILE, at=0.9)
    with pytest.raises(CorruptIndexError):
        KnowledgeIndex.load(target, model=built.model)  # a changed file is hashed again, and refused
    assert hashed.count(INDEX_FILE) == 2


# --- converted model weights ------------------------------------------------------------------------------------


def fake_conversion(folder, *, with_hashes: bool = True):
    """A converted model folder as :func:`provision.convert_gguf` leaves it (small files standing in)."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(np.random.default_rng(1).bytes(4096))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    meta = {"gguf": "x.gguf", "gguf_sha256": "abc", "safetensors_size": 4096}
    if with_hashes:
        meta["files_sha256"] = {p.name: provision.sha256_file(p) for p in folder.iterdir()}
    (folder / provision.PROVENANCE).write_text(json.dumps(meta))
    return folder


def test_converted_weights_with_random_bytes_are_not_accepted(tmp_path, caplog):
    folder = fake_conversion(tmp_path / "smollm2-135m")
    assert provision._converted_ok(folder, "abc")
    scribble(folder / "model.safetensors")
    assert not provision._converted_ok(folder, "abc")  # size kept, bytes changed: converted again, not loaded
    assert "model.safetensors does not hold the bytes written when it was converted" in caplog.text
    (folder / "config.json").write_text('{"model_type": "llamb"}')
    assert not provision._converted_ok(folder, "abc")


def test_a_folder_converted_before_hashes_existed_gets_them_on_first_use(tmp_path):
    folder = fake_conversion(tmp_path / "smollm2-135m", with_hashes=False)
    assert provision._converted_ok(folder, "abc")
    recorded = json.loads((folder / provision.PROVENANCE).read_text())["files_sha256"]
    assert set(recorded) == {"model.safetensors", "config.json"}
    scribble(folder / "model.safetensors")
    assert not provision._converted_ok(folder, "abc")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_damaged_converted_model_is_converted_again_from_the_verified_download(tmp_path, monkeypatch):
    source = provision.PRESETS["smollm2-135m"]
    shared = MODELS / "smollm2-135m"
    download = MODELS / "downloads" / source.filename
    if not ((shared / "model.safetensors").is_file() and download.is_file()):
        pytest.skip("needs the shared converted smollm2-135m and its download (run any slow test once)")
    models = tmp_path / "models"
    shutil.copytree(shared, models / "smollm2-135m")
    (models / "downloads").mkdir()
    shutil.copy(download, models / "downloads" / source.filename)
    assert provision.resolve_model("smollm2-135m", models) == models / "smollm2-135m"  # intact (hashes recorded)
    weights = models / "smollm2-135m" / "model.safetensors"
    scribble(weights, at=0.6, n=4096)
    damaged = weights.stat().st_mtime_ns
    out = provision.resolve_model("smollm2-135m", models)
    assert out == models / "smollm2-135m" and weights.stat().st_mtime_ns != damaged  # converted again
    meta = json.loads((out / provision.PROVENANCE).read_text())
    assert meta["files_sha256"]["model.safetensors"] == provision.sha256_file(weights)

    def must_not_hash(path):
        raise AssertionError(f"{path} was hashed when converted; the next check must not read it again")

    monkeypatch.setattr(provision, "sha256_file", must_not_hash)
    assert provision._converted_ok(out, source.sha256)
