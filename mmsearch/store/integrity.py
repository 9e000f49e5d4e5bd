"""Checksums, cheap header checks and manifest validation for store files.

The manifest records, for every file it names, its size and a checksum (`files`:
name -> {"size", "hash"}; the hash is "xxh3_64:<hex>" when the `xxhash` package is
installed, else "blake2b:<hex>"). Opening a store checks every file's size and header;
each file's checksum is verified in full the first time it is read after it changed on
disk, when it is at most `MMSEARCH_VERIFY_MAX_MB` (default 1024). `mmsearch doctor`
verifies every checksum.

Files are immutable, so a verification holds until the file changes. Like git's index,
`STORE/.verified` records, for each file verified (by the writer right after writing it,
or by the first reader to check it), its inode, size, mtime and ctime and the checksum it
matched. A file whose stat still equals its record is trusted without being read again,
in any process; any write through the file system changes its ctime (which user programs
cannot set back), so a changed file is verified again before use. The record is advisory:
when it is missing, unreadable or cannot be written (a read-only store), files are
verified as before, once per process. Damage below the file system (bit rot) leaves the
stat alone: `mmsearch doctor` reads everything.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
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
RECORD = ".verified"
#: a file's (inode, size, mtime_ns, ctime_ns)
Stamp = tuple[int, int, int, int]
#: absolute path -> (stamp, checksum) of the files this process verified or wrote
_verified: dict[str, tuple[Stamp, str]] = {}
_verified_lock = threading.Lock()


def _stamp(st: os.stat_result) -> Stamp:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


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
        _verified[str(path)] = (_stamp(st), entry["hash"])
    return entry


def read_record(root: Path) -> dict[str, tuple[Stamp, str]]:
    """`STORE/.verified`: file -> (stamp, checksum) when last verified ({} if unreadable)."""
    try:
        raw = json.loads((root / RECORD).read_text())
        return {rel: (tuple(int(x) for x in v[:4]), str(v[4]))  # type: ignore[misc]
                for rel, v in raw["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


def write_record(root: Path, manifest: Mapping[str, Any]) -> None:
    """Record the files of `manifest` this process verified (or wrote) and that are
    unchanged since; best effort (a read-only store keeps verifying once per process)."""
    entries = manifest.get("files") or {}
    old = read_record(root)
    files = {}
    for rel in referenced(manifest):
        path = root / rel
        want = (entries.get(rel) or {}).get("hash")
        try:
            stamp = _stamp(path.stat())
        except OSError:
            continue
        for seen in (_verified.get(str(path)), old.get(rel)):  # this process's, or earlier
            if seen is not None and seen == (stamp, want):
                files[rel] = [*stamp, want]
                break
    if files == {rel: [*v[0], v[1]] for rel, v in old.items()}:
        return
    tmp = root / f".{RECORD}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        tmp.write_text(json.dumps({"files": files}))
        os.replace(tmp, root / RECORD)  # no fsync: a record lost in a crash costs a re-read
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


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


def referenced(manifest: Mapping[str, Any], files: Mapping[str, Any] | None = None
               ) -> list[str]:
    """Paths (relative to the store) of every file a manifest names.

    A segment's `.arrow` copy counts when the manifest's `files` (or `files`) lists it.
    """
    out = []
    files = manifest.get("files") or {} if files is None else files
    for s in manifest.get("segments", []):
        out += [f"segments/{s['name']}.parquet", f"segments/{s['name']}.npy"]
        if f"segments/{s['name']}.arrow" in files:
            out.append(f"segments/{s['name']}.arrow")
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
    record = read_record(root) if full is None else {}
    newly = False
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
        stamp = _stamp(st)
        if full is None and (st.st_size > limit
                             or _verified.get(str(path)) == (stamp, entry["hash"])
                             or record.get(rel) == (stamp, entry["hash"])):
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
            _verified[str(path)] = (stamp, digest)
        newly = True
    if newly:
        write_record(root, manifest)
    return problems


def _check_header(path: Path, size: int, rows: int | None, dim: int | None) -> str | None:
    """What is wrong with a file's header and size, or None."""
    name = path.name
    with open(path, "rb") as f:
        for suffix, magic, kind in ((".parquet", b"PAR1", "Parquet"),
                                    (".arrow", b"ARROW1", "Arrow")):
            if name.endswith(suffix):  # the format's magic bytes open and close the file
                head = f.read(len(magic))
                if size < 12:
                    return "truncated"
                f.seek(size - len(magic))
                if head != magic or f.read(len(magic)) != magic:
                    return f"not a complete {kind} file (truncated or overwritten)"
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
