"""Build a model's query bank for the hubness correction (`mmsearch.planner.hubness`).

Embeds a seeded sample of training captions (split `train` of flickr8k_train224, never val
or the evaluation set) with the shipped text tower of `--spec` and writes
`mmsearch/models/<spec>.bank.safetensors` (float16 unit rows, tau, beta and provenance in
the metadata). `--choose N` first picks tau and beta on a part of train: N train images
(seeded) as the gallery and their captions as queries, the bank drawn from the other train
images' captions; it prints text->image R@1/5/10 over a grid and keeps the setting with
the best R@1 + R@5 + R@10 (the val split stays for the final check, `lite_eval.py`).

    python training/build_hub_bank.py --data-dir ../shared/data/flickr8k_train224 \
        --spec mmsearch-lite-4 --captions 4096 --choose 887
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lite_eval import embed_images, embed_texts, recalls
from mmsearch.encoders.lite import load_lite
from mmsearch.planner.hubness import HubPrior, bank_path, write_bank

TAUS = (0.01, 0.02, 0.05, 0.1)
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def train_captions(data_dir: Path, exclude: set[str] | None = None) -> list[tuple[str, str]]:
    """(image_id, caption) of split `train`, in file order, images in `exclude` left out."""
    with open(data_dir / "captions.csv", newline="", encoding="utf-8") as f:
        return [(r["image_id"], r["caption"].strip()) for r in csv.DictReader(f)
                if r["split"] == "train" and r["image_id"] not in (exclude or set())]


def sample(rows: list[tuple[str, str]], n: int, seed: int) -> list[str]:
    """`n` captions drawn without replacement (all when fewer)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), min(n, len(rows)), replace=False)
    return [rows[i][1] for i in np.sort(pick)]


def embed(enc, texts: list[str]) -> np.ndarray:
    """Unit text embeddings."""
    return embed_texts(enc, texts, 256)[0].astype(np.float32)


def choose(enc, data_dir: Path, gallery_size: int, captions: int, seed: int
           ) -> tuple[float, float]:
    """The (tau, beta) of the grid with the best R@1+5+10 on a part of train (printed)."""
    rows = train_captions(data_dir)
    images = sorted({i for i, _ in rows})
    rng = np.random.default_rng(seed + 1)
    gallery = sorted(rng.choice(images, gallery_size, replace=False).tolist())
    index = {g: n for n, g in enumerate(gallery)}
    queries = [(index[i], c) for i, c in rows if i in index]
    owner = np.array([o for o, _ in queries])
    t0 = time.perf_counter()
    img = embed_images([enc], [data_dir / "images" / f"{g}.jpg" for g in gallery], 32)[0][0]
    txt = embed(enc, [c for _, c in queries])
    bank = embed(enc, sample(train_captions(data_dir, set(gallery)), captions, seed))
    print(f"part of train: {len(gallery)} images, {len(queries)} captions, bank "
          f"{len(bank)} ({time.perf_counter() - t0:.0f} s to embed)")
    best, pick = -1.0, (TAUS[0], 0.0)
    print("| tau | beta | R@1 | R@5 | R@10 |\n|---|---|---|---|---|")
    for tau in TAUS:
        hub = HubPrior(bank, tau, 1.0).hubness(img)
        for beta in BETAS:
            got = recalls(img, txt, owner, beta * (hub - hub.mean()))
            r = (got["t2i_r1"], got["t2i_r5"], got["t2i_r10"])
            print(f"| {tau} | {beta} | {r[0]:.2f} | {r[1]:.2f} | {r[2]:.2f} |")
            if sum(r) > best + 1e-9:
                best, pick = sum(r), (tau, beta)
    print(f"chosen: tau {pick[0]}, beta {pick[1]}")
    return pick


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--spec", default="mmsearch-lite-4")
    ap.add_argument("--captions", type=int, default=4096)
    ap.add_argument("--tau", type=float, default=0.05)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--choose", type=int, default=0, metavar="N",
                    help="choose tau and beta on N train images first (0: use --tau, --beta)")
    ap.add_argument("--out", type=Path, default=None, help="default: next to the heads")
    args = ap.parse_args(argv)

    enc = load_lite(device=args.device, spec=args.spec)
    if args.choose:
        args.tau, args.beta = choose(enc, args.data_dir, args.choose, args.captions, args.seed)
    texts = sample(train_captions(args.data_dir), args.captions, args.seed)
    t0 = time.perf_counter()
    bank = embed(enc, texts)
    out = args.out or bank_path(args.spec)
    write_bank(out, bank, args.tau, args.beta, spec=args.spec, captions=len(texts),
               chosen=f"on {args.choose} train images" if args.choose else "given",
               source=f"{args.data_dir.name} split train, seed {args.seed}",
               machine=f"{platform.machine()} {platform.processor() or ''}".strip())
    print(f"{len(texts)} captions embedded in {time.perf_counter() - t0:.1f} s -> {out} "
          f"({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
