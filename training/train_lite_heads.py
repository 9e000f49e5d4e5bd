"""Train the mmsearch-lite projection heads on Flickr8k (train split; val for selection).

Step 1 caches the frozen towers' outputs once (EfficientNet-Lite2 feature maps of every
image and of its mirror image, MiniLM token states of every caption) under --cache-dir;
step 2 trains the heads on those caches with the symmetric CLIP loss and a learned
temperature, keeps the epoch with the best val text->image recall and writes float16
safetensors. Re-running with a warm cache takes minutes on a laptop CPU.

    python training/train_lite_heads.py \\
        --data-dir ../shared/data/flickr8k_train224 --cache-dir /work/cache/lite \\
        --out mmsearch/models/mmsearch-lite.heads.safetensors
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmsearch.encoders import lite

CACHE_VERSION = f"v1-{lite.IMAGE_SIZE}"


# --------------------------------------------------------------------------- data


def read_captions(data_dir: Path) -> dict[str, list[dict[str, str]]]:
    """captions.csv rows grouped by split, ordered by (image_id, caption_id)."""
    splits: dict[str, list[dict[str, str]]] = {}
    with open(data_dir / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            splits.setdefault(row["split"], []).append(row)
    for rows in splits.values():
        rows.sort(key=lambda r: (r["image_id"], int(r["caption_id"])))
    return splits


def split_items(rows: list[dict[str, str]]) -> tuple[list[str], list[str], np.ndarray]:
    """(image files, captions, image index of each caption) for one split."""
    files: list[str] = []
    index: dict[str, int] = {}
    captions: list[str] = []
    owner: list[int] = []
    for r in rows:
        if r["file"] not in index:
            index[r["file"]] = len(files)
            files.append(r["file"])
        captions.append(r["caption"].strip())
        owner.append(index[r["file"]])
    return files, captions, np.asarray(owner, dtype=np.int64)


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


def crop_tokens(tokens: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random square crop (size x size) of a batch of square token maps (N, S*S, C)."""
    n, t, c = tokens.shape
    side = math.isqrt(t)
    if size >= side:
        return tokens
    grid = tokens.view(n, side, side, c)
    out = torch.empty(n, size, size, c, dtype=tokens.dtype)
    offs = torch.randint(0, side - size + 1, (n, 2), generator=gen)
    for i, (y, x) in enumerate(offs.tolist()):
        out[i] = grid[i, y:y + size, x:x + size]
    return out.view(n, size * size, c)


@torch.no_grad()
def embed_split(heads: lite.LiteHeads, data: Split, batch: int = 512
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit embeddings of a split's images (first view) and captions."""
    heads.eval()
    source = data.pooled if heads.image.pool is None else data.images
    imgs = [F.normalize(heads.image(source[i:i + batch].float()), dim=-1)
            for i in range(0, data.n_images, batch)]
    txts = []
    for i in range(0, len(data.captions), batch):
        caps = torch.arange(i, min(i + batch, len(data.captions)))
        tokens, mask = data.text_batch(caps)
        txts.append(F.normalize(heads.text(tokens, mask), dim=-1))
    return torch.cat(imgs), torch.cat(txts)


def recalls(img: torch.Tensor, txt: torch.Tensor, owner: torch.Tensor,
            ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """text->image and image->text recall@k (percent); one gallery entry per image.

    text->image: each caption is a query over all images. image->text: each image is a
    query over all captions; a hit is any of its own captions within the top k.
    """
    sims = txt @ img.T  # (M captions, N images)
    true = sims.gather(1, owner.unsqueeze(1))
    t2i_rank = (sims > true).sum(dim=1)
    own = owner.unsqueeze(0) == torch.arange(img.shape[0]).unsqueeze(1)  # (N, M)
    best_true = sims.T.masked_fill(~own, float("-inf")).max(dim=1, keepdim=True).values
    i2t_rank = (best_true < sims.T).sum(dim=1)
    out = {f"t2i_r{k}": 100.0 * float((t2i_rank < k).float().mean()) for k in ks}
    out.update({f"i2t_r{k}": 100.0 * float((i2t_rank < k).float().mean()) for k in ks})
    return out


def train(folder: Path, args: argparse.Namespace) -> tuple[lite.LiteHeads, dict]:
    """Train heads; return the best-on-val heads and a log."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    views = ("orig", "flip") if args.flip else ("orig",)
    tr = Split(folder, "train", views)
    va = Split(folder, "val", ("orig",))
    config = {"dim": args.dim, "image_hidden": args.hidden, "image_blocks": args.blocks,
              "image_pool_heads": args.image_pool_heads, "text_hidden": args.hidden,
              "text_blocks": args.blocks, "text_pool_heads": args.text_pool_heads,
              "dropout": args.dropout, "logit_scale": math.log(1.0 / args.temperature)}
    heads = lite.LiteHeads(config)
    decay, no_decay = [], []
    for name, p in heads.named_parameters():
        (decay if p.ndim >= 2 and "score" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    per_round = tr.n_images // args.batch_size
    total = args.epochs * 5 * per_round
    warm = max(1, int(0.03 * total))

    def lr_at(step: int) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    log: dict = {"config": config, "args": {k: str(v) for k, v in vars(args).items()},
                 "epochs": []}
    best, best_state, step = -1.0, None, 0
    t0 = time.time()
    for epoch in range(args.epochs):
        heads.train()
        # each image's 5 captions in a random order: round r uses the r-th (no duplicates
        # of an image within a batch, every caption once per epoch)
        cap_order = [torch.tensor(c)[torch.randperm(len(c), generator=gen)]
                     for c in tr.by_image]
        losses = []
        for r in range(5):
            perm = torch.randperm(tr.n_images, generator=gen)
            for b in range(per_round):
                idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
                view = torch.randint(0, tr.n_views, (len(idx),), generator=gen)
                rows = idx + view * tr.n_images
                if heads.image.pool is None and not args.crop:
                    ie = heads.image(tr.pooled[rows])
                elif args.crop and args.crop < 9:
                    img_tokens = tr.images[rows]
                    keep = torch.rand(len(idx), generator=gen) < args.crop_prob
                    if keep.any():
                        cropped = crop_tokens(img_tokens[keep], args.crop, gen)
                        full = img_tokens.float()
                        ie_c = heads.image(cropped.float())
                        ie_f = heads.image(full[~keep]) if (~keep).any() else None
                        ie = torch.empty(len(idx), ie_c.shape[1])
                        ie[keep] = ie_c
                        if ie_f is not None:
                            ie[~keep] = ie_f
                    else:
                        ie = heads.image(img_tokens.float())
                else:
                    ie = heads.image(tr.images[rows].float())
                caps = torch.stack([cap_order[i][r % len(cap_order[i])] for i in idx.tolist()])
                tokens, mask = tr.text_batch(caps)
                if args.token_drop > 0:
                    drop = torch.rand(mask.shape, generator=gen) < args.token_drop
                    drop[:, 0] = False
                    mask = mask & ~drop
                te = heads.text(tokens, mask)
                ie, te = F.normalize(ie, dim=-1), F.normalize(te, dim=-1)
                scale = heads.logit_scale.exp().clamp(max=100.0)
                logits = scale * ie @ te.T
                target = torch.arange(len(idx))
                loss = (F.cross_entropy(logits, target, label_smoothing=args.smoothing)
                        + F.cross_entropy(logits.T, target, label_smoothing=args.smoothing)) / 2
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
        img, txt = embed_split(heads, va)
        rec = recalls(img, txt, va.owner)
        score = rec["t2i_r1"] + rec["t2i_r5"] + rec["t2i_r10"]
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                 "temperature": float(1 / heads.logit_scale.exp()),
                 "seconds": round(time.time() - t0, 1), **{k: round(v, 2) for k, v in rec.items()}}
        log["epochs"].append(entry)
        print(json.dumps(entry), flush=True)
        if score > best:
            best = score
            best_state = {k: v.clone() for k, v in heads.state_dict().items()}
            log["best"] = entry
    assert best_state is not None
    heads.load_state_dict(best_state)
    heads.eval()
    return heads, log


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True,
                   help="flickr8k_train224 folder (captions.csv with a split column)")
    p.add_argument("--cache-dir", type=Path, required=True,
                   help="where tower outputs are cached (outside the repo)")
    p.add_argument("--out", type=Path, required=True, help="heads .safetensors to write")
    p.add_argument("--log", type=Path, default=None,
                   help="JSON training log (default: CACHE_DIR/train_log.json)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-only", action="store_true", help="build the cache and stop")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.5)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--image-pool-heads", type=int, default=1)
    p.add_argument("--text-pool-heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=0.07, help="initial temperature")
    p.add_argument("--smoothing", type=float, default=0.0, help="label smoothing")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="do not use the mirrored images")
    p.add_argument("--crop", type=int, default=7, help="random crop of the 9x9 token map (0: off)")
    p.add_argument("--crop-prob", type=float, default=0.5)
    p.add_argument("--token-drop", type=float, default=0.0,
                   help="fraction of caption tokens dropped from pooling while training")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = build_cache(args.data_dir, args.cache_dir)
    if args.cache_only:
        return
    heads, log = train(folder, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    heads.save(args.out, extra={"val": {k: v for k, v in log["best"].items() if k != "seconds"}})
    log_path = args.log or args.cache_dir / "train_log.json"
    log_path.write_text(json.dumps(log, indent=1))
    print(f"best val {json.dumps(log['best'])}\nwrote {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)", flush=True)


if __name__ == "__main__":
    main()
