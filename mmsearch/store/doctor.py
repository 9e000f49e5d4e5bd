"""`mmsearch doctor`: verify every file of a store, and repair what can be repaired.

Checking reads the manifest, every checksum, every segment's Parquet footer and `.npy`
header, and the side stores (`spaces/*`). Repairing (under the store's write lock):

- a missing or unreadable manifest is rebuilt from the intact segments: each segment's
  Parquet metadata carries the model, dimensions and audio settings it was written with;
  the newest tombstone file is applied; where an id has rows in several segments (an
  update whose commit was interrupted), the newest segment's rows win; the vector index
  and the score calibration are dropped (rebuilt by the next write or `--rebuild-index`).
- a damaged segment is dropped and the ids it held are listed (also written to
  `damaged/lost-<time>.txt`); a damaged index file is dropped (retrained later); damaged
  files are moved into `damaged/`, never deleted.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmsearch.errors import StoreLockedError, UsageError
from mmsearch.fileio import write_json_atomic
from mmsearch.store import columns, integrity
from mmsearch.store.store import FORMAT, MANIFEST

SPACES = "spaces"


@dataclass
class DoctorReport:
    """What `check`/`repair` found and did."""

    store: str
    problems: list[tuple[str, str]] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)
    lost_rows: int = 0
    rows: int = 0

    @property
    def healthy(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"damaged: {f}: {what}" for f, what in self.problems]
        out += [f"repaired: {r}" for r in self.repairs]
        if self.lost_rows:
            shown = ", ".join(self.lost_ids[:10])
            more = f" and {len(self.lost_ids) - 10} more" if len(self.lost_ids) > 10 else ""
            out.append(f"lost: {self.lost_rows} row(s)" + (f" of {len(self.lost_ids)} id(s): "
                                                           f"{shown}{more}" if shown else ""))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "healthy": self.healthy,
                "problems": [{"file": f, "problem": w} for f, w in self.problems],
                "repairs": self.repairs, "lost_rows": self.lost_rows,
                "lost_ids": self.lost_ids, "rows": self.rows}


def check(root: str | os.PathLike[str]) -> DoctorReport:
    """Verify a store (and its side stores) completely; nothing is changed."""
    root = Path(root)
    if not list(_stores(root)):
        raise UsageError(f"no store at {root}")
    report = DoctorReport(str(root))
    for prefix, folder in _stores(root):
        manifest, problem = _manifest(folder)
        if problem:
            report.problems.append((prefix + MANIFEST, problem))
            continue
        report.problems += [(prefix + f, w) for f, w in _check_store(folder, manifest)]
        if SPACES not in prefix:
            report.rows += int(manifest.get("rows") or 0)
    return report


def repair(root: str | os.PathLike[str]) -> DoctorReport:
    """Repair a store in place (see the module docstring); returns what was done."""
    root = Path(root)
    found = check(root)
    report = DoctorReport(str(root))
    if found.healthy:
        report.rows = found.rows
        return report
    with _locked(root):
        for prefix, folder in _stores(root):
            _repair_store(folder, prefix, report)
    after = check(root)
    report.problems = after.problems
    report.rows = after.rows
    return report


# -- checking ---------------------------------------------------------------------------
def _stores(root: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """(prefix, folder) of the store and its side stores; each shard of a sharded store."""
    if (root / "shards.json").exists():
        for shard in sorted(root.glob("shard-*")):
            if shard.is_dir():
                yield from _stores(shard, f"{prefix}{shard.name}/")
        return
    if not (root / MANIFEST).exists() and not _data_files(root):
        return
    yield prefix, root
    spaces = root / SPACES
    if spaces.is_dir():
        for sub in sorted(spaces.iterdir()):
            if sub.is_dir() and ((sub / MANIFEST).exists() or _data_files(sub)):
                yield f"{prefix}{SPACES}/{sub.name}/", sub


def _manifest(folder: Path) -> tuple[dict[str, Any], str | None]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        n = len(_data_files(folder))
        return {}, (f"missing, but {n} data file(s) remain" if n else None)
    except (OSError, ValueError) as e:
        return {}, f"unreadable ({str(e)[:100]})"
    problem = integrity.manifest_problem(manifest)
    return ({}, problem) if problem else (manifest, None)


def _check_store(folder: Path, manifest: dict[str, Any]) -> list[tuple[str, str]]:
    problems = integrity.check_files(folder, manifest, full=True)
    bad = {f for f, _ in problems}
    for s in manifest.get("segments", []):
        rel = f"segments/{s['name']}.parquet"
        if rel in bad:
            continue
        why = _parquet_problem(folder / rel, s["rows"])
        if why:
            problems.append((rel, why))
    return problems


def _parquet_problem(path: Path, rows: int | None) -> str | None:
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as e:
        return f"unreadable ({str(e).splitlines()[0][:100]})"
    if rows is not None and len(table) != rows:
        return f"{len(table)} rows, {rows} recorded"
    return None


def _data_files(folder: Path) -> list[Path]:
    seg = folder / "segments"
    files = [f for f in seg.iterdir() if not f.name.startswith(".")] if seg.is_dir() else []
    return files + sorted(folder.glob("deleted-*.npy")) + sorted(folder.glob("ann-*.faiss"))


# -- repairing --------------------------------------------------------------------------
@contextmanager
def _locked(root: Path) -> Iterator[None]:
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLockedError(f"another process is writing to {root}; stop it "
                                   "before repairing") from None
        yield
    finally:
        os.close(fd)


def _repair_store(folder: Path, prefix: str, report: DoctorReport) -> None:
    manifest, problem = _manifest(folder)
    if problem:
        _rebuild(folder, prefix, report)
        return
    problems = _check_store(folder, manifest)
    if not problems:
        return
    bad = {f for f, _ in problems}
    manifest = dict(manifest)
    keep = []
    entries = dict(manifest.get("files") or {})
    for s in manifest.get("segments", []):
        files = {f"segments/{s['name']}.parquet", f"segments/{s['name']}.npy"}
        arrow = f"segments/{s['name']}.arrow"
        if arrow in bad and not files & bad:  # only the Arrow copy: read from Parquet again
            _quarantine(folder, {arrow})
            entries.pop(arrow, None)
            report.repairs.append(f"dropped the Arrow copy {prefix}{arrow} (its Parquet "
                                  "file is intact; the next write makes a new copy)")
        if files & bad:
            if arrow in entries:
                files.add(arrow)
            ids = _ids_of(folder / f"segments/{s['name']}.parquet")
            report.lost_rows += s["rows"]
            report.lost_ids += ids
            _quarantine(folder, files)
            report.repairs.append(f"dropped segment {prefix}segments/{s['name']} "
                                  f"({s['rows']} rows)")
        else:
            keep.append(s)
    manifest["segments"] = keep
    manifest["files"] = entries
    ann = (manifest.get("ann") or {}).get("file")
    if ann and ann in bad:
        _quarantine(folder, {ann})
        manifest["ann"] = None
        report.repairs.append(f"dropped the vector index {prefix}{ann} (retrained by the "
                              "next write or `mmsearch index --rebuild-index`)")
    deleted = manifest.get("deleted")
    if deleted and deleted in bad:
        _quarantine(folder, {deleted})
        manifest["deleted"] = None
        report.repairs.append(f"dropped the damaged tombstones {prefix}{deleted}: rows "
                              "deleted earlier may reappear (replaced ones are deduplicated)")
    _dedupe(folder, manifest)
    _write(folder, manifest)
    _write_lost(folder, report)


def _rebuild(folder: Path, prefix: str, report: DoctorReport) -> None:
    """A manifest from the intact segments in the folder (see the module docstring)."""
    segs: list[tuple[int, str, int, dict[str, Any]]] = []
    for parquet in sorted((folder / "segments").glob("*.parquet")):
        name = parquet.stem
        npy = parquet.with_suffix(".npy")
        why = _parquet_problem(parquet, None)
        rows = pq.read_metadata(parquet).num_rows if not why else 0
        if not why:
            why = integrity._check_header(npy, npy.stat().st_size, rows, None) \
                if npy.exists() else "its .npy file is missing"
        if why or not integrity.safe_name(name):
            ids = _ids_of(parquet)
            report.lost_rows += rows or len(ids)
            report.lost_ids += ids
            _quarantine(folder, {f"segments/{name}.parquet", f"segments/{name}.npy"})
            report.repairs.append(f"left out damaged segment {prefix}segments/{name} ({why})")
            continue
        stamp = json.loads((pq.read_schema(parquet).metadata or {}).get(b"mmsearch", b"{}"))
        segs.append((int(stamp.get("generation") or 0), name, rows, stamp))
    segs.sort()
    newest = segs[-1][3] if segs else {}
    manifest: dict[str, Any] = {
        "format": FORMAT, "generation": (segs[-1][0] if segs else 0) + 1,
        "segments": [{"name": n, "rows": r} for _, n, r, _ in segs],
        "model": newest.get("model"), "dim": newest.get("dim"), "audio": newest.get("audio"),
        "created_at": time.time(), "deleted": None, "ann": None}
    for tomb in sorted(folder.glob("deleted-*.npy"), key=_generation_of, reverse=True):
        try:
            np.load(tomb, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            continue
        manifest["deleted"] = tomb.name  # the newest readable tombstones hold all before
        break
    keys = [pq.read_table(folder / f"segments/{n}.parquet", columns=["key"])
            .column("key").to_numpy() for _, n, _, _ in segs]
    top = max((int(k.max()) for k in keys if len(k)), default=-1)
    manifest["next_key"] = top + 1
    schemas = [pq.read_schema(folder / f"segments/{n}.parquet").remove_metadata()
               for _, n, _, _ in segs]
    if schemas:
        manifest["schema"] = columns.encode(pa.unify_schemas(schemas,
                                                             promote_options="permissive"))
    _dedupe(folder, manifest)
    _write(folder, manifest)
    report.repairs.append(f"rebuilt {prefix}{MANIFEST} from {len(segs)} segment(s)")
    _write_lost(folder, report)


def _generation_of(path: Path) -> int:
    tail = path.stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _dedupe(folder: Path, manifest: dict[str, Any]) -> None:
    """Tombstones for exactly the rows to hide: deleted keys still present, and the rows
    of ids that also have rows in a newer segment."""
    deleted = np.zeros(0, np.int64)
    if manifest.get("deleted"):
        deleted = np.load(folder / manifest["deleted"], allow_pickle=False)
    newest: dict[str, int] = {}
    tables = []
    for i, s in enumerate(manifest["segments"]):
        t = pq.read_table(folder / f"segments/{s['name']}.parquet", columns=["key", "id"])
        tables.append(t)
        live = t.filter(pa.array(~np.isin(t.column("key").to_numpy(), deleted)))
        for item in pc.unique(live.column("id")).to_pylist():
            newest[item] = i
    hide = [np.zeros(0, np.int64)]
    for i, t in enumerate(tables):
        keys = t.column("key").to_numpy()
        old = np.array([newest.get(x, i) != i for x in t.column("id").to_pylist()], bool)
        hide.append(keys[np.isin(keys, deleted) | old])
    hide = np.unique(np.concatenate(hide)).astype(np.int64)
    if np.array_equal(hide, np.sort(deleted)):
        return
    manifest["deleted"] = None
    if len(hide):
        name = f"deleted-{manifest['generation'] + 1}.npy"
        with open(folder / name, "wb") as f:
            np.save(f, hide, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        manifest["deleted"] = name


def _write(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["generation"] = int(manifest.get("generation") or 0) + 1
    manifest["files"] = {rel: integrity.file_entry(folder / rel)
                         for rel in integrity.referenced(manifest)}
    deleted = 0
    if manifest.get("deleted"):
        deleted = len(np.load(folder / manifest["deleted"], allow_pickle=False))
    manifest["rows"] = max(0, sum(s["rows"] for s in manifest["segments"]) - deleted)
    manifest["updated_at"] = time.time()
    manifest.pop("calibration", None)
    integrity.check_manifest(manifest)
    write_json_atomic(folder / MANIFEST, manifest)
    integrity.write_record(folder, manifest)


def _ids_of(parquet: Path) -> list[str]:
    try:
        return [str(i) for i in pc.unique(pq.read_table(parquet, columns=["id"])
                                          .column("id")).to_pylist()]
    except (OSError, pa.ArrowException, KeyError):
        return []


def _quarantine(folder: Path, files: set[str]) -> None:
    dest = folder / "damaged"
    dest.mkdir(exist_ok=True)
    for rel in files:
        src = folder / rel
        if src.exists():
            shutil.move(str(src), dest / f"{int(time.time())}-{src.name}")


def _write_lost(folder: Path, report: DoctorReport) -> None:
    if report.lost_ids:
        dest = folder / "damaged"
        dest.mkdir(exist_ok=True)
        (dest / f"lost-{int(time.time())}.txt").write_text("\n".join(report.lost_ids) + "\n")
