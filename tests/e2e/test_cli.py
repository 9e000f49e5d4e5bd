"""End-to-end CLI tests on temporary folders with a tiny random model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_photo, run_cli_process


def _index(cli, photos: Path, store: Path, spec: str, *extra: str):
    result = cli("index", photos, "--store", store, "--model", spec, *extra)
    assert result.exit_code == 0, result.stderr
    return result


def _json_query(cli, store: Path, *args: str) -> list[dict]:
    result = cli("query", *args, "--store", store, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _summary(result) -> dict[str, int]:
    line = result.stderr.strip().splitlines()[-1]
    counts = {}
    for part in line.split(" in ")[0].split(", "):
        n, word = part.split(" ")
        counts[word] = int(n)
    return counts


def test_index_then_query_text_prints_ranked_table(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    summary = _summary(_index(cli, photos, store, tiny_spec))
    assert summary == {"added": 8, "updated": 0, "renamed": 0, "removed": 0, "unchanged": 0,
                       "failed": 0}
    result = cli("query", "a red mug on a desk", "--store", store, "-k", "3")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    ranks = [int(line.split()[0]) for line in lines]
    scores = [float(line.split()[1]) for line in lines]
    assert ranks == [1, 2, 3] and scores == sorted(scores, reverse=True)
    assert all(Path(line.split()[2]).is_file() for line in lines)


def test_json_lines_have_contract_fields(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    _index(cli, photos, store, tiny_spec)
    hits = _json_query(cli, store, "dog", "-k", "5")
    assert len(hits) == 5
    for hit in hits:
        assert {"id", "path", "modality", "score"} <= hit.keys()
        assert hit["modality"] == "image" and Path(hit["path"]).is_file()
        assert isinstance(hit["score"], float)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len({h["id"] for h in hits}) == 5


def test_query_by_example_image_finds_itself_first(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    _index(cli, photos, store, tiny_spec)
    target = photos / "sub" / "shot.png"
    hits = _json_query(cli, store, "--image", target, "-k", "3")
    assert hits[0]["path"] == str(target)
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert hits[1]["score"] < hits[0]["score"]


def test_where_filters_on_size_exif_and_gps(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    _index(cli, photos, store, tiny_spec)
    wide = _json_query(cli, store, "dog", "-k", "10", "--where", "width >= 300")
    assert {Path(h["path"]).name for h in wide} == {"shot.png", "dated.jpg"}
    dated = _json_query(cli, store, "dog", "--where",
                        "width >= 300 AND taken_at >= '2020-01-01'")
    assert [Path(h["path"]).name for h in dated] == ["dated.jpg"]
    hit = dated[0]
    assert hit["camera_make"] == "Canon" and hit["camera_model"] == "EOS 5D"
    assert hit["taken_at"].startswith("2021-06-15T10:30")
    assert hit["gps_lat"] == pytest.approx(48.858, abs=1e-3)
    assert hit["gps_lon"] == pytest.approx(2.2944, abs=1e-3)
    nikon = _json_query(cli, store, "x", "--where", "camera_model LIKE 'Nikon%'")
    assert [Path(h["path"]).name for h in nikon] == ["old.jpg"]
    assert {"bytes", "mtime", "content_hash", "width", "height"} <= hit.keys()
    none = _json_query(cli, store, "dog", "--where", "width > 100000")
    assert none == []


def test_incremental_reindex_add_change_rename_delete(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    _index(cli, photos, store, tiny_spec)
    again = _summary(_index(cli, photos, store, tiny_spec))
    assert again["unchanged"] == 8 and again["added"] == 0

    (photos / "img0.jpg").rename(photos / "sub" / "moved.jpg")       # rename / move
    (photos / "img1.jpg").unlink()                                    # delete
    make_photo(photos / "img2.jpg", seed=99, size=(50, 60))           # change content
    make_photo(photos / "new.webp", seed=77, fmt="WEBP")              # add
    summary = _summary(_index(cli, photos, store, tiny_spec))
    assert summary == {"added": 1, "updated": 1, "renamed": 1, "removed": 1, "unchanged": 5,
                       "failed": 0}
    hits = _json_query(cli, store, "x", "-k", "100")
    names = sorted(Path(h["path"]).name for h in hits)
    assert names == sorted(["moved.jpg", "img2.jpg", "img3.jpg", "img4.jpg", "new.webp",
                            "shot.png", "dated.jpg", "old.jpg"])
    changed = next(h for h in hits if h["path"].endswith("img2.jpg"))
    assert changed["width"] == 50
    # the renamed file is found by its own pixels, with the old vector
    moved = _json_query(cli, store, "--image", photos / "sub" / "moved.jpg", "-k", "1")
    assert moved[0]["path"].endswith("moved.jpg") and moved[0]["similarity"] > 0.9999


def test_bad_files_are_skipped_counted_and_listed(cli, photos, tmp_path, tiny_spec):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("this is not an image")
    good = (photos / "img3.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (photos / "notes.txt").write_text("ignored: not media")
    os.symlink(photos, photos / "sub" / "loop")                       # a symlink loop
    os.symlink(photos / "missing.jpg", photos / "dangling.jpg")       # a broken link
    bad_name = os.fsencode(str(photos)) + b"/caf\xe9.jpg"
    with open(bad_name, "wb") as f:
        f.write(good)
    store = tmp_path / "store"
    result = _index(cli, photos, store, tiny_spec, "--verbose")
    summary = _summary(result)
    assert summary["added"] == 8
    assert summary["failed"] == 5
    for name, reason in [("empty.jpg", "empty file"), ("text.png", "not a recognised image"),
                         ("truncated.jpg", "truncated"), ("dangling.jpg", "broken symbolic"),
                         ("caf\\xe9.jpg", "not valid UTF-8")]:
        assert any(name in line and reason in line for line in result.stderr.splitlines()), name
    quiet = cli("index", photos, "--store", store)
    assert quiet.exit_code == 0 and "5 file(s) skipped" in quiet.stderr


def test_info_and_remove(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    _index(cli, photos, store, tiny_spec)
    info = json.loads(cli("info", "--store", store, "--json").stdout)
    assert info["items"] == 8 and info["modalities"] == {"image": 8}
    assert info["dim"] == 32 and info["index"] == "flat" and info["bytes_on_disk"] > 0
    assert info["model"].endswith(".pt")
    text = cli("info", "--store", store).stdout
    assert "8 image" in text and "flat" in text
    result = cli("remove", photos / "sub", "--store", store)
    assert result.exit_code == 0 and "removed 3" in result.stderr
    hits = _json_query(cli, store, "x", "-k", "100")
    assert len(hits) == 5 and not any("/sub/" in h["path"] for h in hits)


def test_usage_errors_exit_2_with_clear_messages(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    missing = cli("index", tmp_path / "nope", "--store", store, "--model", tiny_spec)
    assert missing.exit_code == 2 and "no such file or folder" in missing.stderr
    assert cli("query", "--store", store, "--bogus").exit_code == 2
    no_store = cli("query", "dog", "--store", tmp_path / "nothing")
    assert no_store.exit_code == 2 and "no store" in no_store.stderr
    _index(cli, photos, store, tiny_spec)
    bad_sql = cli("query", "dog", "--store", store, "--where", "no_such_col > 1")
    assert bad_sql.exit_code == 2 and "no_such_col" in bad_sql.stderr
    other = cli("query", "dog", "--store", store, "--model", "ViT-B-32:openai")
    assert other.exit_code == 2 and "was built with model" in other.stderr
    assert cli("query", "--store", store).exit_code == 2
    assert cli("query", "dog", "--store", store, "-k", "0").exit_code == 2


def test_store_from_environment_and_model_pinned(cli, photos, tmp_path, tiny_spec, monkeypatch):
    monkeypatch.setenv("MMSEARCH_STORE", str(tmp_path / "envstore"))
    assert cli("index", photos, "--model", tiny_spec, "-q").exit_code == 0
    assert (tmp_path / "envstore" / "manifest.json").is_file()
    # no --model needed afterwards: the store remembers it
    assert len(cli("query", "dog", "--json").stdout.splitlines()) == 8


def test_console_script_real_process(photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    exe = Path(sys.executable).parent / "mmsearch"
    assert exe.is_file(), "the mmsearch console script is installed beside python"
    done = subprocess.run([exe, "index", photos, "--store", store, "--model", tiny_spec],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "8 added" in done.stderr
    out = run_cli_process("query", "dog", "--store", store, "--json", "-k", "2")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2
    assert run_cli_process("index", "--store", store).returncode == 2
