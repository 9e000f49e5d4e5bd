"""Train the offline `lite` reranker's cross-attention match head on Flickr8k.

1. Cache (shared with train_lite_heads.py, same files): EfficientNet-Lite2 9x9x1280 maps
   of the train and val images (float16) and MiniLM token states of every caption.
2. Fit a fixed PCA of the image cells (1280 -> --dim) on the train images.
3. Mine hard negatives with the shipped mmsearch-lite dual encoder: for each train caption
   its top-ranked wrong images, for each train image its top-ranked wrong captions.
4. Train `mmsearch.rerank.lite_head.MatchHead` with a listwise softmax loss over groups of
   one positive and --candidates - 1 hard negatives (caption groups and image groups).
5. Every --eval-every steps, rerank the dual encoder's top --topk on (a part of) val with
   final = dual cosine + alpha * logit, alpha on a grid; keep the best val text->image R@1.
6. Write float16 safetensors with the config, alpha and the val numbers in its metadata.

    python training/train_lite_reranker.py --data-dir ../shared/data/flickr8k_train224 \\
        --cache-dir /work/cache/lite --out mmsearch/models/mmsearch-lite.rerank.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lite_v1_cache as heads_script

from mmsearch.encoders import lite
from mmsearch.rerank.lite_head import MatchHead

ALPHAS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


# --------------------------------------------------------------------------- data


CHUNK = 256  # train images per cache file


def train_order(n: int) -> np.ndarray:
    """Fixed random order of the train images; chunk k of the cache holds order[k*CHUNK:...],
    so any number of finished chunks is a random subset (--max-train-images)."""
    return np.random.default_rng(1234).permutation(n)


def build_cache(data_dir: Path, cache_dir: Path, worker: int = 0, workers: int = 1) -> Path:
    """Tower outputs of the train images (in CHUNK-sized files; `worker` of `workers`
    processes takes every workers-th chunk), the val images and all captions."""
    folder = cache_dir / heads_script.CACHE_VERSION
    folder.mkdir(parents=True, exist_ok=True)
    splits = heads_script.read_captions(data_dir)
    for split in ("train", "val"):
        files, captions, owner = heads_script.split_items(splits[split])
        (folder / f"meta_{split}.json").write_text(json.dumps(
            {"files": files, "captions": captions, "owner": owner.tolist()}))
    files, _, _ = heads_script.split_items(splits["train"])
    order = train_order(len(files))
    chunks = [k for k in range(math.ceil(len(files) / CHUNK)) if k % workers == worker]
    todo = [k for k in chunks if not (folder / f"img_train_chunk{k:03d}.npy").exists()]
    val_todo = worker == 0 and not (folder / "img_val_orig.npy").exists()
    if todo or val_todo:
        tower = lite.build_image_tower().to(memory_format=torch.channels_last)
        if val_todo:
            val_files, _, _ = heads_script.split_items(splits["val"])
            heads_script.cache_images(tower, data_dir, val_files, folder / "img_val_orig.npy",
                                      flip=False)
        for k in todo:
            part = [files[i] for i in order[k * CHUNK:(k + 1) * CHUNK]]
            heads_script.cache_images(tower, data_dir, part,
                                      folder / f"img_train_chunk{k:03d}.npy", flip=False)
        del tower
    if worker == 0 and not all((folder / f"txt_{s}.npz").exists() for s in ("train", "val")):
        tokenizer, model = lite.build_text_tower()
        for split in ("val", "train"):
            _, captions, _ = heads_script.split_items(splits[split])
            heads_script.cache_texts(tokenizer, model, captions, folder / f"txt_{split}.npz")
    return folder


class TrainSubset(heads_script.Split):
    """The cached train images (the first `max_images` of the fixed order whose chunks are
    cached) with their captions; same fields as `train_lite_heads.Split`."""

    def __init__(self, folder: Path, max_images: int) -> None:
        meta = json.loads((folder / "meta_train.json").read_text())
        order = train_order(len(meta["files"]))
        maps, picked = [], []
        for k in range(math.ceil(len(order) / CHUNK)):
            path = folder / f"img_train_chunk{k:03d}.npy"
            if not path.exists() or len(picked) >= max_images:
                break
            maps.append(np.load(path))
            picked.extend(order[k * CHUNK:(k + 1) * CHUNK].tolist())
        if not maps:
            raise SystemExit(f"no cached train chunks in {folder}; run with --cache-only")
        new_id = {old: i for i, old in enumerate(picked)}
        owner_all = meta["owner"]
        caps = [c for c, o in enumerate(owner_all) if o in new_id]
        self.files = [meta["files"][i] for i in picked]
        self.captions = [meta["captions"][c] for c in caps]
        self.owner = torch.tensor([new_id[owner_all[c]] for c in caps], dtype=torch.long)
        self.images = torch.from_numpy(np.concatenate(maps))
        self.n_images, self.n_views = len(self.files), 1
        txt = np.load(folder / "txt_train.npz")
        self.text = torch.from_numpy(txt["hidden"][caps])
        self.lengths = torch.from_numpy(txt["lengths"][caps]).long()
        self.by_image = [[] for _ in range(self.n_images)]
        for cap, img in enumerate(self.owner.tolist()):
            self.by_image[img].append(cap)


def fit_pca(cells: torch.Tensor, dim: int, sample: int, gen: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C,) and top-`dim` principal directions (C, dim) of (N, S, C) image cells."""
    flat = cells.reshape(-1, cells.shape[-1])
    idx = torch.randperm(len(flat), generator=gen)[:sample]
    x = flat[idx].float()
    mean = x.mean(dim=0)
    x = x - mean
    cov = x.T @ x / len(x)
    _, vecs = torch.linalg.eigh(cov)
    return mean, vecs[:, -dim:].flip(1).contiguous()


@torch.no_grad()
def dual_embeddings(data: heads_script.Split, dual: lite.LiteHeads, batch: int = 256
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit dual-encoder embeddings (images, captions) of a cached split."""
    imgs = [F.normalize(dual.image(data.images[i:i + batch].float()), dim=-1)
            for i in range(0, data.n_images, batch)]
    txts = []
    for i in range(0, len(data.captions), batch):
        tokens, mask = data.text_batch(torch.arange(i, min(i + batch, len(data.captions))))
        txts.append(F.normalize(dual.text(tokens, mask), dim=-1))
    return torch.cat(imgs), torch.cat(txts)


def sample_negatives(hard: torch.Tensor, pool: int, n: int, n_random: int, n_items: int,
                     positive: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(G, n) negatives per group: n - n_random sampled from each row of `hard` (G, pool)
    and n_random drawn uniformly from all n_items (redrawn where they hit `positive`, (G,))."""
    pick = torch.rand(len(hard), pool, generator=gen).argsort(dim=1)[:, :n - n_random]
    out = hard.gather(1, pick)
    if n_random > 0:
        rnd = torch.randint(0, n_items, (len(hard), n_random), generator=gen)
        clash = rnd == positive[:, None]
        rnd[clash] = (rnd[clash] + 1 + torch.randint(0, n_items - 1, (int(clash.sum()),),
                                                     generator=gen)) % n_items
        out = torch.cat([out, rnd], dim=1)
    return out


def augment_cells(cells: torch.Tensor, flip: float, drop: float, gen: torch.Generator
                  ) -> torch.Tensor:
    """Training augmentation of (N, 81, dim) reduced cells: mirror the 9x9 grid of a
    `flip` fraction of the images, then zero a `drop` fraction of the cells."""
    if flip > 0:
        side = round(cells.shape[1] ** 0.5)
        mirrored = cells.view(len(cells), side, side, -1).flip(2).reshape(cells.shape)
        which = torch.rand(len(cells), generator=gen) < flip
        cells = torch.where(which[:, None, None], mirrored, cells)
    if drop > 0:
        keep = torch.rand(cells.shape[:2], generator=gen) >= drop
        cells = cells * keep.unsqueeze(-1)
    return cells


def hard_negatives(sims: torch.Tensor, owner: torch.Tensor, k: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k wrong images per caption (M, k) and top-k wrong captions per image (N, k)."""
    own = torch.zeros_like(sims, dtype=torch.bool)
    own[torch.arange(len(owner)), owner] = True
    masked = sims.masked_fill(own, float("-inf"))
    t2i = masked.topk(k, dim=1).indices
    i2t = masked.T.topk(k, dim=1).indices
    return t2i, i2t


# --------------------------------------------------------------------------- scoring


@torch.no_grad()
def score_pairs(head: MatchHead, reduced: torch.Tensor, text: torch.Tensor,
                lengths: torch.Tensor, text_idx: torch.Tensor, image_idx: torch.Tensor,
                batch: int = 2048) -> torch.Tensor:
    """Match logits of (caption, image) pairs, in batches.

    reduced (N, 81, pca_dim) PCA-reduced image cells; text (M, L, 384) MiniLM states padded
    with lengths (M,); text_idx, image_idx (P,) index them.
    """
    head.eval()
    out = torch.empty(len(text_idx))
    for s in range(0, len(text_idx), batch):
        ti, ii = text_idx[s:s + batch], image_idx[s:s + batch]
        ut, tinv = ti.unique(return_inverse=True)
        ui, iinv = ii.unique(return_inverse=True)
        width = int(lengths[ut].max())
        mask = torch.arange(width).unsqueeze(0) < lengths[ut].unsqueeze(1)
        memory = head.image_memory(reduced[ui].float())
        out[s:s + batch] = head.pair_logits(head.text_side(text[ut, :width]), mask, memory,
                                            tinv, iinv)
    return out


def rerank_ranks(sims: torch.Tensor, rerank: torch.Tensor, top: torch.Tensor,
                 target: torch.Tensor, alpha: float, dual: float = 1.0) -> torch.Tensor:
    """0-based rank of each query's hit after reranking its top-k by
    dual * sims + alpha * rerank (dual=0: by the reranker alone).

    sims (Q, G) dual scores; top (Q, k) the dual top-k gallery ids, rerank (Q, k) their
    match logits; target (Q, G) bool, True for hits (the best-ranked hit counts).
    Candidates beyond the top k keep their dual order, after the top k.
    """
    combined = dual * sims.gather(1, top) + alpha * rerank
    order = combined.argsort(dim=1, descending=True)
    hit_sorted = target.gather(1, top.gather(1, order))
    in_top = hit_sorted.any(dim=1)
    first = hit_sorted.float().argmax(dim=1)
    # outside the top k: the dual rank of the best hit
    best_hit = sims.masked_fill(~target, float("-inf")).max(dim=1, keepdim=True).values
    dual_rank = (sims > best_hit).sum(dim=1)
    return torch.where(in_top, first, dual_rank)


def recall_at(ranks: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Percent of queries whose rank is below k."""
    return {k: 100.0 * float((ranks < k).float().mean()) for k in ks}


def evaluate(head: MatchHead, reduced: torch.Tensor, data: heads_script.Split,
             img: torch.Tensor, txt: torch.Tensor, caps: torch.Tensor, topk: int
             ) -> dict[str, float]:
    """Val text->image R@1/5/10 of the dual encoder, the head alone and the combination."""
    sims = txt[caps] @ img.T
    top = sims.topk(topk, dim=1).indices
    target = torch.zeros_like(sims, dtype=torch.bool)
    target[torch.arange(len(caps)), data.owner[caps]] = True
    logits = score_pairs(head, reduced, data.text, data.lengths, caps.repeat_interleave(topk),
                         top.reshape(-1)).view(len(caps), topk)
    out: dict[str, float] = {}
    for name, alpha, dual in (("dual", 0.0, 1.0), ("head", 1.0, 0.0)):
        r = recall_at(rerank_ranks(sims, logits, top, target, alpha, dual))
        out.update({f"{name}_r{k}": v for k, v in r.items()})
    best = max(ALPHAS, key=lambda a: (recall_at(rerank_ranks(sims, logits, top, target, a),
                                                (1,))[1], -a))
    r = recall_at(rerank_ranks(sims, logits, top, target, best))
    out.update({f"combined_r{k}": v for k, v in r.items()})
    out["alpha"] = best
    return out


# --------------------------------------------------------------------------- training


def train(folder: Path, args: argparse.Namespace) -> tuple[MatchHead, dict]:
    """Train the match head; return the best-on-val head and a log."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    tr = TrainSubset(folder, args.max_train_images)
    print(f"train: {tr.n_images} images, {len(tr.captions)} captions", flush=True)
    va = heads_script.Split(folder, "val", ("orig",))
    dual = lite.LiteHeads.load(args.dual_heads)
    tr_img, tr_txt = dual_embeddings(tr, dual)
    va_img, va_txt = dual_embeddings(va, dual)
    neg_t2i, neg_i2t = hard_negatives(tr_txt @ tr_img.T, tr.owner, args.pool)
    print(f"dual embeddings + negatives: {time.time() - t0:.0f}s", flush=True)

    config = {"dim": args.dim, "heads": args.heads, "hidden": args.hidden,
              "dropout": args.dropout}
    head = MatchHead(config)
    mean, proj = fit_pca(tr.images, args.dim, 20_000, gen)
    head.pca_mean.copy_(mean)
    head.pca_proj.copy_(proj)
    with torch.no_grad():
        tr_red = torch.cat([head.reduce(tr.images[i:i + 256]).half()
                            for i in range(0, tr.n_images, 256)])
        va_red = torch.cat([head.reduce(va.images[i:i + 256]).half()
                            for i in range(0, va.n_images, 256)])
    print(f"PCA {lite.IMAGE_CHANNELS}->{args.dim}: {time.time() - t0:.0f}s", flush=True)
    val_caps = torch.randperm(len(va.captions), generator=gen)[:args.val_captions]

    decay = [p for n, p in head.named_parameters() if p.ndim >= 2 and "pos" not in n]
    no_decay = [p for n, p in head.named_parameters() if not (p.ndim >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    warm = max(1, int(0.05 * args.steps))

    def lr_at(step: int) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, args.steps - warm)))

    log: dict = {"config": config, "args": {k: str(v) for k, v in vars(args).items()},
                 "evals": []}
    best, best_state, since_best = -1.0, None, 0
    k = args.candidates
    n_caps = len(tr.captions)
    losses: list[float] = []
    for step in range(args.steps):
        head.train()
        # caption groups: caption + its image + k-1 of its top-ranked wrong images
        caps = torch.randint(0, n_caps, (args.groups,), generator=gen)
        c_imgs = torch.cat([tr.owner[caps, None],
                            sample_negatives(neg_t2i[caps], args.pool, k - 1,
                                             args.random_negatives, tr.n_images,
                                             tr.owner[caps], gen)], dim=1)
        c_text = caps[:, None].expand(-1, k)
        # image groups: image + one of its captions + k-1 of its top-ranked wrong captions
        imgs = torch.randint(0, tr.n_images, (args.image_groups,), generator=gen)
        own = torch.tensor([tr.by_image[i][int(torch.randint(0, len(tr.by_image[i]), (1,),
                                                             generator=gen))]
                            for i in imgs.tolist()])
        neg_caps = sample_negatives(neg_i2t[imgs], args.pool, k - 1, args.random_negatives,
                                    n_caps, own, gen)
        # a random caption may belong to the group's image: swap it for a hard negative
        own_img = tr.owner[neg_caps] == imgs[:, None]
        neg_caps = torch.where(own_img, neg_i2t[imgs][:, :1].expand_as(neg_caps), neg_caps)
        i_text = torch.cat([own[:, None], neg_caps], dim=1)
        i_imgs = imgs[:, None].expand(-1, k)
        text_idx = torch.cat([c_text.reshape(-1), i_text.reshape(-1)])
        image_idx = torch.cat([c_imgs.reshape(-1), i_imgs.reshape(-1)])
        ut, tinv = text_idx.unique(return_inverse=True)
        ui, iinv = image_idx.unique(return_inverse=True)
        tokens, mask = tr.text_batch(ut)
        if args.token_drop > 0:
            drop = torch.rand(mask.shape, generator=gen) < args.token_drop
            drop[:, 0] = False
            mask = mask & ~drop
        cells = augment_cells(tr_red[ui].float(), args.grid_flip, args.cell_drop, gen)
        memory = head.image_memory(cells)
        logits = head.pair_logits(head.text_side(tokens), mask, memory, tinv, iinv)
        logits = logits.view(-1, k)
        target = torch.zeros(len(logits), dtype=torch.long)
        loss = F.cross_entropy(logits, target)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 50 == 0:
            print(f"step {step + 1} loss {np.mean(losses[-50:]):.3f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            rec = evaluate(head, va_red, va, va_img, va_txt, val_caps, args.topk)
            entry = {"step": step + 1, "loss": round(float(np.mean(losses[-args.eval_every:])), 4),
                     "seconds": round(time.time() - t0, 1),
                     **{key: v if key == "alpha" else round(v, 2) for key, v in rec.items()}}
            log["evals"].append(entry)
            print(json.dumps(entry), flush=True)
            if rec["combined_r1"] > best:
                best = rec["combined_r1"]
                best_state = {key: v.clone() for key, v in head.state_dict().items()}
                log["best"] = entry
                since_best = 0
            else:
                since_best += 1
                if args.patience and since_best >= args.patience:
                    print(f"early stop: no val gain in {since_best} evals", flush=True)
                    break
            if args.max_minutes and time.time() - t0 > 60 * args.max_minutes:
                print(f"time limit: stopping after step {step + 1}", flush=True)
                break
    assert best_state is not None
    head.load_state_dict(best_state)
    head.eval()
    full = evaluate(head, va_red, va, va_img, va_txt, torch.arange(len(va.captions)), args.topk)
    log["val_full"] = {key: v if key == "alpha" else round(v, 2) for key, v in full.items()}
    print("full val:", json.dumps(log["val_full"]), flush=True)
    return head, log


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True,
                   help="flickr8k_train224 folder (captions.csv with a split column)")
    p.add_argument("--cache-dir", type=Path, required=True,
                   help="where tower outputs are cached (outside the repo)")
    p.add_argument("--out", type=Path, required=True, help="head .safetensors to write")
    p.add_argument("--dual-heads", type=Path, default=lite.HEADS_PATH,
                   help="dual-encoder heads that mine negatives and are combined with")
    p.add_argument("--log", type=Path, default=None,
                   help="JSON training log (default: CACHE_DIR/rerank_log.json)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-only", action="store_true",
                   help="build the cache and stop (training uses the chunks cached so far)")
    p.add_argument("--cache-worker", default="0/1",
                   help="I/N: this process caches every N-th train chunk from the I-th")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--groups", type=int, default=16, help="caption groups per step")
    p.add_argument("--image-groups", type=int, default=8, help="image groups per step")
    p.add_argument("--candidates", type=int, default=16, help="pairs per group (1 positive)")
    p.add_argument("--pool", type=int, default=30, help="hard negatives sampled from top-N")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256, help="hidden size of the final MLP")
    p.add_argument("--max-train-images", type=int, default=1_000_000,
                   help="train on the first N cached train images of the fixed order")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--token-drop", type=float, default=0.1,
                   help="fraction of caption tokens masked out while training")
    p.add_argument("--random-negatives", type=int, default=0,
                   help="of each group's negatives, this many drawn uniformly at random")
    p.add_argument("--grid-flip", type=float, default=0.0,
                   help="fraction of training images whose 9x9 cell grid is mirrored")
    p.add_argument("--cell-drop", type=float, default=0.0,
                   help="fraction of image cells zeroed while training")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many evals without a val gain (0: never)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop at the first eval after this much wall time (0: no limit)")
    p.add_argument("--topk", type=int, default=20, help="dual-encoder candidates reranked")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--val-captions", type=int, default=1500,
                   help="val captions used to select the step (all of val at the end)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cache_only:
        worker, workers = (int(x) for x in args.cache_worker.split("/"))
        build_cache(args.data_dir, args.cache_dir, worker, workers)
        return
    folder = args.cache_dir / heads_script.CACHE_VERSION
    head, log = train(folder, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    head.save(args.out, extra={"alpha": log["val_full"]["alpha"], "topk": args.topk,
                               "val": log["val_full"], "dual_heads": args.dual_heads.name})
    log_path = args.log or args.cache_dir / "rerank_log.json"
    log_path.write_text(json.dumps(log, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)", flush=True)


if __name__ == "__main__":
    main()
