"""Index pipeline throughput versus the bare model forward pass, in one run.

    python benchmarks/embed_throughput.py [--model ViT-B-32-256:random] [--images DIR]

"bare": the encoder's forward pass alone over batches that were decoded and preprocessed
beforehand (the ceiling). "pipeline": `Collection.index` on the same files into a fresh
store: discovery, read, hash, decode, EXIF, preprocess, encode, Parquet/NumPy writes and
atomic commits. Speed does not depend on the weights, so random weights are fine
(`ARCH:random`). Rounds alternate bare/pipeline so machine load hits both alike; the
ratio of medians is reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import mmsearch
from benchmarks._harness import DATA
from mmsearch.encoders.registry import load_encoder
from mmsearch.ingest.images import decode_image

DEFAULT_IMAGES = DATA / "flickr8k" / "images"


def bare_throughput(encoder, files: list[Path], batch_size: int) -> float:
    pixels = [encoder.preprocess(decode_image(f.read_bytes(), 16_000_000).image) for f in files]
    batches = [torch.stack(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]
    encoder.encode_images(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches:
        encoder.encode_images(batch)
    return len(files) / (time.perf_counter() - start)


def pipeline_throughput(spec: str, folder: Path, batch_size: int, device: str | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        col = mmsearch.open(Path(tmp) / "store", model=spec, device=device)
        col.encoder  # load the model outside the timed part, as bare does  # noqa: B018
        start = time.perf_counter()
        report = col.index([folder], progress=False, batch_size=batch_size)
        seconds = time.perf_counter() - start
        assert report.failed == 0 and report.added > 0, report.summary()
        return report.added / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32-256:random")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no images at {args.images} (needs ../shared/data/flickr8k)")
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    files = files[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for f in files:
            (folder / f.name).symlink_to(f)
        encoder = load_encoder(args.model, args.device)
        bare, pipe = [], []
        for r in range(args.rounds):
            bare.append(bare_throughput(encoder, files, args.batch_size))
            pipe.append(pipeline_throughput(args.model, folder, args.batch_size, args.device))
            print(f"round {r + 1}: bare {bare[-1]:.1f} img/s, pipeline {pipe[-1]:.1f} img/s",
                  flush=True)
    b, p = statistics.median(bare), statistics.median(pipe)
    print(f"\nmodel {args.model} on {encoder.device}, {len(files)} images, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print("| measure | images/s |\n|---|---|")
    print(f"| bare model forward (preprocessed batches) | {b:.1f} |")
    print(f"| full index pipeline | {p:.1f} |")
    print(f"| **ratio pipeline / bare** | **{p / b:.2f}** |")


if __name__ == "__main__":
    main()
