"""The first-generation feature cache (``CACHE_DIR/v1-260/``) that the retired `lite`
reranker's training script (train_lite_reranker.py) reads: final 9x9x1280 image maps and
padded last-layer MiniLM states. mmsearch-lite-2 uses cache_lite_features.py instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_lite_heads import read_captions, split_items

from mmsearch.encoders import lite

CACHE_VERSION = f"v1-{lite.IMAGE_SIZE}"


# --------------------------------------------------------------------------- caching


def cache_images(tower: torch.nn.Module, data_dir: Path, files: list[str], out: Path,
                 flip: bool, batch_size: int = 32) -> None:
    """Write the tower's (N, H*W, C) float16 token maps of the images to `out` (.npy)."""
    if out.exists():
        return
    tmp = out.with_suffix(".tmp.npy")
    arr = None
    t0 = time.time()
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        images = [Image.open(data_dir / f).convert("RGB") for f in chunk]
        if flip:
            images = [ImageOps.mirror(im) for im in images]
        pixels = torch.stack([lite.preprocess_image(im) for im in images])
        with torch.inference_mode():
            tokens = lite.image_features(tower, pixels).to(torch.float16).numpy()
        if arr is None:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                            shape=(len(files), *tokens.shape[1:]))
        arr[start:start + len(chunk)] = tokens
        done = start + len(chunk)
        if done % (batch_size * 20) == 0 or done == len(files):
            rate = done / (time.time() - t0)
            print(f"  {out.name}: {done}/{len(files)} images ({rate:.1f}/s)", flush=True)
    assert arr is not None
    arr.flush()
    del arr
    tmp.rename(out)


def cache_texts(tokenizer, model, captions: list[str], out: Path, batch_size: int = 256) -> None:
    """Write MiniLM token states (M, L, 384) float16 and lengths (M,) to `out` (.npz)."""
    if out.exists():
        return
    lengths = np.asarray([len(x) for x in tokenizer(captions, truncation=True,
                                                    max_length=lite.MAX_TOKENS)["input_ids"]])
    width = int(lengths.max())
    hidden = np.zeros((len(captions), width, lite.TEXT_WIDTH), dtype=np.float16)
    order = np.argsort(lengths)
    t0 = time.time()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = lite.tokenize(tokenizer, [captions[i] for i in idx])
        with torch.inference_mode():
            h, _ = lite.text_features(model, batch)
        hidden[idx, :h.shape[1]] = h.to(torch.float16).numpy()
    print(f"  {out.name}: {len(captions)} captions in {time.time() - t0:.0f}s", flush=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, hidden=hidden, lengths=lengths)
    tmp.rename(out)


def build_cache(data_dir: Path, cache_dir: Path) -> Path:
    """Cache tower outputs for the train and val splits; return the cache folder."""
    folder = cache_dir / CACHE_VERSION
    folder.mkdir(parents=True, exist_ok=True)
    splits = read_captions(data_dir)
    jobs = [("train", False), ("train", True), ("val", False)]
    if not all((folder / f"img_{s}_{'flip' if fl else 'orig'}.npy").exists() for s, fl in jobs):
        tower = lite.build_image_tower().to(memory_format=torch.channels_last)
        for split, flip in jobs:
            files, _, _ = split_items(splits[split])
            cache_images(tower, data_dir, files,
                         folder / f"img_{split}_{'flip' if flip else 'orig'}.npy", flip)
        del tower
    if not all((folder / f"txt_{s}.npz").exists() for s in ("train", "val")):
        tokenizer, model = lite.build_text_tower()
        for split in ("train", "val"):
            _, captions, _ = split_items(splits[split])
            cache_texts(tokenizer, model, captions, folder / f"txt_{split}.npz")
    for split in ("train", "val"):
        files, captions, owner = split_items(splits[split])
        (folder / f"meta_{split}.json").write_text(json.dumps(
            {"files": files, "captions": captions, "owner": owner.tolist()}))
    return folder


# --------------------------------------------------------------------------- training


class Split:
    """Cached tower outputs of one split, as float16 torch tensors."""

    def __init__(self, folder: Path, split: str, views: tuple[str, ...]) -> None:
        meta = json.loads((folder / f"meta_{split}.json").read_text())
        self.files: list[str] = meta["files"]
        self.captions: list[str] = meta["captions"]
        self.owner = torch.tensor(meta["owner"], dtype=torch.long)
        maps = [np.load(folder / f"img_{split}_{v}.npy", mmap_mode="r") for v in views]
        self.images = torch.from_numpy(np.concatenate(maps, axis=0))  # (V*N, T, C)
        self.pooled = torch.cat([self.images[i:i + 1024].mean(dim=1, dtype=torch.float32)
                                 for i in range(0, len(self.images), 1024)])  # (V*N, C)
        self.n_images = len(self.files)
        self.n_views = len(views)
        txt = np.load(folder / f"txt_{split}.npz")
        self.text = torch.from_numpy(txt["hidden"])  # (M, L, D)
        self.lengths = torch.from_numpy(txt["lengths"]).long()
        self.by_image = [[] for _ in range(self.n_images)]
        for cap, img in enumerate(self.owner.tolist()):
            self.by_image[img].append(cap)

    def text_batch(self, caps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 token states and mask of some captions, trimmed to the longest."""
        lengths = self.lengths[caps]
        width = int(lengths.max())
        mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        return self.text[caps, :width].float(), mask
