"""Stream any audio (or a video's audio track) as 16 kHz mono float32 blocks with PyAV.

Memory stays bounded whatever the file length: samples are resampled as they are decoded
and handed out in blocks of about `block_s` seconds. Errors never escape as anything but
`BadMediaError` (nothing decodable); damage after some audio was decoded ends the stream
early and is reported through `AudioStream.warnings`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.errors import BadMediaError

SAMPLE_RATE = 16_000


@dataclass
class AudioStream:
    """An open audio track: its metadata, and `blocks()` to read it once."""

    path: str
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # decoded so far
    block_s: float = 30.0
    time_limit: float | None = None
    rate: int = SAMPLE_RATE

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield mono float32 blocks (at `rate`, 16 kHz by default) of ~`block_s` seconds."""
        import av

        want = int(self.block_s * self.rate)
        pending: list[np.ndarray] = []
        have = 0
        started = time.monotonic()
        try:
            container = av.open(self.path)
        except Exception as e:  # checked in open_audio; a vanished file lands here
            raise BadMediaError(f"cannot open audio: {e}") from None
        with container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            frames = _decode(container, stream, self)
            for frame in frames:
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    pending.append(arr)
                    have += len(arr)
                while have >= want:
                    block, pending, have = _take(pending, want)
                    self.seconds += len(block) / self.rate
                    yield block
                if self.time_limit and time.monotonic() - started > self.time_limit:
                    self.warnings.append(f"stopped after {self.seconds:.0f} s of audio: "
                                         f"decoding took over {self.time_limit:.0f} s")
                    break
            for out in resampler.resample(None):
                arr = out.to_ndarray().reshape(-1)
                pending.append(arr)
                have += len(arr)
        if have:
            block = np.concatenate(pending).astype(np.float32, copy=False)
            self.seconds += len(block) / self.rate
            yield block


def _decode(container: Any, stream: Any, owner: AudioStream) -> Iterator[Any]:
    """Decoded frames; a damaged stream ends early with a warning."""
    try:
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except Exception as e:  # one bad packet: skip it, say so once
                if not owner.warnings:
                    owner.warnings.append(f"damaged audio packet skipped ({type(e).__name__})")
    except Exception as e:
        owner.warnings.append(f"audio truncated or corrupt after {owner.seconds:.1f} s: "
                              f"{type(e).__name__}: {e}")


def _take(pending: list[np.ndarray], n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    joined = np.concatenate(pending)
    rest = joined[n:]
    return (joined[:n].astype(np.float32, copy=False), [rest] if len(rest) else [],
            len(rest))


def open_audio(path: str, block_s: float = 30.0, time_limit: float | None = None,
               require: bool = True, rate: int = SAMPLE_RATE) -> AudioStream | None:
    """Open the first audio track of a file.

    Raises BadMediaError when the file cannot be opened or (with `require`) has no audio
    track; returns None for a file without audio when `require` is False (a silent video).
    """
    import av

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                if require:
                    raise BadMediaError("no audio track")
                return None
            stream = container.streams.audio[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / 1_000_000
            meta = {"duration_s": duration, "codec": stream.codec_context.name,
                    "sample_rate": stream.codec_context.sample_rate,
                    "channels": stream.codec_context.channels}
    except BadMediaError:
        raise
    except Exception as e:
        raise BadMediaError(f"cannot open audio: {type(e).__name__}: {e}") from None
    return AudioStream(path, meta, block_s=block_s, time_limit=time_limit, rate=rate)
