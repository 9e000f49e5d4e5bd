"""Damaged stores: detected and named (never a traceback, never deletion), repaired by the
doctor with what was lost listed; a missing manifest never leads to data loss."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mmsearch
from mmsearch.errors import StoreDamagedError
from mmsearch.store import doctor, integrity
from mmsearch.store.store import Store


def _vec(seed: int, d: int = 8) -> list[float]:
    v = np.random.default_rng(seed).normal(size=d)
    return (v / np.linalg.norm(v)).tolist()


def _make(tmp_path, index_threshold: int | None = None):
    """A store of 3 segments (ids a0-a9, b0-b9, c0-c9), one of them updated, one deleted."""
    params = {"threshold": index_threshold, "m": 4, "nlist": 2} if index_threshold else None
    col = mmsearch.open(tmp_path / "s", index_params=params)
    for seg in "abc":
        col.upsert([{"id": f"{seg}{i}", "vector": _vec(ord(seg) * 20 + i), "n": i}
                    for i in range(10)])
    col.upsert([{"id": "a1", "vector": _vec(999), "n": 100}])   # replaces a1
    col.delete(["b2"])
    return col


def _segments(col):
    return [s["name"] for s in json.loads((col.path / "manifest.json").read_text())["segments"]]


def _flip(path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_missing_manifest_refuses_everything_and_deletes_nothing(tmp_path, cli):
    col = _make(tmp_path)
    files = sorted(p.name for p in (col.path / "segments").iterdir())
    (col.path / "manifest.json").unlink()
    for args in (["info"], ["query", "x"], ["remove", str(tmp_path / "nothing")]):
        r = cli(*args, "--store", col.path)
        assert r.exit_code == 1, (args, r.output)
        assert "manifest.json" in r.stderr and "mmsearch doctor" in r.stderr
        assert "Traceback" not in r.output
    (tmp_path / "pics").mkdir()
    r = cli("index", tmp_path / "pics", "--store", col.path)
    assert r.exit_code == 1 and "doctor" in r.stderr
    with pytest.raises(StoreDamagedError, match=r"manifest\.json"):
        mmsearch.open(col.path).upsert([{"id": "z", "vector": _vec(1)}])
    assert sorted(p.name for p in (col.path / "segments").iterdir()) == files  # all kept
    # the doctor names it, and rebuilds the manifest from the segments
    r = cli("doctor", "--store", col.path)
    assert r.exit_code == 1 and "manifest.json: missing" in r.stdout
    r = cli("doctor", "--repair", "--store", col.path)
    assert r.exit_code == 0, r.output
    fixed = mmsearch.open(col.path)
    assert len(fixed) == 29                                 # b2 stays deleted
    hit = fixed.search(vector=_vec(999), k=1)[0]
    assert hit.id == "a1" and hit.n == 100                  # the update wins, once
    assert fixed.search(vector=_vec(999), k=30).__len__() == 29
    fixed.upsert([{"id": "z", "vector": _vec(1)}])          # writable again
    assert len(mmsearch.open(col.path)) == 30


@pytest.mark.parametrize("damage", ["truncate_parquet", "flip_parquet", "truncate_npy",
                                    "flip_npy", "drop_segment", "manifest_list",
                                    "manifest_garbage", "manifest_bad_segment"])
def test_damaged_files_are_named_in_one_line(tmp_path, cli, damage):
    col = _make(tmp_path)
    name = _segments(col)[1]
    seg = col.path / "segments"
    manifest = col.path / "manifest.json"
    if damage == "truncate_parquet":
        p = seg / f"{name}.parquet"
        p.write_bytes(p.read_bytes()[:-50])
    elif damage == "flip_parquet":
        _flip(seg / f"{name}.parquet")
    elif damage == "truncate_npy":
        p = seg / f"{name}.npy"
        p.write_bytes(p.read_bytes()[:-4])
    elif damage == "flip_npy":
        _flip(seg / f"{name}.npy", offset=200)          # inside the vector data
    elif damage == "drop_segment":
        (seg / f"{name}.npy").unlink()
    elif damage == "manifest_list":
        manifest.write_text("[1, 2, 3]")
    elif damage == "manifest_garbage":
        manifest.write_text("{not json")
    elif damage == "manifest_bad_segment":
        m = json.loads(manifest.read_text())
        m["segments"][0] = {"name": "../../etc/passwd", "rows": "many"}
        manifest.write_text(json.dumps(m))
    r = cli("info", "--store", col.path)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "keeps changing" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and "mmsearch doctor" in lines[0]
    if damage.endswith(("parquet", "npy", "segment")) and not damage.startswith("manifest"):
        assert name in lines[0]
    with pytest.raises(StoreDamagedError):
        mmsearch.open(col.path).search(vector=_vec(1))
    r = cli("doctor", "--store", col.path)
    assert r.exit_code == 1 and "damaged:" in r.stdout
    r = cli("doctor", "--repair", "--store", col.path)
    assert r.exit_code == 0, r.output
    fixed = mmsearch.open(col.path)
    n = len(fixed)
    if damage.startswith("manifest"):
        assert n == 29                 # rebuilt from the segments: nothing lost
    else:
        assert n == 20 and "lost: 10 row(s)" in r.stdout
        if damage.endswith("npy"):      # the ids are read from the intact .parquet
            assert "b0" in r.stdout
            assert "b0" in next((col.path / "damaged").glob("lost-*.txt")).read_text()
    assert fixed.search(vector=_vec(ord("c") * 20 + 3), k=1)[0].id == "c3"
    assert doctor.check(col.path).healthy


def test_flipped_bytes_in_the_index_file_are_detected_and_repaired(tmp_path, cli):
    col = _make(tmp_path, index_threshold=20)
    ann = json.loads((col.path / "manifest.json").read_text())["ann"]["file"]
    _flip(col.path / ann)
    r = cli("info", "--store", col.path)
    assert r.exit_code == 1 and ann in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("doctor", "--repair", "--store", col.path)
    assert r.exit_code == 0 and "index" in r.stdout
    fixed = mmsearch.open(col.path)
    assert len(fixed) == 29 and fixed.search(vector=_vec(999), k=1)[0].id == "a1"


def test_a_commit_validates_before_the_swap(tmp_path, monkeypatch):
    col = _make(tmp_path)
    before = (col.path / "manifest.json").read_text()
    from mmsearch.store import store as store_mod

    real = store_mod._write_segment

    def short_write(seg_dir, name, batch, dim, stamp):
        entries = real(seg_dir, name, batch, dim, stamp)
        p = seg_dir / f"{name}.npy"
        os.truncate(p, p.stat().st_size - 4)      # the disk kept less than was written
        return entries

    monkeypatch.setattr(store_mod, "_write_segment", short_write)
    with pytest.raises(mmsearch.MmsearchError, match="abandoned"):
        col.upsert([{"id": "new", "vector": _vec(5)}])
    monkeypatch.undo()
    assert (col.path / "manifest.json").read_text() == before
    assert len(mmsearch.open(col.path)) == 29


def test_manifest_records_a_checksum_per_file(tmp_path):
    col = _make(tmp_path)
    m = json.loads((col.path / "manifest.json").read_text())
    names = {f"segments/{s['name']}.{ext}" for s in m["segments"]
             for ext in ("parquet", "npy", "arrow")}
    names.add(m["deleted"])
    assert set(m["files"]) == names
    assert all(e["hash"].split(":")[0] in ("xxh3_64", "blake2b") for e in m["files"].values())
    assert doctor.check(col.path).healthy
    Store(col.path).verify(full=True)


def test_http_answers_503_for_a_damaged_store(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmsearch.serve import create_app

    col = _make(tmp_path)
    client = TestClient(create_app(col))
    assert client.post("/search", json={"vector": _vec(1), "k": 2}).status_code == 200
    name = _segments(col)[0]
    (col.path / "segments" / f"{name}.npy").unlink()
    # a commit by another process makes the server reload, and find the damage
    m = json.loads((col.path / "manifest.json").read_text())
    m["generation"] += 1
    (col.path / "manifest.json").write_text(json.dumps(m))
    r = client.post("/search", json={"vector": _vec(1), "k": 2})
    assert r.status_code == 503, r.text
    assert name in r.json()["detail"] and "doctor" in r.json()["detail"]
    assert client.get("/health").status_code == 200


def test_the_doctor_checks_and_repairs_each_shard(tmp_path):
    col = mmsearch.open(tmp_path / "s", shards=2)
    col.upsert([{"id": f"a{i}", "vector": _vec(i)} for i in range(10)])
    assert doctor.check(col.path).healthy and doctor.check(col.path).rows == 10
    npy = next((col.path / "shard-000" / "segments").glob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:-4])
    found = doctor.check(col.path)
    assert not found.healthy and found.problems[0][0].startswith("shard-000/segments/")
    fixed = doctor.repair(col.path)
    assert fixed.healthy and fixed.lost_rows == len(fixed.lost_ids) > 0
    assert len(mmsearch.open(col.path)) == 10 - fixed.lost_rows


def _new_process(monkeypatch) -> list[str]:
    """Forget what this process verified (as a new process would); returns the list of
    files whose checksum gets computed from now on."""
    monkeypatch.setattr(integrity, "_verified", {})
    hashed: list[str] = []
    real = integrity.file_hash

    def counting(path, algorithm=None):
        hashed.append(path.name)
        return real(path, algorithm)

    monkeypatch.setattr(integrity, "file_hash", counting)
    return hashed


def test_a_new_process_trusts_files_unchanged_since_verified(tmp_path, monkeypatch):
    col = _make(tmp_path)
    record = json.loads((col.path / integrity.RECORD).read_text())["files"]
    assert set(record) == set(json.loads((col.path / "manifest.json").read_text())["files"])
    hashed = _new_process(monkeypatch)
    assert mmsearch.open(col.path).search(vector=_vec(999), k=1)[0].id == "a1"
    assert hashed == []                          # the writer's record is trusted
    (col.path / integrity.RECORD).write_text("{garbage")
    assert len(mmsearch.open(col.path)) == 29    # an unreadable record: verify again
    assert len(hashed) == len(record)
    assert json.loads((col.path / integrity.RECORD).read_text())["files"] == record


@pytest.mark.parametrize("ext", ["npy", "parquet", "arrow"])
def test_bytes_changed_through_the_file_system_are_verified_again(tmp_path, monkeypatch,
                                                                   cli, ext):
    col = _make(tmp_path)
    name = _segments(col)[1]
    path = col.path / "segments" / f"{name}.{ext}"
    st = path.stat()
    _flip(path, offset=len(path.read_bytes()) - 20 if ext == "npy" else None)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))   # same size and mtime
    _new_process(monkeypatch)
    with pytest.raises(StoreDamagedError, match=f"{name}.{ext}: checksum mismatch"):
        mmsearch.open(col.path).search(vector=_vec(1))
    r = cli("info", "--store", col.path)
    assert r.exit_code == 1 and f"{name}.{ext}" in r.stderr and "Traceback" not in r.output


def test_a_damaged_arrow_copy_is_repaired_from_parquet(tmp_path, cli):
    col = _make(tmp_path)
    name = _segments(col)[1]
    _flip(col.path / "segments" / f"{name}.arrow")
    r = cli("doctor", "--repair", "--store", col.path)
    assert r.exit_code == 0 and "Arrow copy" in r.stdout and "lost" not in r.stdout
    fixed = mmsearch.open(col.path)
    assert len(fixed) == 29 and fixed.search(vector=_vec(999), k=1)[0].id == "a1"
    assert doctor.check(col.path).healthy
    fixed.upsert([{"id": "z", "vector": _vec(1)}])          # the next write copies it again
    assert (col.path / "segments" / f"{name}.arrow").exists()
    assert doctor.check(col.path).healthy and len(mmsearch.open(col.path)) == 30


def test_a_store_without_arrow_copies_reads_parquet_until_the_next_write(tmp_path):
    col = _make(tmp_path)
    m = json.loads((col.path / "manifest.json").read_text())
    for rel in [f for f in m["files"] if f.endswith(".arrow")]:   # as an older mmsearch wrote
        del m["files"][rel]
        (col.path / rel).unlink()
    (col.path / "manifest.json").write_text(json.dumps(m))
    old = mmsearch.open(col.path)
    assert len(old) == 29 and old.search(vector=_vec(999), k=1)[0].n == 100
    old.upsert([{"id": "z", "vector": _vec(1)}])
    m = json.loads((col.path / "manifest.json").read_text())
    assert all(f"segments/{s['name']}.arrow" in m["files"] for s in m["segments"])
    assert doctor.check(col.path).healthy and len(mmsearch.open(col.path)) == 30
