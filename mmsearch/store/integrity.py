"""Checksums, cheap header checks and manifest validation for store files.

The manifest records, for every file it names, its size and a checksum (`files`:
name -> {"size", "hash"}; the hash is "xxh3_64:<hex>" when the `xxhash` package is
installed, else "blake2b:<hex>"). Opening a store checks every file's size and header;
each file's checksum is verified in full the first time a process reads it (files are
immutable, so once is enough) when it is at most `MMSEARCH_VERIFY_MAX_MB` (default 1024).
`mmsearch doctor` verifies every checksum.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmsearch.errors import StoreDamagedError

try:  # a fast hash when available; BLAKE2 from the standard library otherwise
    import xxhash
except ImportError:  # pragma: no cover - xxhash is a core dependency
    xxhash = None

_BLOCK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_verified: set[tuple[str, int, int, int]] = set()
_verified_lock = threading.Lock()


def verify_max_bytes() -> int:
    """Files up to this size get their checksum verified on first read [MMSEARCH_VERIFY_MAX_MB]."""
    return int(float(os.environ.get("MMSEARCH_VERIFY_MAX_MB", "1024")) * 2**20)


def file_hash(path: Path, algorithm: str | None = None) -> str:
    """`<algorithm>:<hex digest>` of a file's bytes (xxh3_64 when available, else blake2b)."""
    algorithm = algorithm or ("xxh3_64" if xxhash is not None else "blake2b")
    if algorithm == "xxh3_64":
        if xxhash is None:
            raise StoreDamagedError(f"{path.name} was checksummed with xxh3_64: install the "
                                    "`xxhash` package to verify it")
        h: Any = xxhash.xxh3_64()
    elif algorithm == "blake2b":
        h = hashlib.blake2b(digest_size=16)
    else:
        raise StoreDamagedError(f"{path.name}: unknown checksum algorithm {algorithm!r}")
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return f"{algorithm}:{h.hexdigest()}"


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of a file just written: its size and checksum (read back)."""
    st = path.stat()
    entry = {"size": st.st_size, "hash": file_hash(path)}
    with _verified_lock:
        _verified.add((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return entry


def safe_name(name: Any) -> bool:
    """A file name a manifest may use (no folders, no leading dot)."""
    return isinstance(name, str) and bool(_NAME.match(name))


def check_manifest(m: Any, root: Path | None = None) -> dict[str, Any]:
    """Raise StoreDamagedError unless `m` has the shape of a manifest; returns it."""
    problem = manifest_problem(m)
    if problem is None:
        return m
    if root is not None:
        raise damaged(root, [("manifest.json", problem)])
    raise StoreDamagedError(f"a manifest about to be written is malformed: {problem}")


def manifest_problem(m: Any) -> str | None:
    """What is wrong with the shape of a manifest, or None."""
    if not isinstance(m, dict):
        return f"a JSON object was expected, not {type(m).__name__}"
    for key in ("generation", "next_key", "rows", "format"):
        if key in m and not (isinstance(m[key], int) and m[key] >= 0):
            return f"`{key}` must be a count, not {m[key]!r}"
    if m.get("dim") is not None and not (isinstance(m["dim"], int) and m["dim"] > 0):
        return f"`dim` must be a positive number, not {m['dim']!r}"
    segments = m.get("segments", [])
    if not isinstance(segments, list):
        return "`segments` must be a list"
    for s in segments:
        if not (isinstance(s, dict) and safe_name(s.get("name"))
                and isinstance(s.get("rows"), int) and s["rows"] >= 0):
            return f"a segment entry is malformed: {str(s)[:80]}"
    if m.get("deleted") is not None and not safe_name(m["deleted"]):
        return f"`deleted` names no file: {str(m['deleted'])[:80]!r}"
    ann = m.get("ann")
    if ann is not None and not (isinstance(ann, dict) and safe_name(ann.get("file"))):
        return "`ann` is malformed"
    files = m.get("files", {})
    if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("size"), int) for e in files.values()):
        return "`files` is malformed"
    for key in ("model", "schema", "audio", "calibration"):
        if m.get(key) is not None and not isinstance(m[key], dict):
            return f"`{key}` is malformed"
    return None


def referenced(manifest: Mapping[str, Any]) -> list[str]:
    """Paths (relative to the store) of every file a manifest names."""
    out = []
    for s in manifest.get("segments", []):
        out += [f"segments/{s['name']}.parquet", f"segments/{s['name']}.npy"]
    if manifest.get("deleted"):
        out.append(manifest["deleted"])
    ann = manifest.get("ann") or {}
    if ann.get("file"):
        out.append(ann["file"])
    return out


def check_files(root: Path, manifest: Mapping[str, Any], *, full: bool | None = None
                ) -> list[tuple[str, str]]:
    """Problems with the files a manifest names: (file, what is wrong); [] when sound.

    Always: existence, size and header. Checksums: all of them with `full=True`; none
    with False; None (opening a store): each file once per process when small enough.
    """
    problems: list[tuple[str, str]] = []
    entries = manifest.get("files") or {}
    rows = {f"segments/{s['name']}.npy": s["rows"] for s in manifest.get("segments", [])}
    dim = manifest.get("dim")
    limit = verify_max_bytes()
    for rel in referenced(manifest):
        path = root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            problems.append((rel, "missing"))
            continue
        except OSError as e:
            problems.append((rel, f"unreadable ({e.strerror})"))
            continue
        entry = entries.get(rel)
        if entry is not None and st.st_size != entry["size"]:
            problems.append((rel, f"size {st.st_size} bytes, {entry['size']} recorded"))
            continue
        try:
            header = _check_header(path, st.st_size, rows.get(rel), dim)
        except OSError as e:
            header = f"unreadable ({e.strerror})"
        if header:
            problems.append((rel, header))
            continue
        if entry is None or "hash" not in entry or full is False:
            continue
        stamp = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if full is None and (st.st_size > limit or stamp in _verified):
            continue
        algorithm = str(entry["hash"]).split(":", 1)[0]
        try:
            digest = file_hash(path, algorithm)
        except OSError as e:
            problems.append((rel, f"unreadable ({e.strerror})"))
            continue
        if digest != entry["hash"]:
            problems.append((rel, "checksum mismatch (its bytes changed since written)"))
            continue
        with _verified_lock:
            _verified.add(stamp)
    return problems


def _check_header(path: Path, size: int, rows: int | None, dim: int | None) -> str | None:
    """What is wrong with a file's header and size, or None."""
    name = path.name
    with open(path, "rb") as f:
        if name.endswith(".parquet"):
            head = f.read(4)
            if size < 12:
                return "truncated"
            f.seek(size - 4)
            if head != b"PAR1" or f.read(4) != b"PAR1":
                return "not a complete Parquet file (truncated or overwritten)"
            return None
        if name.endswith(".npy"):
            return _check_npy(f, size, rows, dim if rows is not None else None)
        if name.endswith(".faiss") and size < 16:
            return "truncated"
    return None


def _check_npy(f: Any, size: int, rows: int | None, dim: int | None) -> str | None:
    magic = f.read(10)
    if len(magic) < 10 or magic[:6] != b"\x93NUMPY":
        return "not a .npy file"
    if magic[6] == 1:
        hlen, start = int.from_bytes(magic[8:10], "little"), 10
    else:
        hlen, start = int.from_bytes(magic[8:10] + f.read(2), "little"), 12
    if hlen > 65536:
        return "damaged .npy header"
    try:
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        shape = tuple(int(x) for x in header["shape"])
        descr = str(header["descr"])
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError):
        return "damaged .npy header"
    itemsize = {"<f4": 4, "<i8": 8, "<f8": 8}.get(descr)
    if itemsize is None:
        return f"unexpected .npy data type {descr}"
    count = 1
    for x in shape:
        count *= x
    if size != start + hlen + count * itemsize:
        return (f"truncated or padded: {size} bytes, {start + hlen + count * itemsize} "
                f"expected for shape {shape}")
    if rows is not None and (len(shape) != 2 or shape[0] != rows
                             or (dim and shape[1] != dim)):
        return f"shape {shape} does not match the manifest ({rows} rows of {dim})"
    return None


def damaged(root: Path, problems: list[tuple[str, str]]) -> StoreDamagedError:
    """One error line naming the damaged files and what to run."""
    shown = "; ".join(f"{f}: {what}" for f, what in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return StoreDamagedError(f"store {root} is damaged: {shown}{more}; run `mmsearch doctor "
                             f"--store {root}` to check it, `--repair` to fix it")
