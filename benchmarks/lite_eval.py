"""Retrieval quality and CPU/GPU throughput of the offline mmsearch-lite model.

Evaluates text->image and image->text recall@1/5/10 on
  - val:  flickr8k_train224, split == val (887 images x 5 captions; model selection set)
  - test: flickr8k (500 images x 5 captions; never used for training or selection)
with one gallery entry per image, through the full encoder (image files -> preprocess ->
towers -> heads), and prints a markdown table plus images/s and texts/s.

    python benchmarks/lite_eval.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import DATA

from mmsearch.encoders.lite import load_lite

DEFAULT_DATA = DATA


def read_set(folder: Path, split: str | None) -> tuple[list[Path], list[str], np.ndarray]:
    """(image paths, captions, image index of each caption) from a captions.csv."""
    files: list[Path] = []
    index: dict[str, int] = {}
    captions: list[str] = []
    owner: list[int] = []
    with open(folder / "captions.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if split is None or r.get("split") == split]
    rows.sort(key=lambda r: (r["image_id"], int(r["caption_id"])))
    for r in rows:
        if r["file"] not in index:
            index[r["file"]] = len(files)
            files.append(folder / r["file"])
        captions.append(r["caption"].strip())
        owner.append(index[r["file"]])
    return files, captions, np.asarray(owner)


def embed_images(enc, paths: list[Path], batch: int) -> tuple[np.ndarray, float]:
    """Unit vectors of image files and the seconds spent (decode + preprocess + encode)."""
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(paths), batch):
        pixels = torch.stack([enc.preprocess(Image.open(p).convert("RGB"))
                              for p in paths[i:i + batch]])
        out.append(enc.encode_images(pixels))
    return np.concatenate(out), time.perf_counter() - t0


def embed_texts(enc, texts: list[str], batch: int) -> tuple[np.ndarray, float]:
    """Unit vectors of texts and the seconds spent."""
    t0 = time.perf_counter()
    out = [enc.encode_texts(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    return np.concatenate(out), time.perf_counter() - t0


def recalls(img: np.ndarray, txt: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    """text->image and image->text R@1/5/10 in percent (one gallery entry per image)."""
    sims = txt @ img.T
    true = sims[np.arange(len(owner)), owner][:, None]
    t2i = (sims > true).sum(axis=1)
    own = owner[None, :] == np.arange(len(img))[:, None]
    best = np.where(own, sims.T, -np.inf).max(axis=1, keepdims=True)
    i2t = (best < sims.T).sum(axis=1)
    out = {f"t2i_r{k}": 100.0 * float((t2i < k).mean()) for k in (1, 5, 10)}
    out.update({f"i2t_r{k}": 100.0 * float((i2t < k).mean()) for k in (1, 5, 10)})
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared/data folder")
    p.add_argument("--heads", default=None, help="heads file (default: the shipped one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    enc = load_lite(args.device, args.heads)
    load_s = time.perf_counter() - t0
    sets = {
        "val (flickr8k_train224 val, 887 img)": read_set(args.data / "flickr8k_train224", "val"),
        "test (flickr8k, 500 img)": read_set(args.data / "flickr8k", None),
    }
    # warm-up so that one-off allocations do not count in the throughput
    enc.encode_images(torch.stack([enc.preprocess(Image.new("RGB", (64, 64)))] * 2))
    enc.encode_texts(["warm up"] * 2)
    results: dict[str, dict[str, float]] = {}
    speed = {"images": 0, "image_s": 0.0, "texts": 0, "text_s": 0.0}
    for name, (paths, captions, owner) in sets.items():
        img, img_s = embed_images(enc, paths, args.batch_size)
        txt, txt_s = embed_texts(enc, captions, args.batch_size)
        results[name] = recalls(img, txt, owner)
        speed["images"] += len(paths)
        speed["image_s"] += img_s
        speed["texts"] += len(captions)
        speed["text_s"] += txt_s

    print(f"model {enc.spec} (dim {enc.dim}) on {enc.device}, {args.threads} threads, "
          f"batch {args.batch_size}; load {load_s:.1f}s\n")
    print("| set | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = " | ".join(f"{r[k]:.1f}" for k in
                           ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"))
        print(f"| {name} | {cells} |")
    ips = speed["images"] / speed["image_s"]
    tps = speed["texts"] / speed["text_s"]
    print(f"\nthroughput: {ips:.1f} images/s (decode + preprocess + encode), "
          f"{tps:.1f} texts/s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "images_per_s": ips,
                                         "texts_per_s": tps, "device": enc.device,
                                         "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
