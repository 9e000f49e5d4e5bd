"""Running the HTTP service: one process, or several worker processes on one socket.

One process serves requests from a thread pool; Python holds one core at a time for the
parts of a search outside FAISS and NumPy (parsing, planning, JSON), so on a machine with
several cores `workers` processes (uvicorn's supervisor: it restarts a worker that dies)
share the listening socket, each with its own read-only `Collection` over the same store.
Writes through any worker take the store's file lock; the other workers see the new
generation on their next request, as any reader of the store does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.serve.app import Limits, create_app

#: Where the parent hands the serving options to its worker processes.
SPEC_ENV = "mmsearch_serve_spec"  # internal: lower case, not a user setting
#: Idle keep-alive connections live longer than common proxies' idle timeouts, so a client
#: reusing one never races the server closing it.
KEEP_ALIVE_S = 75


@dataclass(frozen=True)
class ServeSpec:
    """What a serving process opens and how it answers."""

    store: str
    model: str | None = None
    device: str | None = None
    shards: int | None = None
    api_key: str | None = None
    limits: Limits = dataclasses.field(default_factory=Limits)
    threads: int = 1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        data = json.loads(text)
        return cls(**{**data, "limits": Limits(**data["limits"])})


def serve(spec: ServeSpec, sock: socket.socket, workers: int = 1, ray: str | None = None,
          collection: Any = None) -> None:
    """Serve on a bound, listening socket until interrupted."""
    import uvicorn

    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(
            build_app(spec, ray=ray, collection=collection), log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_S))
        server.run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[SPEC_ENV] = spec.to_json()  # inherited by the spawned workers
    config = uvicorn.Config(f"{__name__}:app_from_environment", factory=True, workers=workers,
                            log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)
    Multiprocess(config, sockets=[sock]).run()


def app_from_environment() -> Any:
    """The app of one worker process (uvicorn's factory), from the parent's `ServeSpec`."""
    text = os.environ.get(SPEC_ENV)
    if not text:
        raise RuntimeError(f"{SPEC_ENV} is not set: start workers with `mmsearch serve`")
    return build_app(ServeSpec.from_json(text))


def build_app(spec: ServeSpec, ray: str | None = None, collection: Any = None) -> Any:
    """Open the store (unless given) and build the app, with this process's threads set."""
    import mmsearch

    _few_malloc_arenas()
    _torch_threads(spec.threads)
    col = collection or mmsearch.open(Path(spec.store), model=spec.model, device=spec.device,
                                      shards=spec.shards, ray=ray)
    return create_app(col, api_key=spec.api_key, limits=spec.limits,
                      threads_per_request=spec.threads)


def _torch_threads(n: int) -> None:
    """torch's threads in this process, without importing it for that: a text query on a
    lite store never loads torch. Loaded already: set now; else through OMP_NUM_THREADS,
    which torch reads when it loads (checked: torch.get_num_threads() follows it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


def _few_malloc_arenas(n: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas: a server's request threads each grow their
    own arena otherwise, and resident memory under many concurrent requests grows with the
    thread count rather than with the work (Linux/glibc only; elsewhere nothing)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).mallopt(-8, n)  # M_ARENA_MAX
