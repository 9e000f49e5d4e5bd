"""Video decoding + sampling speed, in multiples of real time (the encoder is excluded).

Makes 480p H.264 test videos with PyAV (cached; `../shared/data` has no 480p video) and
times `mmsearch.ingest.video.decode_video` at 1 frame per second: demux, threaded decode
with frame skipping, scene test on every sampled frame, RGB conversion of kept frames.
For reference it also times a plain decode of every frame (PyAV defaults, threaded).

    PYTHONPATH=. python benchmarks/video_decode.py [--seconds 60] [--repeat 3]

Two encodes of the same moving content (scene cut every 5 s):
  gop250  x264 defaults (keyframe at most every 250 frames + scene cuts, B-frames)
  gop30   a keyframe every second (streaming-style): the keyframe-only path applies
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import av
import numpy as np

from benchmarks._harness import median_s
from mmsearch.ingest.video import VideoOptions, decode_video

W, H, FPS = 854, 480, 30


def make_video(path: Path, seconds: int, gop: int | None) -> Path:
    """Moving gradients and a sliding box, a new palette every 5 s (x264 veryfast, crf 23)."""
    if path.exists():
        return path
    tmp = path.with_suffix(".part.mp4")
    yy, xx = np.mgrid[0:H, 0:W]
    rng = np.random.default_rng(0)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        options = {"preset": "veryfast", "crf": "23"}
        if gop:
            options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
        stream.options = options
        base = rng.integers(0, 255, 3)
        for i in range(FPS * seconds):
            scene = i // (FPS * 5)
            if i % (FPS * 5) == 0:
                base = rng.integers(0, 255, 3)
            img = np.empty((H, W, 3), np.uint8)
            img[..., 0] = (xx + 4 * i + scene * 50) % 256
            img[..., 1] = (yy * 2 + scene * 80) % 256
            img[..., 2] = base[2]
            cx = (7 * i) % W
            img[200:280, max(0, cx - 40):cx + 40] = base
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)
    return path


def plain_decode(path: Path) -> int:
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fps", type=float, default=1.0, help="sampling rate")
    ap.add_argument("--cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "mmsearch-bench-video")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
          f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})")
    for name, gop in (("gop250", None), ("gop30", 30)):
        path = make_video(args.cache / f"{W}x{H}-{FPS}fps-{args.seconds}s-{name}.mp4",
                          args.seconds, gop)
        plain_s, frames = median_s(lambda p=path: plain_decode(p), args.repeat)
        ours_s, decoded = median_s(lambda p=path: decode_video(str(p), VideoOptions(fps=args.fps)),
                                args.repeat)
        print(f"{name}: {W}x{H} {FPS} fps {args.seconds} s, {path.stat().st_size / 1e6:.1f} MB | "
              f"plain decode of all {frames} frames {plain_s:.2f} s = "
              f"{args.seconds / plain_s:.0f}x real time | "
              f"mmsearch sampling at {args.fps:g} fps {ours_s:.2f} s = "
              f"{args.seconds / ours_s:.0f}x real time "
              f"({decoded.decoded} frames decoded, {decoded.sampled} sampled, "
              f"{len(decoded.moments)} moments)")


if __name__ == "__main__":
    main()
