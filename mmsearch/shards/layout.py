"""A sharded store on disk: N normal stores under one folder, named by a top-level manifest.

Layout::

    STORE/shards.json      # the top-level manifest (replaced atomically)
    STORE/shard-000/       # a normal mmsearch store (manifest.json, segments/, ...)
    STORE/shard-001/
    ...

`shards.json` names the shards (in routing order), the routing rule, the model every shard
embeds with, and the one calibration all shards share, so that scores from different
shards are on the same scale and can be merged. An item lives in exactly one shard:
`shard_of(id, n)`, a stable hash of its id (the same on every machine and Python run).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mmsearch.errors import MmsearchError, UsageError
from mmsearch.fileio import write_json_atomic

MANIFEST = "shards.json"
FORMAT = 1
ROUTING = "blake2b-64-mod"
#: Most shards a store may have (each is a folder with its own index and files).
MAX_SHARDS = 1024


def shard_of(item_id: str, n: int) -> int:
    """The shard of an item: the first 8 bytes of blake2b(id) modulo the shard count."""
    digest = hashlib.blake2b(str(item_id).encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % n


def shard_name(i: int) -> str:
    return f"shard-{i:03d}"


def is_sharded(root: str | Path) -> bool:
    """True when `root` holds a sharded store."""
    return (Path(root) / MANIFEST).is_file()


def read_manifest(root: Path) -> dict[str, Any]:
    """The top-level manifest ({} when the store does not exist yet)."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise MmsearchError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or data.get("kind") != "sharded" \
            or not isinstance(data.get("shards"), list) or not data["shards"]:
        raise MmsearchError(f"{path} is not a sharded-store manifest")
    if int(data.get("format", FORMAT)) > FORMAT:
        raise MmsearchError(f"{path} was written by a newer mmsearch (format "
                            f"{data['format']}); upgrade mmsearch to read it")
    if data.get("routing") != ROUTING:
        raise MmsearchError(f"{path}: unknown routing {data.get('routing')!r}")
    return data


def create(root: Path, n: int) -> dict[str, Any]:
    """Create (or check) the top-level manifest of an `n`-shard store; returns it."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SHARDS:
        raise UsageError(f"shards must be a whole number from 1 to {MAX_SHARDS}, not {n!r}")
    found = read_manifest(root)
    if found:
        if len(found["shards"]) != n:
            raise UsageError(f"store {root} has {len(found['shards'])} shards, not {n}; "
                             "leave out --shards to use the store as it is")
        return found
    if (root / "manifest.json").exists():
        raise UsageError(f"store {root} is a single (unsharded) store; index into a new "
                         "folder to make a sharded one")
    root.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "kind": "sharded", "routing": ROUTING,
            "shards": [shard_name(i) for i in range(n)], "model": None, "dim": None,
            "calibration": None, "generation": 0}
    write_json_atomic(root / MANIFEST, data)
    return data


def write(root: Path, data: dict[str, Any]) -> None:
    """Replace the top-level manifest (call while holding the shards' write locks)."""
    data = dict(data, generation=int(data.get("generation", 0)) + 1)
    write_json_atomic(root / MANIFEST, data)
