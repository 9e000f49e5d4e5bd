"""Audio: decoding, utterance cutting, tags + speech channels, search by words and by sound.

Tests with the real YAMNet / Whisper weights use ../shared/models and skip when absent.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import SHARED_MODELS

import mmsearch
from mmsearch.audio.analyze import AudioAnalyzer, AudioOptions, _tag_windows
from mmsearch.audio.decode import open_audio
from mmsearch.audio.search import word_matches
from mmsearch.audio.vad import utterances
from mmsearch.errors import BadMediaError
from mmsearch.ingest.discover import modality_of

FIXTURES = Path(__file__).parents[1] / "fixtures" / "audio"
SENTENCES = json.loads((FIXTURES / "sentences.json").read_text())
MODELS = SHARED_MODELS
HAVE_MODELS = ((MODELS / "yamnet" / "yamnet.fp16.safetensors").is_file()
               and (MODELS / "whisper-tiny.en-int8" / "model.int8.safetensors").is_file())
needs_models = pytest.mark.skipif(not HAVE_MODELS, reason="offline YAMNet/Whisper weights not "
                                  "found in ../shared/models")
SR = 16_000


def write_wav(path: Path, samples: np.ndarray, rate: int = SR) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None, :], format="s16",
            layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# -- no model needed -------------------------------------------------------------------------

def test_audio_extensions_are_discovered():
    for ext in ("wav", "flac", "ogg", "mp3", "m4a", "opus", "WAV"):
        assert modality_of(f"x.{ext}") == "audio"
    assert modality_of("x.mp4") == "video"


def test_decode_resamples_to_16k_mono_in_blocks():
    stream = open_audio(str(FIXTURES / "revenue.ogg"), block_s=1.0)  # 48 kHz Opus
    blocks = list(stream.blocks())
    assert all(len(b) == SR for b in blocks[:-1]) and 0 < len(blocks[-1]) <= SR
    assert stream.meta["sample_rate"] == 48_000
    assert abs(sum(map(len, blocks)) / SR - stream.meta["duration_s"]) < 0.05
    assert blocks[0].dtype == np.float32


def test_bad_audio_raises_bad_media(tmp_path):
    (tmp_path / "junk.mp3").write_bytes(b"ID3 this is not audio" * 50)
    (tmp_path / "empty.wav").write_bytes(b"")
    for name in ("junk.mp3", "empty.wav"):
        with pytest.raises(BadMediaError):
            stream = open_audio(str(tmp_path / name))
            list(stream.blocks())
    silent_video = tmp_path / "novoice.mp4"
    with av.open(str(silent_video), "w") as out:
        v = out.add_stream("mpeg4", rate=2)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*v.encode(frame), *v.encode()]:
            out.mux(packet)
    assert open_audio(str(silent_video), require=False) is None


def test_truncated_audio_keeps_what_decoded(tmp_path):
    data = (FIXTURES / "weather.mp3").read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    stream = open_audio(str(cut))
    seconds = sum(map(len, stream.blocks())) / SR
    assert 1.0 < seconds < 4.5


def test_utterances_are_cut_at_pauses():
    rng = np.random.default_rng(0)
    wav = np.zeros(6 * SR, np.float32)
    for a, b in ((1.0, 2.0), (2.6, 3.4), (3.5, 4.0)):  # pause 0.6 s, then 0.1 s
        lo, hi = round(a * SR), round(b * SR)
        wav[lo:hi] = 0.3 * rng.standard_normal(hi - lo)
    spans = [(a / SR, b / SR) for a, b in utterances(wav, merge_below_s=0)]
    assert len(spans) == 2
    assert abs(spans[0][0] - 1.0) < 0.03 and abs(spans[0][1] - 2.0) < 0.03
    assert abs(spans[1][0] - 2.6) < 0.03 and abs(spans[1][1] - 4.0) < 0.03
    assert utterances(np.zeros(SR, np.float32)) == []


def test_tag_windows_overlap_and_cover_the_clip():
    windows = _tag_windows(25, 24.4)
    assert windows[0][:2] == (0, 10) and windows[0][2] == 0.0
    assert [w[0] for w in windows] == [0, 5, 10, 15]
    assert windows[-1][1] == 25 and windows[-1][3] == 24.4
    assert _tag_windows(3, 2.5) == [(0, 3, 0.0, 2.5)]


def test_word_matches_whole_words_case_insensitive(tmp_path):
    rows = [{"id": "a", "vector": [1.0, 0.0], "transcript": "The Quarterly revenue grew."},
            {"id": "b", "vector": [0.0, 1.0], "transcript": "revenues and quarterlyish"},
            {"id": "c", "vector": [1.0, 1.0], "transcript": None}]
    with mmsearch.open(tmp_path / "store") as col:
        col.upsert(rows)
        snap = col.snapshot()
        found = dict(word_matches(snap, "quarterly REVENUE of the"))
        ids = snap.table.column("id").to_pylist()
        assert {ids[r]: share for r, share in found.items()} == {"a": 1.0}


# -- real YAMNet + Whisper ---------------------------------------------------------------------

@needs_models
def test_long_audio_streams_in_windows_with_tags():
    """80 s of tone bursts: processed window by window, tag windows cover it all."""
    t = np.arange(80 * SR) / SR
    wav = (0.3 * np.sin(2 * np.pi * 880 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0))

    class Fake:  # a stream of 10 s blocks, as open_audio gives them
        path = "synthetic"
        warnings = ()

        def blocks(self):
            for i in range(0, len(wav), 10 * SR):
                yield wav[i:i + 10 * SR].astype(np.float32)

    seen: list[float] = []
    analysis = AudioAnalyzer(AudioOptions(speech=False)).analyze(Fake(), seen.append)
    assert analysis.seconds == 80.0
    assert len(seen) >= 3  # progress between windows: never the whole file at once
    tags = [p for p in analysis.parts if p.channel == "tags"]
    assert tags[0].start_s == 0.0 and tags[-1].end_s == 80.0
    assert all(b.start_s < a.end_s for a, b in itertools.pairwise(tags))
    assert all(p.tags for p in tags)


@pytest.fixture(scope="module")
def speech_store(tmp_path_factory):
    if not HAVE_MODELS:
        pytest.skip("offline YAMNet/Whisper weights not found in ../shared/models")
    root = tmp_path_factory.mktemp("audio")
    media = root / "media"
    shutil.copytree(FIXTURES, media, ignore=shutil.ignore_patterns("*.py", "*.json"))
    (media / "junk.ogg").write_bytes(b"OggS" + b"\x00garbage" * 100)
    (media / "empty.m4a").write_bytes(b"")
    store = root / "store"
    with mmsearch.open(store, model="mmsearch-lite", device="cpu") as col:
        report = col.index([media], progress=False)
    return store, media, report


def _sentence_hit(hit, name: str) -> None:
    span = SENTENCES[name]
    assert hit.path.endswith(name), hit
    assert span["start_s"] - 0.3 <= hit.start_s < span["end_s"], (hit.start_s, span)
    assert span["start_s"] < hit.end_s <= span["end_s"] + 0.6, (hit.end_s, span)


@needs_models
def test_speech_found_by_a_few_words_at_its_moment(speech_store):
    store, _, report = speech_store
    assert report.added == 5 and report.failed == 2, report.failures
    failed = {Path(p).name for p, _ in report.failures}
    assert failed == {"junk.ogg", "empty.m4a"}
    with mmsearch.open(store) as col:
        for name, query in (("revenue.ogg", "quarterly revenue"),
                            ("weather.mp3", "rain in the mountains"),
                            ("kitchen.flac", "green bottles cupboard")):
            hits = col.search(text=query, k=3)
            _sentence_hit(hits[0], name)
            assert hits[0].modality == "audio" and hits[0].transcript
            assert hits[0].score > hits[1].score


@needs_models
def test_speech_in_a_video_sound_track(speech_store):
    store, _, _ = speech_store
    with mmsearch.open(store) as col:
        hit = col.search(text="train to Amsterdam", k=1)[0]
        _sentence_hit(hit, "meeting.mp4")
        assert hit.modality == "video"
        channels = {r[0] for r in col.snapshot().sql(
            "SELECT DISTINCT channel FROM items WHERE path LIKE '%meeting.mp4'").fetchall()}
        assert channels == {"visual", "speech", "tags"}


@needs_models
def test_silence_is_indexed_without_speech_and_info_counts_channels(speech_store, cli):
    store, _, _ = speech_store
    with mmsearch.open(store) as col:
        rows = col.snapshot().sql("SELECT channel, tags FROM items "
                                  "WHERE path LIKE '%silence.wav'").fetchall()
        assert [c for c, _ in rows] == ["tags"] and rows[0][1].startswith("Silence")
        info = col.info()
    assert info["channels"]["speech"] >= 4 and info["channels"]["tags"] >= 5
    assert info["modalities"] == {"audio": 4, "video": 1}
    out = cli("info", "--store", store).stdout
    assert "speech" in out and "tags" in out
    table = cli("query", "kitchen cupboard", "--store", store, "-k", "1").stdout
    assert "kitchen.flac" in table and "green bottles" in table.lower()


@needs_models
def test_query_by_example_sound(speech_store):
    store, media, _ = speech_store
    with mmsearch.open(store) as col:
        hits = col.search(audio=media / "weather.mp3", k=2)
        assert hits[0].path.endswith("weather.mp3")
        with pytest.raises(mmsearch.UsageError):
            col.search(audio=media / "junk.ogg")


@needs_models
def test_rename_keeps_audio_rows_and_reruns_are_incremental(speech_store, tmp_path):
    store, media, _ = speech_store
    work = tmp_path / "copy"
    shutil.copytree(store, work)
    with mmsearch.open(work) as col:
        again = col.index([media], progress=False)
        assert again.unchanged == 5 and again.added == 0
        before = col.snapshot().sql("SELECT channel, transcript, tags, start_s FROM items "
                                    "WHERE path LIKE '%kitchen.flac' ORDER BY 4, 1").fetchall()
        (media / "kitchen.flac").rename(media / "pantry.flac")
        try:
            moved = col.index([media], progress=False)
        finally:
            (media / "pantry.flac").rename(media / "kitchen.flac")
        assert moved.renamed == 1 and moved.added == 0
        after = col.snapshot().sql("SELECT channel, transcript, tags, start_s FROM items "
                                   "WHERE path LIKE '%pantry.flac' ORDER BY 4, 1").fetchall()
        assert after == before and len(after) >= 2


# -- CLAP side space (tiny random model) ----------------------------------------------------

def make_tiny_clap(folder: Path) -> Path:
    """A tiny random CLAP model + processor saved to `folder` (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        PreTrainedTokenizerFast,
    )

    words = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "dog", "bark", "rain", "speech"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>",
                                        mask_token="<mask>")
    config = ClapConfig(
        text_config={"vocab_size": len(words), "hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 37,
                     "max_position_embeddings": 64, "pad_token_id": 1},
        audio_config={"hidden_size": 32, "depths": [1, 1], "num_attention_heads": [2, 2],
                      "patch_embeds_hidden_size": 16, "window_size": 8, "spec_size": 256,
                      "num_mel_bins": 64, "enable_fusion": False},
        projection_dim=16)
    import torch

    torch.manual_seed(0)
    ClapModel(config).save_pretrained(folder)
    ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"),
                  tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clap_side_space_is_written_first_and_searched(tmp_path, tiny_spec):
    from mmsearch.audio.space import ClapSpace
    from mmsearch.store.store import Store

    clap = make_tiny_clap(tmp_path / "clap")
    media = tmp_path / "media"
    media.mkdir()
    for name in ("revenue.ogg", "kitchen.flac"):
        shutil.copy(FIXTURES / name, media / name)
    store = tmp_path / "store"
    with mmsearch.open(store, model=tiny_spec) as col:
        report = col.index([media], progress=False, tags=False, speech=False,
                           audio_model=str(clap))
        assert report.added == 2 and report.failed == 0
        info = col.info()
        assert info["audio"]["clap"] == str(clap) and info["channels"] == {"audio": 2, "clap": 2}
        side = Store(store / "spaces" / "clap")
        assert side.manifest["dim"] == 16 and side.manifest["rows"] == 2
        hits = col.search(text="dog bark", k=5)
        assert {Path(h.path).name for h in hits} == {"revenue.ogg", "kitchen.flac"}
        assert all(h.start_s == 0.0 for h in hits)
        by_sound = col.search(audio=media / "kitchen.flac", k=1)
        assert Path(by_sound[0].path).name == "kitchen.flac"  # its own CLAP vector
        # side rows of an id not live in the main store are ignored by readers
        ClapSpace(store).commit([("no-such-item", 0.0, 1.0, np.ones(16, np.float32) / 4)],
                                set(), str(clap))
        assert len(col.search(text="dog", k=5)) == 2
        # removing a file drops its side rows at the next run
        (media / "revenue.ogg").unlink()
        col.index([media], progress=False)
        assert Store(store / "spaces" / "clap").manifest["rows"] == 2  # kitchen + orphan
        assert [Path(h.path).name for h in col.search(text="rain", k=5)] == ["kitchen.flac"]
