"""Train the mmsearch-lite heads on Flickr8k (train split; val for selection).

Works on the feature cache of ``training/cache_lite_features.py`` (one pass of each frozen
tower over every image and caption, several layers kept), so an epoch costs only the heads
(plus, optionally, the retrained top of a tower): minutes on a laptop CPU, seconds on a GPU.

Options cover what issue 16 measures one at a time: richer image features (``--image-cells
fmap,s6``, ``--image-global s4``), several text layers (``--text-layers 5,6``), retraining
MiniLM's last layer or two (``--tune-text``, ``--tune-text-layers 2``) or the image tower's
last 1x1 conv (``--tune-image``) at a small learning rate, the CLIP or a SigLIP loss
(``--loss``), batches of similar images as hard negatives (``--hard-frac``), and test-time
flip averaging (``--flip-average``, scored on the mirrored val cache).

    python training/train_lite_heads.py --data-dir ../shared/data/flickr8k_train224 \\
        --cache-dir /work/cache/lite --out /tmp/heads.safetensors --device cpu --seed 0
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmsearch.encoders import lite

CACHE_VERSION = f"v2-{lite.IMAGE_SIZE}"
CHUNK = 256  # images per cache file (cache_lite_features.py)


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


class Split:
    """Cached tower outputs of one split (float16 torch tensors), restricted to the images
    whose chunks are complete (a prefix of the split, so caching may still run)."""

    def __init__(self, folder: Path, split: str, image_keys: list[str], text_layers: list[int],
                 view: str = "orig", max_images: int | None = None) -> None:
        meta = json.loads((folder / f"meta_{split}.json").read_text())
        total = len(meta["files"])
        n_chunks = 0
        while (n_chunks * CHUNK < total
               and (folder / f"img_{split}_{view}_{n_chunks:03d}.npz").exists()):
            n_chunks += 1
        n = min(total, n_chunks * CHUNK, max_images or total)
        if n == 0:
            raise SystemExit(f"no cached {split}/{view} images under {folder}")
        self.n_images = n
        parts: dict[str, list[np.ndarray]] = {k: [] for k in image_keys}
        for c in range(math.ceil(n / CHUNK)):
            with np.load(folder / f"img_{split}_{view}_{c:03d}.npz") as z:
                for k in image_keys:
                    parts[k].append(z[k])
        self.images = {k: torch.from_numpy(np.concatenate(v)[:n]) for k, v in parts.items()}
        owner = np.asarray(meta["owner"])
        self.n_captions = int((owner < n).sum())  # captions are sorted by image
        self.owner = torch.from_numpy(owner[:self.n_captions]).long()
        txt = np.load(folder / f"txt_{split}.npz")
        self.lengths = torch.from_numpy(txt["lengths"][:self.n_captions]).long()
        self.offsets = txt["offsets"]
        self.text = {n_: torch.from_numpy(txt[f"layer{n_}"]) for n_ in text_layers}
        self.by_image: list[list[int]] = [[] for _ in range(n)]
        for cap, img in enumerate(self.owner.tolist()):
            self.by_image[img].append(cap)

    def image_batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """float32 features of some images."""
        return {k: v[rows].float() for k, v in self.images.items()}

    def text_batch(self, caps: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """float32 padded token states by layer and the mask of some captions."""
        lengths = self.lengths[caps]
        width = int(lengths.max())
        mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        flat = np.concatenate([np.arange(self.offsets[c], self.offsets[c] + n)
                               for c, n in zip(caps.tolist(), lengths.tolist(), strict=True)])
        out = {}
        for n, states in self.text.items():
            padded = torch.zeros(len(caps), width, states.shape[1])
            padded[mask] = states[torch.from_numpy(flat)].float()
            out[n] = padded
        return out, mask


# --------------------------------------------------------------------------- model


TEXT_DEPTH = 6  # MiniLM's layers; the cache holds the token states of layers 4, 5 and 6


class Trainable(nn.Module):
    """The heads plus the optionally retrained tower parts, on cached features.

    `text_stack`: copies of MiniLM's last layers (in order; one layer or several), fed with
    the cached token states of layer ``6 - len(text_stack)``.
    """

    def __init__(self, heads: lite.LiteHeads, text_stack: Sequence[nn.Module] | None,
                 image_head: nn.Module | None) -> None:
        super().__init__()
        self.heads = heads
        self.text_stack = nn.ModuleList(text_stack) if text_stack else None
        self.text_input = TEXT_DEPTH - len(self.text_stack or [])  # layer whose states go in
        self.image_head = image_head  # copy of the tower's conv_head + bn2: s6 cells in
        self.text_part = 128  # captions per length-sorted part of a batch (text_stack only)

    def image(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.image_head is not None:
            s6 = feats["s6"]
            n, t, c = s6.shape
            side = math.isqrt(t)
            grid = s6.transpose(1, 2).reshape(n, c, side, side)
            feats = dict(feats, fmap=self.image_head(grid).flatten(2).transpose(1, 2))
        return self.heads.embed_image(feats)

    def text_states(self, layers: dict[int, torch.Tensor], mask: torch.Tensor
                    ) -> dict[int, torch.Tensor]:
        """`layers` plus the token states of every retrained layer (run on the cached states
        of layer `text_input`, padding masked)."""
        out = dict(layers)
        if self.text_stack is None:
            return out
        bias = torch.zeros(mask.shape, device=mask.device).masked_fill(
            ~mask, torch.finfo(torch.float32).min)[:, None, None, :]
        x = layers[self.text_input]
        for i, layer in enumerate(self.text_stack):
            x = layer(x, attention_mask=bias)
            x = x[0] if isinstance(x, tuple) else x
            out[self.text_input + i + 1] = x
        return out

    def text(self, layers: dict[int, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        if self.text_stack is None:
            return self.heads.embed_text(layers, mask)
        # the retrained layers cost most of a step: run them on length-sorted parts of the
        # batch, each cut to its own longest caption (the same result as one padded pass,
        # since padding is masked; captions are 14 tokens on average, batches ~40 wide)
        lengths = mask.sum(dim=1)
        order = lengths.argsort()
        parts = []
        for part in order.split(self.text_part):
            width = int(lengths[part].max())
            m = mask[part, :width]
            sub = self.text_states({k: v[part, :width] for k, v in layers.items()}, m)
            parts.append(self.heads.embed_text(sub, m))
        return torch.cat(parts)[order.argsort()]

    def tower_state(self) -> dict[str, torch.Tensor]:
        """Retrained tower tensors under the encoder's names (see lite.apply_tower_state):
        MiniLM's layer n is ``text.encoder.layer.{n-1}``."""
        state = {}
        for i, layer in enumerate(self.text_stack or []):
            state.update({f"text.encoder.layer.{self.text_input + i}.{k}": v
                          for k, v in layer.state_dict().items()})
        if self.image_head is not None:
            names = {"0": "conv_head", "1": "bn2"}
            for k, v in self.image_head.state_dict().items():
                first, rest = k.split(".", 1)
                if rest != "num_batches_tracked":
                    state[f"image.{names[first]}.{rest}"] = v
        return state


def image_keys(heads: lite.LiteHeads, tune_image: bool) -> list[str]:
    keys = set(heads.image_cells) | {lite.feature_source(k) for k in heads.image_global}
    if tune_image:
        keys = (keys - {"fmap"}) | {"s6"}
    return sorted(keys)


def text_keys(heads: lite.LiteHeads, tuned_layers: int) -> list[int]:
    """Cached text layers a step reads: the heads' layers, with the retrained ones (the last
    `tuned_layers`) replaced by the input of the first of them."""
    keys = set(heads.text_layers)
    if tuned_layers:
        first = TEXT_DEPTH - tuned_layers
        keys = {k for k in keys if k <= first} | {first}
    return sorted(keys)


def text_stack(init_tower: dict[str, torch.Tensor], n: int) -> list[nn.Module]:
    """Copies of MiniLM's last `n` layers from the PyPI tower, with the retrained tensors of
    `init_tower` (a heads file's ``text.*``) loaded where it has them: from a file with a
    retrained layer 6, that layer goes on training and layer 5 starts from PyPI."""
    first = TEXT_DEPTH - n
    below = sorted({int(k.split(".")[3]) for k in init_tower if k.startswith("text.encoder.layer.")
                    and int(k.split(".")[3]) < first})
    if below or any(k.startswith("text.") and not k.startswith("text.encoder.layer.")
                    for k in init_tower):
        raise SystemExit(f"the start has retrained text tensors below the {n} tuned layer(s) "
                         f"(layer indices {below}): the cached states would not match")
    _, bert = lite.build_text_tower()
    lite.apply_tower_state(bert, init_tower, "text")
    return [copy.deepcopy(bert.encoder.layer[i]) for i in range(first, TEXT_DEPTH)]


def crop_cells(feats: dict[str, torch.Tensor], size: int, gen: torch.Generator
               ) -> dict[str, torch.Tensor]:
    """The same random size x size crop of every square cell map in `feats` (per image)."""
    cells = {k: v for k, v in feats.items() if v.ndim == 3}
    n, t, _ = next(iter(cells.values())).shape
    side = math.isqrt(t)
    if size >= side:
        return feats
    offs = torch.randint(0, side - size + 1, (n, 2), generator=gen)
    ys = offs[:, :1, None] + torch.arange(size)[None, :, None]
    xs = offs[:, 1:, None] + torch.arange(size)[None, None, :]
    idx = (ys * side + xs).reshape(n, size * size)
    out = dict(feats)
    for k, v in cells.items():
        out[k] = v.gather(1, idx.unsqueeze(-1).expand(-1, -1, v.shape[2]))
    return out


@torch.no_grad()
def embed_images(model: Trainable, data: Split, device: str, batch: int = 256) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, data.n_images, batch):
        rows = torch.arange(i, min(i + batch, data.n_images))
        feats = {k: v.to(device) for k, v in data.image_batch(rows).items()}
        out.append(F.normalize(model.image(feats), dim=-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model: Trainable, data: Split, device: str, batch: int = 512) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, data.n_captions, batch):
        layers, mask = data.text_batch(torch.arange(i, min(i + batch, data.n_captions)))
        layers = {k: v.to(device) for k, v in layers.items()}
        out.append(F.normalize(model.text(layers, mask.to(device)), dim=-1).cpu())
    return torch.cat(out)


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


def contrastive_loss(ie: torch.Tensor, te: torch.Tensor, scale: torch.Tensor,
                     bias: torch.Tensor | None, kind: str) -> torch.Tensor:
    """Symmetric CLIP (InfoNCE) or SigLIP (pairwise sigmoid) loss of matched rows."""
    logits = scale * ie @ te.T
    if kind == "siglip":
        labels = 2 * torch.eye(len(ie), device=ie.device) - 1
        return -F.logsigmoid(labels * (logits + bias)).sum() / len(ie)
    target = torch.arange(len(ie), device=ie.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def similar_batches(img: torch.Tensor, batch_size: int, group: int, gen: torch.Generator
                    ) -> list[torch.Tensor]:
    """Batches made of groups of `group` mutually similar images (hard negatives).

    Greedy: a random seed image and its `group - 1` nearest unused neighbours form a group;
    batch_size // group random groups form a batch.
    """
    n = len(img)
    sims = img @ img.T
    used = torch.zeros(n, dtype=torch.bool)
    groups = []
    for seed in torch.randperm(n, generator=gen).tolist():
        if used[seed]:
            continue
        s = sims[seed].masked_fill(used, float("-inf"))
        members = s.topk(min(group, int((~used).sum()))).indices
        used[members] = True
        groups.append(members)
    order = torch.randperm(len(groups), generator=gen).tolist()
    flat = torch.cat([groups[i] for i in order])
    return [flat[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def grown_state(init: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
    """`own` with every tensor of `init` copied in; where `init` is smaller (new input
    columns, e.g. global image features appended to a head's input), its values fill the
    leading block and the rest stays zero, so training starts from the old heads' function."""
    out = dict(own)
    for k, v in init.items():
        if k not in own:
            continue
        if own[k].shape == v.shape:
            out[k] = v.clone()
        elif own[k].ndim == v.ndim == 2 and own[k].shape[0] == v.shape[0]:
            grown = torch.zeros_like(own[k])
            grown[:, :v.shape[1]] = v
            out[k] = grown
    return out


def train(folder: Path, args: argparse.Namespace, on_best: Any = None
          ) -> tuple[Trainable, dict]:
    """Train; return the best-on-val model (heads + retrained tower parts) and a log.

    `on_best(model, log)`, when given, is called at each new best val score after epoch 0
    (a long run then keeps its best so far on disk). `args.max_minutes` ends training after
    the epoch in which that much time has passed.
    """
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = args.device
    config = {"dim": args.dim, "image_hidden": args.hidden, "image_blocks": args.blocks,
              "image_pool_heads": args.image_pool_heads, "text_hidden": args.hidden,
              "text_blocks": args.blocks, "text_pool_heads": args.text_pool_heads,
              "dropout": args.dropout, "logit_scale": math.log(1.0 / args.temperature),
              "image_cells": args.image_cells.split(","),
              "image_global": [k for k in args.image_global.split(",") if k],
              "text_layers": [int(n) for n in args.text_layers.split(",")],
              "flip_average": args.flip_average, "spec": args.spec}
    heads = lite.LiteHeads(config)
    init_tower: dict[str, torch.Tensor] = {}
    if args.init:
        start = lite.LiteHeads.load(args.init)
        heads.load_state_dict(grown_state(start.state_dict(), heads.state_dict()))
        init_tower = start.tower_state
    image_head = None
    tuned_layers = args.tune_text_layers if args.tune_text else 0
    stack = text_stack(init_tower, tuned_layers) if tuned_layers else None
    if not tuned_layers and any(k.startswith("text.") for k in init_tower):
        raise SystemExit(f"{args.init} has a retrained text layer: add --tune-text")
    if args.tune_image:
        tower = lite.build_image_tower()
        lite.apply_tower_state(tower, init_tower, "image")
        image_head = copy.deepcopy(nn.Sequential(tower.conv_head, tower.bn2))
        del tower
    elif any(k.startswith("image.") for k in init_tower):
        raise SystemExit(f"{args.init} has a retrained image conv: add --tune-image")
    model = Trainable(heads, stack, image_head).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    ikeys, tkeys = image_keys(heads, args.tune_image), text_keys(heads, tuned_layers)
    tr = Split(folder, "train", ikeys, tkeys, max_images=args.max_train_images)
    va = Split(folder, "val", ikeys, tkeys)
    va_flip = Split(folder, "val", ikeys, tkeys, view="flip") if args.flip_average else None
    print(f"train: {tr.n_images} images, {tr.n_captions} captions; val: {va.n_images}",
          flush=True)

    bias = nn.Parameter(torch.tensor(-10.0, device=device)) if args.loss == "siglip" else None
    decay, no_decay, tower_params = [], [], []
    for name, p in model.named_parameters():
        if not name.startswith("heads."):
            tower_params.append(p)
        elif p.ndim >= 2 and "score" not in name:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay, "base": args.lr},
              {"params": no_decay + ([bias] if bias is not None else []), "weight_decay": 0.0,
               "base": args.lr}]
    if tower_params:
        groups.append({"params": tower_params, "weight_decay": 0.01, "base": args.tower_lr})
    opt = torch.optim.AdamW(groups, lr=args.lr)
    per_round = tr.n_images // args.batch_size
    total = args.epochs * 5 * per_round
    if args.max_steps:
        total = min(total, args.max_steps)
    warm = max(1, int(0.03 * total))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    log: dict = {"config": config, "args": {k: str(v) for k, v in vars(args).items()},
                 "train_images": tr.n_images, "epochs": []}
    best, best_state, step = -1.0, None, 0
    t0 = time.time()
    step_seconds: list[float] = []

    def evaluate(epoch: int, losses: list[float]) -> None:
        nonlocal best, best_state
        img = embed_images(model, va, device)
        if va_flip is not None:
            img = F.normalize(img + embed_images(model, va_flip, device), dim=-1)
        rec = recalls(img, embed_texts(model, va, device), va.owner)
        score = rec["t2i_r1"] + rec["t2i_r5"] + rec["t2i_r10"]
        entry = {"epoch": epoch, "step": step,
                 "loss": round(float(np.mean(losses)), 4) if losses else None,
                 "s_per_step": round(float(np.mean(step_seconds)), 2) if step_seconds else None,
                 "temperature": round(float(1 / heads.logit_scale.detach().exp()), 4),
                 "seconds": round(time.time() - t0, 1), **{k: round(v, 2) for k, v in rec.items()}}
        log["epochs"].append(entry)
        print(json.dumps(entry), flush=True)
        if score > best:
            best = score
            best_state = copy.deepcopy(model.state_dict())
            log["best"] = entry
            if on_best is not None and epoch > 0:
                on_best(model, log)

    if args.init:  # epoch 0: the starting heads (kept if training does not beat them)
        evaluate(0, [])
    for epoch in range(args.epochs):
        # each image's 5 captions in a random order: round r uses the r-th (no duplicates
        # of an image within a batch, every caption once per epoch)
        cap_order = [torch.tensor(c)[torch.randperm(len(c), generator=gen)] for c in tr.by_image]
        hard = None
        if args.hard_frac > 0 and epoch >= args.hard_after:
            hard = similar_batches(embed_images(model, tr, device), args.batch_size,
                                   args.hard_group, gen)
        model.train()
        if image_head is not None:
            image_head[1].eval()  # keep the tower's BatchNorm statistics
        losses = []
        for r in range(5):
            use_hard = hard is not None and random.random() < args.hard_frac
            if use_hard:
                batches = [hard[i] for i in torch.randperm(len(hard), generator=gen).tolist()]
            else:
                perm = torch.randperm(tr.n_images, generator=gen)
                batches = [perm[b * args.batch_size:(b + 1) * args.batch_size]
                           for b in range(per_round)]
            for idx in batches[:per_round]:
                if step >= total:
                    break
                t_step = time.perf_counter()
                feats = tr.image_batch(idx)
                if args.crop and torch.rand(1, generator=gen).item() < args.crop_prob:
                    feats = crop_cells(feats, args.crop, gen)
                caps = torch.stack([cap_order[i][r % len(cap_order[i])] for i in idx.tolist()])
                layers, mask = tr.text_batch(caps)
                ie = model.image({k: v.to(device) for k, v in feats.items()})
                te = model.text({k: v.to(device) for k, v in layers.items()}, mask.to(device))
                ie, te = F.normalize(ie, dim=-1), F.normalize(te, dim=-1)
                scale = heads.logit_scale.exp().clamp(max=100.0)
                loss = contrastive_loss(ie, te, scale, bias, args.loss)
                for g in opt.param_groups:
                    g["lr"] = g["base"] * lr_factor(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
                step_seconds.append(time.perf_counter() - t_step)
        evaluate(epoch + 1, losses)
        if step >= total:
            break
        if args.max_minutes and time.time() - t0 > 60 * args.max_minutes:
            log["stopped"] = f"--max-minutes {args.max_minutes} after epoch {epoch + 1}"
            print(log["stopped"], flush=True)
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return model, log


def head_metadata(path: Path) -> dict:
    """The JSON metadata of a heads file (config, val, trained_on, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items() if k != "spec"}


def machine(device: str) -> str:
    """A short description of the machine that trains (written into the heads)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f
                         if ln.startswith("model name")), name)
    except OSError:
        pass
    return f"CPU {name}, {os.cpu_count()} cores, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True,
                   help="flickr8k_train224 folder (captions.csv with a split column)")
    p.add_argument("--cache-dir", type=Path, required=True,
                   help="folder given to cache_lite_features.py (outside the repo)")
    p.add_argument("--out", type=Path, required=True, help="heads .safetensors to write")
    p.add_argument("--log", type=Path, default=None, help="JSON training log (default: OUT.json)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spec", default=lite.LATEST, help="model spec written into the heads")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these heads (tensors whose shapes fit)")
    p.add_argument("--max-train-images", type=int, default=None)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop after this many steps (0: all epochs); the schedule ends there")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--max-minutes", type=float, default=0,
                   help="end training after the epoch in which this much time has passed "
                        "(0: no limit); the best val epoch so far is on disk after each gain")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tower-lr", type=float, default=1e-4,
                   help="learning rate of retrained tower parts")
    p.add_argument("--weight-decay", type=float, default=0.5)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--image-pool-heads", type=int, default=1)
    p.add_argument("--text-pool-heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=0.07, help="initial temperature")
    p.add_argument("--loss", choices=("clip", "siglip"), default="clip")
    p.add_argument("--image-cells", default="fmap", help="comma list of fmap, s6, s5")
    p.add_argument("--image-global", default="", help="comma list of s4 (or empty)")
    p.add_argument("--text-layers", default="6", help="comma list of MiniLM layers (4-6)")
    p.add_argument("--tune-text", action="store_true", help="retrain MiniLM's last layer(s)")
    p.add_argument("--tune-text-layers", type=int, choices=(1, 2), default=1,
                   help="with --tune-text: how many of MiniLM's last layers (2: layers 5 and "
                        "6, fed from the cached layer-4 states)")
    p.add_argument("--tune-image", action="store_true",
                   help="retrain the image tower's last 1x1 conv (+ BatchNorm affine)")
    p.add_argument("--flip-average", action="store_true",
                   help="score val on the mean of image and mirror embeddings (and ship so)")
    p.add_argument("--crop", type=int, default=7, help="random crop of the 9x9 cells (0: off)")
    p.add_argument("--crop-prob", type=float, default=0.5)
    p.add_argument("--hard-frac", type=float, default=0.0,
                   help="fraction of rounds whose batches group similar images")
    p.add_argument("--hard-group", type=int, default=8, help="images per similar group")
    p.add_argument("--hard-after", type=int, default=2, help="first epoch with hard batches")
    args = p.parse_args(argv)
    if args.tune_text_layers != 1 and not args.tune_text:
        p.error("--tune-text-layers needs --tune-text")
    torch.set_num_threads(args.threads)
    folder = args.cache_dir / CACHE_VERSION
    model, log = train(folder, args, on_best=lambda m, lg: write(m, lg, args))
    write(model, log, args)
    print(f"best val {json.dumps(log['best'])}\nwrote {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)", flush=True)


def write(model: Trainable, log: dict, args: argparse.Namespace) -> None:
    """Write the model's heads (+ retrained tower tensors) to args.out and the log beside."""
    heads = copy.deepcopy(model.heads).cpu()
    heads.tower_state = {k: v.detach().cpu() for k, v in model.tower_state().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trained_on = {"device": args.device, "threads": args.threads, "machine": machine(args.device),
                  "train_images": log["train_images"], "seed": args.seed}
    if args.epochs == 0 and args.init:  # only re-scored: the record of the heads' training
        old = head_metadata(args.init).get("trained_on")
        trained_on = {"machine": trained_on["machine"], **old} if old else trained_on
    heads.save(args.out, extra={"val": {k: v for k, v in log["best"].items() if k != "seconds"},
                                "trained_on": trained_on})
    log_path = args.log or args.out.with_suffix(".json")
    log_path.write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
