"""Retrieval quality and CPU/GPU throughput of the offline mmsearch-lite models, before/after.

Evaluates text->image and image->text recall@1/5/10 of each model (default: the
generations `mmsearch-lite` to `mmsearch-lite-3` and the current `mmsearch-lite-4`) on
  - val:  flickr8k_train224, split == val (887 images x 5 captions; model selection set)
  - test: flickr8k (500 images x 5 captions; never used for training or selection)
  - fashion: fashion_products (product titles -> product photos; another distribution,
    `--sets fashion`, the first `--fashion-limit` products)
with one gallery entry per image, through the encoders (image files -> preprocess ->
tower -> heads; the frozen image tower's pass is shared by models whose image tower is not
retrained, mirrored too when a model averages flips), and prints a markdown table plus
each model's texts/s and the images/s of the whole image path. A model that ships a query
bank gets a second row, "+ hubness": text->image with the planner's hubness correction
(`mmsearch.planner.hubness`, centred on the gallery's mean; image->text is not corrected).

    python benchmarks/lite_eval.py --threads 1
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

from benchmarks._harness import DATA
from mmsearch.encoders.lite import load_lite, stage_features
from mmsearch.planner import hubness

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


def read_products(folder: Path, limit: int) -> tuple[list[Path], list[str], np.ndarray]:
    """(product photos, titles, photo of each title): the first `limit` products."""
    with open(folder / "products.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:limit]
    return ([folder / r["file"] for r in rows], [r["title"].strip() for r in rows],
            np.arange(len(rows)))


def embed_images(encs: list, paths: list[Path], batch: int) -> tuple[list[np.ndarray], float]:
    """Unit vectors of image files for each encoder and the seconds spent (decode +
    preprocess + tower + heads, all models)."""
    shared = [e for e in encs if not any(k.startswith("image.") for k in e.heads.tower_state)]
    flips = any(e.flip_average for e in shared)
    out: list[list[np.ndarray]] = [[] for _ in encs]
    t0 = time.perf_counter()
    for i in range(0, len(paths), batch):
        pixels = torch.stack([encs[0].preprocess(Image.open(p).convert("RGB"))
                              for p in paths[i:i + batch]])
        if shared:
            with torch.inference_mode():
                views = [stage_features(shared[0].image_tower, pixels)]
                if flips:
                    views.append(stage_features(shared[0].image_tower, pixels.flip(-1)))
        for j, enc in enumerate(encs):
            if enc in shared:
                out[j].append(enc.embed_features(views if enc.flip_average else views[:1]))
            else:
                out[j].append(enc.encode_images(pixels))
    return [np.concatenate(o) for o in out], time.perf_counter() - t0


def embed_texts(enc, texts: list[str], batch: int) -> tuple[np.ndarray, float]:
    """Unit vectors of texts and the seconds spent."""
    t0 = time.perf_counter()
    out = [enc.encode_texts(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    return np.concatenate(out), time.perf_counter() - t0


def recalls(img: np.ndarray, txt: np.ndarray, owner: np.ndarray,
            penalty: np.ndarray | None = None) -> dict[str, float]:
    """text->image and image->text R@1/5/10 in percent (one gallery entry per image);
    `penalty` (per image) is taken off text->image cosines."""
    sims = txt @ img.T
    t2i_sims = sims if penalty is None else sims - penalty[None, :]
    true = t2i_sims[np.arange(len(owner)), owner][:, None]
    t2i = (t2i_sims > true).sum(axis=1)
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
    p.add_argument("--models",
                   default="mmsearch-lite,mmsearch-lite-2,mmsearch-lite-3,mmsearch-lite-4",
                   help="comma list of shipped specs and/or heads files")
    p.add_argument("--sets", default="val,test", help="comma list of val, test, fashion")
    p.add_argument("--fashion-limit", type=int, default=500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    encs = []
    for m in args.models.split(","):
        encs.append(load_lite(args.device, heads_path=m) if Path(m).is_file()
                    else load_lite(args.device, spec=m))
    load_s = (time.perf_counter() - t0) / len(encs)
    sets = {
        "val": ("val (flickr8k_train224 val, 887 img)",
                lambda: read_set(args.data / "flickr8k_train224", "val")),
        "test": ("test (flickr8k, 500 img)", lambda: read_set(args.data / "flickr8k", None)),
        "fashion": (f"fashion ({args.fashion_limit} products)",
                    lambda: read_products(args.data / "fashion_products", args.fashion_limit)),
    }
    # warm-up so that one-off allocations do not count in the throughput
    for enc in encs:
        enc.encode_images(torch.stack([enc.preprocess(Image.new("RGB", (64, 64)))] * 2))
        enc.encode_texts(["warm up"] * 2)
    results: dict[str, dict[str, dict[str, float]]] = {e.spec: {} for e in encs}
    priors = {e.spec: hubness.load(e.spec) for e in encs}
    results.update({f"{s} + hubness": {} for s, prior in priors.items() if prior})
    images, image_s = 0, 0.0
    texts = {e.spec: 0 for e in encs}
    text_s = {e.spec: 0.0 for e in encs}
    for key in args.sets.split(","):
        name, load = sets[key]
        paths, captions, owner = load()
        imgs, secs = embed_images(encs, paths, args.batch_size)
        images += len(paths)
        image_s += secs
        for enc, img in zip(encs, imgs, strict=True):
            txt, t_s = embed_texts(enc, captions, args.batch_size)
            results[enc.spec][name] = recalls(img, txt, owner)
            prior = priors[enc.spec]
            if prior is not None:
                hub = prior.hubness(img)
                results[f"{enc.spec} + hubness"][name] = recalls(
                    img, txt, owner, prior.beta * (hub - hub.mean()))
            texts[enc.spec] += len(captions)
            text_s[enc.spec] += t_s

    print(f"models on {encs[0].device}, {args.threads} threads, batch {args.batch_size}; "
          f"load {load_s:.1f}s each\n")
    print("| model | set | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for spec, per_set in results.items():
        for name, r in per_set.items():
            cells = " | ".join(f"{r[k]:.1f}" for k in
                               ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"))
            print(f"| {spec} | {name} | {cells} |")
    ips = images / image_s
    tps = {s: texts[s] / text_s[s] for s in texts}
    print(f"\nthroughput: {ips:.1f} images/s (decode + preprocess + encode, all models), "
          + ", ".join(f"{s} {v:.1f} texts/s" for s, v in tps.items()))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "images_per_s": ips,
                                         "texts_per_s": tps, "device": encs[0].device,
                                         "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
