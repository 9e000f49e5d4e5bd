"""Cache the frozen mmsearch-lite towers' multi-layer outputs once, for head training.

One forward per image (EfficientNet-Lite2 at 260x260) keeps, in float16:
  - ``s4``: stage-4 output (17x17x120) mean- and max-pooled -> (240,)
  - ``s5``: stage-5 output, 9x9x208 cells (input of the last stage; lets it be retrained)
  - ``s6``: stage-6 output, 9x9x352 cells (input of the 1x1 head conv)
  - ``fmap``: the final 9x9x1280 map (what the v1 heads pool)
One forward per caption (MiniLM) keeps the token states of layers 4, 5 and 6 (ragged:
tokens of all captions concatenated, with offsets), so the top text layer can be retrained.

Files go under ``CACHE_DIR/v2-260/``; images in chunks of 256 (any number of workers can
share the work: each claims a chunk before computing it; a finished chunk is never redone).

    python training/cache_lite_features.py --data-dir ../shared/data/flickr8k_train224 \\
        --cache-dir /work/cache/lite --what val --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_lite_heads import CACHE_VERSION, CHUNK, read_captions, split_items

from mmsearch.encoders import lite

TEXT_LAYERS = (4, 5, 6)


def cache_image_chunk(tower, data_dir: Path, files: list[str], out: Path, flip: bool,
                      device: str, batch_size: int = 32) -> None:
    """Write one chunk's features (.npz of float16 arrays) atomically."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(files), batch_size):
        images = [Image.open(data_dir / f).convert("RGB") for f in files[start:start + batch_size]]
        if flip:
            images = [ImageOps.mirror(im) for im in images]
        pixels = torch.stack([lite.preprocess_image(im) for im in images]).to(device)
        with torch.inference_mode():
            feats = lite.stage_features(tower, pixels)
        for k, v in feats.items():
            parts.setdefault(k, []).append(v.to(torch.float16).cpu().numpy())
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, **{k: np.concatenate(v) for k, v in parts.items()})
    tmp.rename(out)
    out.with_suffix(".claim").unlink(missing_ok=True)


def _claim(chunk: Path) -> bool:
    """Claim a chunk for this process (a .claim file, created exclusively); False when it
    is done or another process claimed it. Delete stale .claim files after a crash."""
    if chunk.exists():
        return False
    try:
        os.close(os.open(chunk.with_suffix(".claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def image_chunks(folder: Path, split: str, view: str, n: int) -> list[Path]:
    """Chunk files of one split/view, in order."""
    return [folder / f"img_{split}_{view}_{k:03d}.npz" for k in range(math.ceil(n / CHUNK))]


def cache_images(data_dir: Path, folder: Path, split: str, view: str, device: str) -> None:
    """Cache the missing chunks of one split/view that no other process has claimed."""
    files, _, _ = split_items(read_captions(data_dir)[split])
    chunks = image_chunks(folder, split, view, len(files))
    todo = [k for k, p in enumerate(chunks) if not p.exists()]
    if not todo:
        return
    tower = lite.build_image_tower().to(device).to(memory_format=torch.channels_last)
    for k in todo:
        if not _claim(chunks[k]):
            continue
        t0 = time.time()
        part = files[k * CHUNK:(k + 1) * CHUNK]
        cache_image_chunk(tower, data_dir, part, chunks[k], view == "flip", device)
        print(f"  {chunks[k].name}: {len(part)} images, {len(part) / (time.time() - t0):.1f}/s",
              flush=True)


def cache_texts(data_dir: Path, folder: Path, split: str, device: str,
                batch_size: int = 256) -> None:
    """MiniLM token states of layers TEXT_LAYERS for every caption (ragged, float16)."""
    out = folder / f"txt_{split}.npz"
    if out.exists():
        return
    _, captions, _ = split_items(read_captions(data_dir)[split])
    tokenizer, model = lite.build_text_tower()
    model = model.to(device)
    ids = tokenizer(captions, truncation=True, max_length=lite.MAX_TOKENS)["input_ids"]
    lengths = np.asarray([len(x) for x in ids])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    layers = {n: np.zeros((int(offsets[-1]), lite.TEXT_WIDTH), dtype=np.float16)
              for n in TEXT_LAYERS}
    order = np.argsort(lengths, kind="stable")  # batches of similar length: little padding
    t0 = time.time()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = lite.tokenize(tokenizer, [captions[c] for c in idx])
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode():
            hs = model(**batch, output_hidden_states=True).hidden_states
        for i, c in enumerate(idx):
            for n in TEXT_LAYERS:
                layers[n][offsets[c]:offsets[c + 1]] = \
                    hs[n][i, :lengths[c]].to(torch.float16).cpu().numpy()
        if (start // batch_size) % 20 == 19:
            print(f"  {out.name}: {start + len(idx)}/{len(order)}", flush=True)
    print(f"  {out.name}: {len(captions)} captions in {time.time() - t0:.0f}s", flush=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, lengths=lengths, offsets=offsets,
             **{f"layer{n}": v for n, v in layers.items()})
    tmp.rename(out)


def write_meta(data_dir: Path, folder: Path) -> None:
    """Files, captions and caption owners of each split (JSON)."""
    for split, rows in read_captions(data_dir).items():
        files, captions, owner = split_items(rows)
        (folder / f"meta_{split}.json").write_text(json.dumps(
            {"files": files, "captions": captions, "owner": owner.tolist()}))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--what", default="text,val,train",
                   help="comma list of: text, val, valflip, train, trainflip")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = args.cache_dir / CACHE_VERSION
    folder.mkdir(parents=True, exist_ok=True)
    write_meta(args.data_dir, folder)
    for what in args.what.split(","):
        if what == "text":
            for split in ("train", "val"):
                cache_texts(args.data_dir, folder, split, args.device)
        else:
            split = "train" if what.startswith("train") else "val"
            view = "flip" if what.endswith("flip") else "orig"
            cache_images(args.data_dir, folder, split, view, args.device)


if __name__ == "__main__":
    main()
