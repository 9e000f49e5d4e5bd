"""Every `MMSEARCH_*` environment variable in one place, read when used (never at import).

    from mmsearch.settings import settings
    settings().commit_every          # $MMSEARCH_COMMIT_EVERY, else 512

`settings()` reads the environment each time it is called (cheap), so a variable set after
import still counts. An argument or option given explicitly always wins over a setting;
`VARIABLES` is the table the README shows.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mmsearch.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default (as text) and what it sets."""

    name: str
    default: str
    help: str


#: Every variable mmsearch reads (MMSEARCH_ANN_<FIELD> stands for all AnnParams fields).
VARIABLES = (
    Variable("MMSEARCH_STORE", "./indexes/default", "store folder when --store is not given"),
    Variable("MMSEARCH_MODEL", "the store's model, else ViT-B-32-256:datacomp_s34b_b86k",
             "model spec when --model is not given"),
    Variable("MMSEARCH_DEVICE", "cuda when present, else cpu", "torch device"),
    Variable("MMSEARCH_RERANKER", "blip (lite offline)", "reranker when --reranker is not given"),
    Variable("MMSEARCH_COMMIT_EVERY", "512", "rows per atomic commit while indexing"),
    Variable("MMSEARCH_VIDEO_TIME_LIMIT", "900", "seconds of decoding per video at most"),
    Variable("MMSEARCH_WHISPER", "../shared/models/whisper-tiny.en-int8 if present, else "
             "openai/whisper-tiny.en", "speech model (folder or Hugging Face id)"),
    Variable("MMSEARCH_YAMNET", "../shared/models/yamnet if present, else none (tags off)",
             "folder with YAMNet's yamnet.fp16.safetensors"),
    Variable("MMSEARCH_MODELS", "the user model folder (see mmsearch.locate)",
             "folder of installed optional models (Whisper, YAMNet, ...)"),
    Variable("MMSEARCH_SPEECH_THREADS", "see mmsearch.audio.ctwhisper",
             "CPU threads of the CTranslate2 Whisper"),
    Variable("MMSEARCH_API_KEY", "none", "API key `mmsearch serve` requires (X-API-Key)"),
    Variable("MMSEARCH_SHARED", "../shared next to the checkout",
             "development data and models folder; `none` hides it (tests, dev defaults)"),
    Variable("MMSEARCH_RAY_TIMEOUT", "30", "seconds a Ray search waits for the shards"),
    Variable("MMSEARCH_RAY_CPUS", "all of this machine's", "CPUs of a `--ray local` cluster"),
    Variable("MMSEARCH_RAY_DRILL_EXIT_ONCE", "unset", "test drill: a file path; the first "
             "encoder actor to start a batch creates it and exits"),
    Variable("MMSEARCH_LIMIT_<NAME>", "see mmsearch.limits.Limits",
             "per-request limits, e.g. MMSEARCH_LIMIT_MAX_TEXT_CHARS=4000"),
    Variable("MMSEARCH_VERIFY_MAX_MB", "1024", "data files up to this size are checksummed "
             "when a store opens and they changed since last verified"),
    Variable("MMSEARCH_RAY_DRILL_WRITER_EXIT_ONCE", "unset", "test drill: a file path; the "
             "first shard writer actor to commit creates it and exits"),
    Variable("MMSEARCH_HUBNESS", "on", "`off`: no hubness correction of text queries (a "
             "model's query bank, see mmsearch.planner.hubness)"),
    Variable("MMSEARCH_ANN_<FIELD>", "see mmsearch.index.AnnParams",
             "vector index settings, e.g. MMSEARCH_ANN_THRESHOLD=200000, MMSEARCH_ANN_NPROBE"),
)
_HIDDEN = ("", "none", "off", "0")


@dataclass(frozen=True)
class Settings:
    """The values of the `MMSEARCH_*` variables (None: not set)."""

    store: Path | None = None
    model: str | None = None
    device: str | None = None
    reranker: str | None = None
    commit_every: int = 512
    video_time_limit: float = 900.0
    whisper: str | None = None
    yamnet: Path | None = None
    api_key: str | None = None
    shared: Path | None = None
    shared_hidden: bool = False
    ray_timeout: float = 30.0
    hubness: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: the process environment, read now)."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name)
            return value if value else None

        shared = text("MMSEARCH_SHARED")
        return cls(
            store=Path(env["MMSEARCH_STORE"]) if text("MMSEARCH_STORE") else None,
            model=text("MMSEARCH_MODEL"), device=text("MMSEARCH_DEVICE"),
            reranker=text("MMSEARCH_RERANKER"),
            commit_every=_number("MMSEARCH_COMMIT_EVERY", text("MMSEARCH_COMMIT_EVERY"), 512,
                                 int),
            video_time_limit=_number("MMSEARCH_VIDEO_TIME_LIMIT",
                                     text("MMSEARCH_VIDEO_TIME_LIMIT"), 900.0, float),
            whisper=text("MMSEARCH_WHISPER"),
            yamnet=Path(env["MMSEARCH_YAMNET"]) if text("MMSEARCH_YAMNET") else None,
            api_key=text("MMSEARCH_API_KEY"),
            ray_timeout=_number("MMSEARCH_RAY_TIMEOUT", text("MMSEARCH_RAY_TIMEOUT"), 30.0,
                                float),
            shared=Path(shared) if shared and shared.strip().lower() not in _HIDDEN else None,
            hubness=(env.get("MMSEARCH_HUBNESS") or "on").strip().lower()
            not in (*_HIDDEN, "false", "no"),
            shared_hidden=env.get("MMSEARCH_SHARED") is not None
            and env["MMSEARCH_SHARED"].strip().lower() in _HIDDEN)

    def shared_models(self, name: str) -> Path | None:
        """A development model folder under the shared folder ($MMSEARCH_SHARED, else
        ../shared next to the checkout), or None when hidden or absent."""
        if self.shared_hidden:
            return None
        root = self.shared or Path(__file__).resolve().parents[2] / "shared"
        folder = root / "models" / name
        return folder if folder.is_dir() else None


def settings() -> Settings:
    """The current settings, read from the environment now."""
    return Settings.from_env()


def fields_from_settings(cls: type[T], prefix: str, overrides: Mapping[str, Any] | None,
                         what: str, environ: Mapping[str, str] | None = None) -> T:
    """An instance of the dataclass `cls`: its defaults, then the `<prefix><FIELD>`
    variables (parsed by each field's default's type), then `overrides` (checked by name).

    Reads only its own variables (one lookup per field): limits are resolved per request.
    """
    env = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(overrides or {}) - names
    if unknown:
        raise UsageError(f"unknown {what}: {', '.join(sorted(unknown))}")
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        text = env.get(prefix + f.name.upper())
        if text:
            values[f.name] = _parse_field(prefix + f.name.upper(), text, f.default)
    values.update(overrides or {})
    return cls(**values)


def _parse_field(name: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool) or default is None:
            low = text.strip().lower()
            if low in ("", "auto", "none"):
                return None
            return low in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(float(text))
        return type(default)(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not valid") from None


def _number(name: str, text: str | None, default: float, kind: type) -> float:
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise UsageError(f"{name} must be positive, not {text}")
    return value
