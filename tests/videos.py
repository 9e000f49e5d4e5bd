"""Synthetic videos for tests: static scenes of coloured blocks, optional motion and a
tone track, written with PyAV (tests that use them skip when PyAV is missing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

SIZE = (96, 64)


def scene_image(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A distinct picture: big coloured blocks (survive compression and a tiny model)."""
    rng = np.random.default_rng(seed)
    w, h = size
    blocks = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, h // 4, axis=0), w // 6, axis=1)


def make_video(path: Path, scenes: list[tuple[int, float]], fps: int = 4,
               codec: str = "libx264", gop: int | None = None, moving: bool = False,
               audio: bool = False) -> Path:
    """Write a video of static scenes [(seed, seconds), ...] (or moving content) with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        astream = out.add_stream("aac", rate=8000) if audio else None
        n = 0
        for seed, seconds in scenes:
            base = scene_image(seed)
            for _ in range(round(seconds * fps)):
                img = np.roll(base, 7 * n, axis=1) if moving else base
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts = n
                n += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _write_audio(out, astream, seconds=n / fps)
    return path


def _write_audio(out, astream, seconds: float) -> None:
    samples = int(8000 * seconds)
    tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 8000)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
    frame.sample_rate = 8000
    frame.pts = 0
    for packet in astream.encode(frame):
        out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def make_audio_only(path: Path, seconds: float = 2.0) -> Path:
    with av.open(str(path), "w") as out:
        astream = out.add_stream("aac", rate=8000)
        _write_audio(out, astream, seconds)
    return path
