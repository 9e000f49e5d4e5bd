"""Optional channels never stop indexing; files indexed without one get it later; the
stuck states of issue 18 (a failed file never retried, settings that cannot be turned on
again, `remove` of a failed file); the model hub asked once. No ../shared needed: the
sound-tag model is a random-weight YAMNet (tests/tiny_yamnet.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_yamnet import make_tiny_yamnet

import mmsearch
from mmsearch import hub
from mmsearch.errors import MmsearchError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "audio"


@pytest.fixture
def no_models(tmp_path, monkeypatch) -> Path:
    """No optional model installed: ../shared hidden, an empty user model folder, and a
    Whisper setting naming a folder that does not exist."""
    monkeypatch.setenv("MMSEARCH_SHARED", "none")
    monkeypatch.setenv("MMSEARCH_MODELS", str(tmp_path / "user-models"))
    monkeypatch.delenv("MMSEARCH_YAMNET", raising=False)
    monkeypatch.setenv("MMSEARCH_WHISPER", str(tmp_path / "no-whisper"))
    return tmp_path / "user-models"


@pytest.fixture
def media(photos: Path) -> Path:
    """The photo folder plus a video with a sound track and a spoken audio file."""
    shutil.copy(FIXTURES / "meeting.mp4", photos / "meeting.mp4")
    shutil.copy(FIXTURES / "revenue.ogg", photos / "revenue.ogg")
    return photos


def _rows(store: Path, path: Path) -> list[dict]:
    snap = mmsearch.open(store).snapshot()
    return [r for r in snap.table.to_pylist() if r["path"] == str(path)]


def _channels(store: Path, path: Path) -> set[str]:
    return {r["channel"] for r in _rows(store, path)}


def test_missing_models_never_stop_indexing_and_later_runs_complete(
        cli, media, tmp_path, tiny_spec, no_models, monkeypatch):
    store = tmp_path / "store"
    res = cli("index", media, "--store", store, "--model", tiny_spec, "-q")
    assert res.exit_code == 0, res.output
    # one warning per missing channel for the whole run, naming what to do
    assert res.stderr.count("sound tags (YAMNet) skipped") == 1, res.stderr
    assert res.stderr.count("speech (Whisper) skipped") == 1, res.stderr
    assert "mmsearch models add yamnet" in res.stderr
    assert "9 added" in res.stderr and "1 failed" in res.stderr  # the sound file waits
    assert len(mmsearch.open(store)) == 9  # 8 photos + the video
    assert _channels(store, media / "meeting.mp4") == {"visual"}

    # the tag model appears: the next plain run completes the video and the sound file
    make_tiny_yamnet(no_models / "yamnet")
    res = cli("index", media, "--store", store, "-q")
    assert res.exit_code == 0, res.output
    assert "sound tags (YAMNet) skipped" not in res.stderr
    assert _channels(store, media / "meeting.mp4") == {"visual", "tags"}
    assert _channels(store, media / "revenue.ogg") == {"tags"}
    assert len(mmsearch.open(store)) == 10
    # and a third run has nothing left to do (speech is still missing: said again)
    res = cli("index", media, "--store", store)
    assert "0 added, 0 updated" in res.stderr and "10 unchanged" in res.stderr, res.stderr
    assert res.stderr.count("speech (Whisper) skipped") == 1


def test_failed_while_channels_off_is_retried_when_turned_on(
        cli, tmp_path, tiny_spec, no_models):
    """Stuck state: a sound file that failed with every channel off stayed 'unchanged
    since it failed' even with --tags."""
    folder = tmp_path / "sounds"
    folder.mkdir()
    shutil.copy(FIXTURES / "revenue.ogg", folder / "revenue.ogg")
    store = tmp_path / "store"
    res = cli("index", folder, "--store", store, "--model", tiny_spec, "--no-tags",
              "--no-speech", "-q", "-v")
    assert "audio channels are off" in res.stderr
    make_tiny_yamnet(no_models / "yamnet")
    res = cli("index", folder, "--store", store, "--tags", "-q", "-v")
    assert res.exit_code == 0, res.output
    assert "unchanged since it failed" not in res.stderr
    assert _channels(store, folder / "revenue.ogg") == {"tags"}


def test_store_settings_turn_channels_on_again(cli, media, tmp_path, tiny_spec, no_models):
    """Stuck state: a store built with --no-tags could not be turned back to tags."""
    make_tiny_yamnet(no_models / "yamnet")
    store = tmp_path / "store"
    cli("index", media, "--store", store, "--model", tiny_spec, "--no-tags", "--no-speech",
        "-q")
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["audio"]["tags"] is False
    assert _channels(store, media / "meeting.mp4") == {"visual"}
    res = cli("index", media, "--store", store, "--tags", "-q")  # nothing changed on disk
    assert res.exit_code == 0, res.output
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["audio"]["tags"] is True and manifest["audio"]["speech"] is False
    assert _channels(store, media / "meeting.mp4") == {"visual", "tags"}
    # the store remembers: a plain run keeps tags on and has nothing to do
    res = cli("index", media, "--store", store)
    assert "0 updated" in res.stderr and "0 failed" in res.stderr, res.stderr


def test_remove_forgets_a_failed_file(cli, photos, tmp_path, tiny_spec):
    """Stuck state: `mmsearch remove FILE` on a failed file removed 0 and kept it failed."""
    bad = photos / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    store = tmp_path / "store"
    cli("index", photos, "--store", store, "--model", tiny_spec, "-q")
    res = cli("index", photos, "--store", store, "-q", "-v")
    assert "unchanged since it failed" in res.stderr
    res = cli("remove", bad, "--store", store)
    assert res.exit_code == 0 and "removed 1" in res.stderr, res.stderr
    res = cli("index", photos, "--store", store, "-q", "-v")
    assert "unchanged since it failed" not in res.stderr and "broken.jpg" in res.stderr


def test_reprocess_embeds_unchanged_files_again(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "store"
    cli("index", photos, "--store", store, "--model", tiny_spec, "-q")
    before = {r["path"]: r["key"] for r in mmsearch.open(store).snapshot().table.to_pylist()}
    res = cli("index", photos, "--store", store, "--reprocess")
    assert res.exit_code == 0 and "8 updated" in res.stderr, res.stderr
    after = {r["path"]: r["key"] for r in mmsearch.open(store).snapshot().table.to_pylist()}
    assert after.keys() == before.keys() and not set(after.values()) & set(before.values())


def test_library_reports_skipped_channels(media, tmp_path, tiny_spec, no_models):
    col = mmsearch.open(tmp_path / "store", model=tiny_spec)
    report = col.index([media], progress=False, speech=False)
    assert set(report.skipped_channels) == {"tags"}
    assert "mmsearch.locate.add_model('yamnet'" in report.skipped_channels["tags"]
    assert report.incomplete == 1  # the video (the sound file could not be indexed at all)


def test_query_by_sound_without_models_says_why(cli, media, tmp_path, tiny_spec, no_models):
    store = tmp_path / "store"
    cli("index", media, "--store", store, "--model", tiny_spec, "-q")
    res = cli("query", "--audio", FIXTURES / "weather.mp3", "--store", store)
    assert res.exit_code == 2
    assert "no YAMNet weights" in res.stderr and "no sound events" not in res.stderr


def test_hub_is_asked_once_and_messages_fit_the_caller(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("MMSEARCH_WHISPER", raising=False)
    asked = []
    monkeypatch.setattr(hub, "_probe", lambda timeout: asked.append(timeout) or False)
    from mmsearch.audio.whisper import Whisper

    for _ in range(3):
        with pytest.raises(MmsearchError) as err:
            Whisper("openai/whisper-base.en-not-cached")
        assert "whisper='/path/to/folder'" in str(err.value)
        assert "--whisper" not in str(err.value)
    assert asked == [3.0]  # asked once; the later loads failed without asking
    monkeypatch.setattr(hub, "frontend", "cli")
    with pytest.raises(MmsearchError) as err:
        Whisper("openai/whisper-base.en-not-cached")
    assert "--whisper PATH" in str(err.value) and "mmsearch[speech]" in str(err.value)
    assert len(asked) == 1


def test_models_add_fills_the_user_folder_and_models_lists_it(cli, tmp_path, no_models):
    res = cli("models", "--json")
    sound = {m["name"]: m for m in json.loads(res.stdout)["sound"]}
    assert sound["yamnet"]["path"] is None and "models add yamnet" in sound["yamnet"]["add"]
    res = cli("models", "add", "yamnet", tmp_path)  # not a YAMNet folder
    assert res.exit_code == 2 and "yamnet.fp16.safetensors" in res.stderr
    res = cli("models", "add", "yamnet", make_tiny_yamnet(tmp_path / "download"))
    assert res.exit_code == 0, res.output
    sound = {m["name"]: m for m in json.loads(cli("models", "--json").stdout)["sound"]}
    assert sound["yamnet"] == {**sound["yamnet"], "path": str(no_models / "yamnet"),
                               "source": "user folder"}
    res = cli("models")
    assert "tags    yamnet" in res.stdout and "user folder" in res.stdout


def test_yamnet_first_use_download_is_not_tried_offline(media, tmp_path, tiny_spec, no_models,
                                                        monkeypatch):
    from mmsearch.audio import yamnet_fetch

    monkeypatch.setattr(yamnet_fetch, "_failed", None)
    opened = []
    monkeypatch.setattr(yamnet_fetch.urllib.request, "urlopen",
                        lambda *a, **k: opened.append(a) or pytest.fail("network"))
    report = mmsearch.open(tmp_path / "s", model=tiny_spec).index([media], progress=False,
                                                                    speech=False)
    assert "offline: YAMNet cannot be downloaded" in report.skipped_channels["tags"]
    assert not opened and not (no_models / "yamnet").exists()


def test_yamnet_front_end_matches_the_published_export():
    """The converted front end equals the matrices in ../shared's YAMNet export (up to its
    int8 quantisation)."""
    from helpers import SHARED_MODELS
    from safetensors.numpy import load_file

    from mmsearch.audio.yamnet_fetch import frontend

    path = SHARED_MODELS / "yamnet" / "yamnet.fp16.safetensors"
    if not path.is_file():
        pytest.skip("YAMNet export not found in ../shared/models")
    ref = load_file(str(path))
    for name, value in frontend().items():
        assert abs(ref[name].astype("float32") - value).max() < 0.005, name


def test_yamnet_keras_weights_convert_to_the_runtime_layout(tmp_path):
    """A Keras-layout weights file (names and axes as yamnet.h5) converts back to the
    tensors it was made from, with batch norm folded in; the result loads and runs."""
    h5py = pytest.importorskip("h5py", reason="the `tags` extra is not installed")
    import numpy as np
    from safetensors.numpy import load_file

    from mmsearch.audio import yamnet_fetch
    from mmsearch.audio.yamnet import YamNet

    src = load_file(str(make_tiny_yamnet(tmp_path / "tiny") / "yamnet.fp16.safetensors"))
    src = {k: v.astype(np.float64) for k, v in src.items()}
    rng = np.random.default_rng(0)
    layers: dict[str, dict[str, np.ndarray]] = {}

    def add(prefix: str, kernel: np.ndarray, bias: np.ndarray, kind: str = "kernel") -> None:
        var = rng.uniform(0.5, 2.0, len(bias))
        mean = rng.normal(0, 0.1, len(bias))
        scale = 1 / np.sqrt(var + yamnet_fetch.BN_EPSILON)
        axes = (3, 2, 0, 1) if kind == "kernel" else (2, 3, 0, 1)  # inverse below
        inv = np.argsort(axes)
        layers[prefix] = {kind: (kernel / scale.reshape(-1, 1, 1, 1)).transpose(inv)}
        layers[f"{prefix}/bn"] = {"beta": bias + mean * scale, "moving_mean": mean,
                                  "moving_variance": var}

    add("layer1/conv", src["layer1.conv.weight"], src["layer1.conv.bias"])
    for i in range(2, 15):
        add(f"layer{i}/depthwise_conv", src[f"layer{i}.depthwise.weight"],
            src[f"layer{i}.depthwise.bias"], "depthwise_kernel")
        add(f"layer{i}/pointwise_conv", src[f"layer{i}.pointwise.weight"],
            src[f"layer{i}.pointwise.bias"])
    layers["dense"] = {"kernel": src["classifier.weight"].T, "bias": src["classifier.bias"]}
    h5 = tmp_path / "yamnet.h5"
    with h5py.File(h5, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for name, weights in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}:0".encode() for w in weights]
            for w, value in weights.items():
                group.create_dataset(f"{name}/{w}:0", data=value)
    out = yamnet_fetch.convert(h5)
    for name, value in src.items():
        if not name.startswith("frontend."):
            assert np.allclose(out[name], value, atol=1e-6), name
    csv = (tmp_path / "tiny" / "yamnet_class_map.csv").read_bytes()
    folder = yamnet_fetch.save(out, csv, tmp_path / "installed")
    scores = YamNet(folder).patch_scores(np.zeros(16_000, np.float32))
    assert scores.shape == (1, 521)


def test_uncached_open_clip_model_fails_at_once_with_library_wording(photos, tmp_path):
    from mmsearch.encoders.clip import ClipEncoder

    with pytest.raises(MmsearchError) as err:  # not cached here: refused before a download
        ClipEncoder("ViT-B-32", "laion2b_s34b_b79k")
    assert "model='ViT-B-32:/path/to/weights.bin'" in str(err.value)
    assert "hub is unreachable" in str(err.value)
