"""ESC-50 text -> sound retrieval and audio processing speed, offline weights only.

Indexes ../shared/data/esc50 (199 five-second clips, 50 classes) with mmsearch-lite (main
space) + YAMNet tags + Whisper tiny.en speech, then asks each class name (`label_text`)
as a text query over the whole set. Reports the share of queries with a right-class clip
in the top 5 (acceptance: >= 0.7), top-1 accuracy and mAP (over all 199 ranks), and the
speed of the audio processing: audio seconds / wall seconds of the index run.

    PYTHONPATH=. python benchmarks/audio_eval.py [--speech] [--out results.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import mmsearch
from benchmarks._harness import DATA


def average_precision(ranked: list[bool], positives: int) -> float:
    hits, total = 0, 0.0
    for i, ok in enumerate(ranked, 1):
        if ok:
            hits += 1
            total += hits / i
    return total / positives if positives else 0.0


def speech_speed(tmp: Path, repeats: int = 6) -> dict[str, float]:
    """Realtime factor on speech-dense audio: the 4 spoken test fixtures, concatenated
    `repeats` times into one file (about 2 minutes, ~75 % speech), tags + speech."""
    import av

    from mmsearch.audio.decode import open_audio

    fixtures = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
    names = ["revenue.ogg", "weather.mp3", "kitchen.flac", "meeting.mp4"]
    clips = [np.concatenate(list(open_audio(str(fixtures / n)).blocks())) for n in names]
    wav = np.concatenate(clips * repeats)
    path = tmp / "speech" / "talk.wav"
    path.parent.mkdir()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray((wav * 32767).astype(np.int16)[None], format="s16",
                                           layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    col = mmsearch.open(tmp / "speech-store", model="mmsearch-lite", device="cpu")
    col.encoder  # noqa: B018
    t = time.perf_counter()
    col.index([path.parent], progress=False, tags=True, speech=True)
    wall = time.perf_counter() - t
    seconds = len(wav) / 16_000
    return {"speech_audio_seconds": seconds, "speech_wall_s": wall,
            "speech_realtime_factor": seconds / wall,
            "speech_segments": col.info()["channels"].get("speech", 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA / "esc50")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--speech", action="store_true",
                    help="also measure speed on speech-dense audio (test fixtures)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with open(args.data / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    label_of = {str((args.data / r["file"]).resolve()): r["label_text"] for r in rows}
    seconds = sum(float(r["duration_s"]) for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        col = mmsearch.open(Path(tmp) / "store", model="mmsearch-lite", device="cpu")
        col.encoder  # noqa: B018  (load the main model outside the timed run)
        t = time.perf_counter()
        report = col.index([args.data / "audio"], progress=False, tags=True, speech=True)
        wall = time.perf_counter() - t
        info = col.info()
        classes = sorted({r["label_text"] for r in rows})
        top1 = top5 = 0
        aps = []
        t = time.perf_counter()
        for name in classes:
            res = col.search(text=name, k=len(rows))
            ranked = [label_of.get(r.path) == name for r in res]
            top1 += ranked[0]
            top5 += any(ranked[:5])
            aps.append(average_precision(ranked, sum(1 for r in rows if r["label_text"] == name)))
        query_ms = (time.perf_counter() - t) / len(classes) * 1000
        speech = speech_speed(Path(tmp)) if args.speech else {}
    out = {"clips": len(rows), "failed": report.failed, "queries": len(classes),
           "top5_hit_rate": top5 / len(classes), "top1": top1 / len(classes),
           "mAP": float(np.mean(aps)), "audio_seconds": seconds, "index_wall_s": wall,
           "realtime_factor": seconds / wall, "query_ms": query_ms,
           "channels": info["channels"], **speech, "load_avg": os.getloadavg()[0]}
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
