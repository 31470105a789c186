"""Loading the generator: base model (via :mod:`agent.generation.provision`) plus an optional LoRA adapter (peft).

:func:`load_generator` returns a :class:`LoadedModel` holding the model in eval mode, its tokenizer and the ids that
every stored turn records (model id, adapter id and adapter hash). Loads are cached per (model dir, adapter, quantize,
decoder) within a process, so the UI, CLI and tests share one copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ProvisioningError
from agent.generation.priority import GeneratorLock
from agent.generation.prompt import PROMPT_VERSION
from agent.generation.provision import resolve_model
from agent.settings import ADAPTERS_DIR, Settings

log = logging.getLogger(__name__)

#: The adapter shipped for each preset, loaded when ``adapter`` is ``auto`` (if present under data/adapters/).
DEFAULT_ADAPTERS: dict[str, str] = {"smollm2-135m": "smollm2-135m-support"}

_cache: dict[tuple, LoadedModel] = {}
_lock = threading.Lock()


@dataclass
class LoadedModel:
    """The loaded generator model: ``model`` is a transformers causal LM (the LoRA adapter, if any, merged in)."""

    model: object
    tokenizer: object
    model_id: str
    model_dir: Path
    adapter_id: str | None
    adapter_hash: str | None
    # Serialises use of the model across threads (Gradio workers); torch modules are not re-entrant with caches.
    # A GeneratorLock (agent.generation.priority): live turns go before background exact explanations.
    lock: GeneratorLock
    #: The prompt this generator is run with (:data:`agent.generation.prompt.SYSTEM_PROMPTS`): the adapter's own, if it names
    #: one in ``moments.json``, else the current default.
    prompt_version: str = PROMPT_VERSION
    #: The fast decoder (:mod:`agent.generation.fastdecode`) that :func:`~agent.generation.decoding.stream_tokens`
    #: uses for ``model``, or None (``Settings.decoder == "hf"``, or an architecture it does not implement).
    decoder: object | None = None


def resolve_adapter(settings: Settings) -> Path | None:
    """The adapter directory selected by ``settings.adapter`` (None for the base model alone)."""
    value = settings.adapter.strip()
    if value.lower() in ("none", ""):
        return None
    if value.lower() == "auto":
        name = DEFAULT_ADAPTERS.get(settings.model)
        path = ADAPTERS_DIR / name if name else None
        return path if path is not None and (path / "adapter_config.json").is_file() else None
    path = Path(value).expanduser()
    if not path.is_dir():
        path = ADAPTERS_DIR / value
    if not (path / "adapter_config.json").is_file():
        raise ProvisioningError(f"Adapter {value!r} not found: give 'auto', 'none', a name under {ADAPTERS_DIR}, "
                                "or a folder with adapter_config.json.")
    return path


def adapter_hash(path: Path) -> str:
    """First 12 hex digits of the sha256 over the adapter's config and weights."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        f = path / name
        if f.is_file():
            digest.update(name.encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def adapter_prompt_version(path: Path | None) -> str:
    """The prompt version an adapter was trained with: ``prompt_version`` in its ``moments.json``; adapters
    without that file predate it and were trained on ``p1``. The base model alone uses the current default."""
    if path is None:
        return PROMPT_VERSION
    meta = path / "moments.json"
    if not meta.is_file():
        return "p1"
    return str(json.loads(meta.read_text(encoding="utf-8")).get("prompt_version", "p1"))


def load_generator(settings: Settings) -> LoadedModel:
    """Provision (first time) and load the generator described by ``settings``; cached per process."""
    model_dir = resolve_model(settings.model, settings.models_dir)
    adapter_dir = resolve_adapter(settings)
    key = (str(model_dir), str(adapter_dir), settings.quantize, settings.decoder)
    with _lock:
        if key in _cache:
            return _cache[key]
        gen = _load(settings, model_dir, adapter_dir)
        _cache[key] = gen
        return gen


def apply_threads(settings: Settings) -> None:
    """Set torch's intra-op threads from ``settings.threads`` (0 leaves torch's default)."""
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)


def load_base_model(model_dir: Path):
    """The base causal LM of a model directory (fp32, eager attention, as attribution needs) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager")
    return model, tokenizer


def _load(settings: Settings, model_dir: Path, adapter_dir: Path | None) -> LoadedModel:
    import torch

    apply_threads(settings)
    started = time.perf_counter()
    model, tokenizer = load_base_model(model_dir)
    a_id = a_hash = None
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
        a_id, a_hash = adapter_dir.name, adapter_hash(adapter_dir)
    packed = _packed_weights(settings, model)  # before merging: the packed base keeps the LoRA as a side path
    if adapter_dir is not None:
        model = model.merge_and_unload()
    model.eval()
    from agent.generation.decoding import ADAPTER_ATTR

    setattr(model, ADAPTER_ATTR, (adapter_dir, a_hash))  # where the learned attention estimator's weights are
    if settings.quantize:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    decoder = None
    if packed is not None:
        from agent.generation.decoding import FAST_DECODER_ATTR
        from agent.generation.fastdecode import FastDecoder
        from retrieval.cpu import use_bf16

        decoder = FastDecoder(model, packed, batched_bf16=use_bf16(settings.prefill_precision))
        setattr(model, FAST_DECODER_ATTR, decoder)  # stream_tokens(model, ...) finds it there
        log.info("fast decoder: %s", decoder.describe())
    seconds = time.perf_counter() - started
    log.info("loaded %s%s in %.2f s", model_dir.name, f" + {a_id}" if a_id else "", seconds)
    return LoadedModel(model=model, tokenizer=tokenizer, model_id=settings.model, model_dir=model_dir,
                       adapter_id=a_id, adapter_hash=a_hash, lock=GeneratorLock(),
                       prompt_version=adapter_prompt_version(adapter_dir), decoder=decoder)


def _packed_weights(settings: Settings, model) -> dict | None:
    """The exact packed weights for the fast decoder (``{}`` when none are exact: it then decodes in fp32), or
    None when the fast decoder is off (``decoder='hf'``, ``quantize``, an unsupported architecture)."""
    from agent.generation.fastdecode import pack_model, supported
    from agent.generation.kernels import load_kernels

    if settings.decoder != "fast" or settings.quantize:
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not supported(base):
        log.info("fast decoder: %s is not a Llama/Qwen2 model, decoding with transformers", settings.model)
        return None
    lib = load_kernels(settings.home_dir / "kernels")
    return pack_model(lib, model) if lib is not None else {}
