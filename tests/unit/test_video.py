"""Videos: moments, scene changes, grouping, bad input, incremental runs, thumbnails."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from helpers import make_photo  # noqa: E402
from videos import SIZE, make_audio_only, make_video, scene_image  # noqa: E402

import mmsearch  # noqa: E402
from mmsearch.ingest import video as video_mod  # noqa: E402
from mmsearch.ingest.video import VideoOptions, decode_video, video_hash  # noqa: E402
from mmsearch.thumbnails import thumbnail  # noqa: E402


def spans(moments) -> list[tuple[float, float]]:
    return [(m.start_s, m.end_s) for m in moments]


# -- decoding -----------------------------------------------------------------------------

def test_static_video_is_one_moment(tmp_path):
    path = make_video(tmp_path / "static.mp4", [(1, 6.0)])
    decoded = decode_video(str(path))
    assert spans(decoded.moments) == [(0.0, 6.0)]
    assert decoded.sampled == 6 and not decoded.warnings
    assert decoded.meta["duration_s"] == 6.0 and decoded.meta["width"] == SIZE[0]
    assert decoded.meta["codec"] == "h264" and decoded.meta["fps"] == 4.0


def test_scene_changes_become_moments_covering_the_video(tmp_path):
    path = make_video(tmp_path / "cuts.mp4", [(1, 2.0), (2, 3.0), (3, 1.0)])
    decoded = decode_video(str(path))
    assert spans(decoded.moments) == [(0.0, 2.0), (2.0, 5.0), (5.0, 6.0)]


def test_sampling_rate_and_moving_content(tmp_path):
    path = make_video(tmp_path / "pan.mkv", [(4, 4.0)], moving=True, codec="mpeg4")
    decoded = decode_video(str(path), VideoOptions(fps=2.0))
    got = spans(decoded.moments)
    assert len(got) == 8
    assert got[0][0] == 0.0 and got[-1][1] == 4.0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(got))  # contiguous


def test_dense_keyframes_decode_only_keyframes(tmp_path):
    path = make_video(tmp_path / "intra.mp4", [(5, 2.0), (6, 2.0)], fps=8, gop=4)
    decoded = decode_video(str(path), VideoOptions(fps=1.0))
    assert decoded.decoded <= 8, "only keyframes (2 per second) were decoded, not 32 frames"
    assert spans(decoded.moments) == [(0.0, 2.0), (2.0, 4.0)]


def test_truncated_video_keeps_decoded_frames_and_warns(tmp_path):
    path = make_video(tmp_path / "cut.mkv", [(s, 1.0) for s in range(8)], codec="mpeg4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    decoded = decode_video(str(path))
    assert 1 <= len(decoded.moments) < 8
    assert decoded.warnings and "truncated" in " ".join(decoded.warnings)


def test_time_limit_is_enforced(tmp_path):
    path = make_video(tmp_path / "slow.mp4", [(1, 2.0)])
    with pytest.raises(video_mod.BadMediaError, match="time limit"):
        decode_video(str(path), VideoOptions(time_limit=1e-9))


def test_video_hash_samples_large_files(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    rng = np.random.default_rng(0)
    path.write_bytes(rng.integers(0, 256, 40 << 20, dtype=np.uint8).tobytes())
    full = video_hash(str(path))
    monkeypatch.setattr(video_mod, "FULL_HASH_BYTES", 1 << 20)
    sampled = video_hash(str(path))
    assert sampled != full and sampled == video_hash(str(path))
    with open(path, "r+b") as f:  # a change in the first 8 MiB is seen
        f.seek(100)
        f.write(b"changed")
    assert video_hash(str(path)) != sampled


# -- indexing and search --------------------------------------------------------------------

@pytest.fixture
def clips(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    make_video(root / "a.mp4", [(10, 2.0), (11, 2.0), (12, 2.0)])
    make_video(root / "b.mov", [(20, 3.0), (21, 3.0)], audio=True)
    make_video(root / "c.mkv", [(30, 1.0), (31, 1.0), (32, 1.0), (33, 1.0)], codec="mpeg4")

    make_photo(root / "photo.jpg", seed=40)
    return root


def _rows(store: Path):
    from mmsearch.store.store import Store

    table, vectors = Store(store).read_live()
    return table.to_pylist(), vectors


def test_index_videos_creates_moment_rows(clips, tmp_path, tiny_spec):
    store = tmp_path / "store"
    with mmsearch.open(store, model=tiny_spec) as col:
        report = col.index([clips], progress=False)
        assert (report.added, report.failed, report.partial) == (4, 0, 0)
        assert len(col) == 4
        assert col.info()["modalities"] == {"image": 1, "video": 3}
    rows, vectors = _rows(store)
    visual = [r for r in rows if r["channel"] == "visual"]
    assert len(rows) == len(vectors) and len(visual) == 1 + 3 + 2 + 4
    # b.mov's sound track (a tone) adds sound-tag rows when the YAMNet weights are present
    assert {(os.path.basename(r["path"]), r["channel"]) for r in rows
            if r["channel"] != "visual"} <= {("b.mov", "tags")}
    by_file: dict[str, list] = {}
    for r in visual:
        by_file.setdefault(os.path.basename(r["path"]), []).append(r)
    a = sorted(by_file["a.mp4"], key=lambda r: r["start_s"])
    assert [(r["start_s"], r["end_s"]) for r in a] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert len({r["id"] for r in a}) == 1 and {r["modality"] for r in a} == {"video"}
    assert a[0]["duration_s"] == 6.0 and a[0]["fps"] == 4.0 and a[0]["codec"] == "h264"
    assert a[0]["width"] == SIZE[0] and a[0]["height"] == SIZE[1]
    photo = by_file["photo.jpg"][0]
    assert photo["start_s"] is None and photo["modality"] == "image"


def test_best_moment_per_video(clips, tmp_path, tiny_spec):
    store = tmp_path / "store"
    with mmsearch.open(store, model=tiny_spec) as col:
        col.index([clips], progress=False)
        from PIL import Image

        query = Image.fromarray(scene_image(11))
        hits = col.search(image=query, k=10)
        assert len(hits) == 4, "one result per item, not one per frame"
        assert len({h.id for h in hits}) == 4
        best = hits[0]
        assert best.path.endswith("a.mp4") and (best.start_s, best.end_s) == (2.0, 4.0)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        only = col.search(image=query, k=10, modality="video")
        assert {h.modality for h in only} == {"video"} and len(only) == 3
        both = col.search(image=query, k=10, modality=["image", "video"])
        assert len(both) == 4
        assert len(col.search(text="a dog", k=2, modality="video")) == 2
        filtered = col.search(image=query, k=10, where="codec = 'mpeg4'")
        assert [os.path.basename(h.path) for h in filtered] == ["c.mkv"]
        with pytest.raises(mmsearch.UsageError, match="unknown modality"):
            col.search(text="x", modality="videos")


def test_cli_moments_json_table_modality_and_thumbnails(cli, clips, tmp_path, tiny_spec):
    from PIL import Image

    store = tmp_path / "store"
    result = cli("index", clips, "--store", store, "--model", tiny_spec, "--fps", "2")
    assert result.exit_code == 0, result.stderr
    query = tmp_path / "q.png"
    Image.fromarray(scene_image(21)).save(query)
    out = cli("query", "--image", query, "--store", store, "--json", "--modality", "video")
    assert out.exit_code == 0, out.stderr
    hits = [json.loads(line) for line in out.stdout.splitlines()]
    assert [h["modality"] for h in hits] == ["video"] * 3
    assert hits[0]["path"].endswith("b.mov")
    assert (hits[0]["start_s"], hits[0]["end_s"]) == (3.0, 6.0)
    assert hits[0]["duration_s"] == 6.0
    thumbs = tmp_path / "thumbs"
    table = cli("query", "--image", query, "--store", store, "-k", "2",
                "--modality", "image,video", "--thumbnails", thumbs)
    assert table.exit_code == 0, table.stderr
    first = table.stdout.splitlines()[0]
    assert first.split()[2].endswith("b.mov") and first.endswith("@ 0:03.0-0:06.0")
    written = sorted(p.name for p in thumbs.iterdir())
    assert len(written) == 2 and written[0] == "001-b-0003000ms.jpg"
    bad = cli("query", "x", "--store", store, "--modality", "sound")
    assert bad.exit_code == 2


def test_thumbnail_shows_the_moment(clips, tmp_path, tiny_spec):
    with mmsearch.open(tmp_path / "store", model=tiny_spec) as col:
        col.index([clips], progress=False)
        hits = col.search(vector=np.ones(32), k=10, where="path LIKE '%a.mp4'")
        assert len(hits) == 1
        hit = hits[0]
        image = thumbnail(hit, size=48)
        assert max(image.size) == 48
        expected = {0.0: 10, 2.0: 11, 4.0: 12}[hit.start_s]
        got = np.asarray(image.resize(SIZE), dtype=np.float32)
        errors = {seed: np.abs(got - scene_image(seed)).mean() for seed in (10, 11, 12)}
        assert min(errors, key=errors.get) == expected
        photo = col.search(vector=np.ones(32), k=1, modality="image")[0]
        assert thumbnail(photo, size=32).size[0] <= 32


def test_bad_videos_are_reported_and_partial_ones_kept(cli, tmp_path, tiny_spec):
    root = tmp_path / "media"
    root.mkdir()
    (root / "notes.mp4").write_text("this is not a video\n")
    (root / "empty.webm").write_bytes(b"")
    make_audio_only(root / "song.m4v")
    cut = make_video(root / "cut.mkv", [(s, 1.0) for s in range(8)], codec="mpeg4")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    make_video(root / "ok.avi", [(50, 2.0)], codec="mpeg4")
    store = tmp_path / "store"
    result = cli("index", root, "--store", store, "--model", tiny_spec, "--verbose")
    assert result.exit_code == 0, result.stderr
    err = result.stderr
    assert "skipped" in err and "notes.mp4: not a readable video" in err
    assert "song.m4v: no video stream (audio only)" in err
    assert "empty.webm" in err
    assert "partly indexed" in err and "cut.mkv: truncated" in err
    assert "2 added" in err and "3 failed, 1 partial" in err
    rows, _ = _rows(store)
    cut_rows = [r for r in rows if r["path"].endswith("cut.mkv")]
    assert 1 <= len(cut_rows) < 8
    again = cli("index", root, "--store", store, "--model", tiny_spec)
    assert again.exit_code == 0 and "2 unchanged" in again.stderr


def test_rename_reuses_all_moments_and_unchanged_is_skipped(clips, tmp_path, tiny_spec):
    store = tmp_path / "store"
    with mmsearch.open(store, model=tiny_spec) as col:
        col.index([clips], progress=False)
        before, vectors_before = _rows(store)
        again = col.index([clips], progress=False)
        assert (again.unchanged, again.added, again.updated) == (4, 0, 0)
        os.rename(clips / "a.mp4", clips / "renamed.mp4")
        report = col.index([clips], progress=False)
        assert (report.renamed, report.added, report.removed, report.unchanged) == (1, 0, 0, 3)
        after, vectors_after = _rows(store)

    def moments(rows, vectors, name):
        got = [(r["start_s"], r["end_s"], tuple(v)) for r, v in zip(rows, vectors, strict=True)
               if r["path"].endswith(name)]
        return sorted(got)

    old, new = moments(before, vectors_before, "a.mp4"), moments(after, vectors_after,
                                                                 "renamed.mp4")
    assert len(old) == 3 and old == new, "every moment kept its span and vector"
    assert not [r for r in after if r["path"].endswith("/a.mp4")]


def test_all_moments_of_a_file_land_in_one_commit(clips, tmp_path, tiny_spec):
    from mmsearch.store.store import Store

    store = tmp_path / "store"
    with mmsearch.open(store, model=tiny_spec) as col:
        col.index([clips], progress=False, commit_every=1, batch_size=2)
    st = Store(store)
    assert st.generation >= 3, "several commits happened"
    owner: dict[str, str] = {}
    for seg in st.segments:
        table, _ = st.read_segment(seg)
        for path in table.column("path").to_pylist():
            assert owner.setdefault(path, seg.name) == seg.name, f"{path} split across commits"
    assert len(owner) == 4


def test_crop_borders_removes_letterbox_only():
    from PIL import Image

    from mmsearch.ingest.video import crop_borders

    picture = scene_image(7, (60, 40))
    canvas = np.zeros((64, 96, 3), np.uint8)
    canvas[12:52, 18:78] = picture
    cropped = crop_borders(Image.fromarray(canvas))
    assert cropped.size == (60, 40)
    night = canvas.copy()
    night[:12] = 0
    night[52:] = 200  # dark band on top only: not a letterbox
    assert crop_borders(Image.fromarray(night)).size[1] == 64
