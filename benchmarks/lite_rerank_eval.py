"""Retrieval with and without the offline `lite` reranker, and its cost per candidate.

For val (flickr8k_train224 split == val, 887 images; alpha and the training step were
chosen on it) and test (flickr8k, 500 images; never used for training or selection):
text->image and image->text R@1/5/10 of the mmsearch-lite dual encoder, then with its top
--topk reranked by the lite reranker (dual cosine + alpha * match logit; candidates below
the top k keep their order). Also: encoding throughput of the towers + dual heads
(images/s with JPEG decode, texts/s) and reranker milliseconds per candidate, both for the
head alone on tower features and end to end from PIL images (towers included).

    python benchmarks/lite_rerank_eval.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lite_eval import DEFAULT_DATA, read_set
from train_lite_reranker import recall_at, rerank_ranks, score_pairs

from mmsearch.encoders.lite import text_features, tokenize
from mmsearch.rerank.lite import LiteReranker


@torch.no_grad()
def tower_outputs(rr: LiteReranker, paths: list[Path], captions: list[str], batch: int
                  ) -> dict:
    """Image cells (N, 81, 1280), padded MiniLM states (M, L, 384) with lengths, and the
    seconds the towers took (JPEG decode and preprocessing included)."""
    enc = rr.encoder
    t0 = time.perf_counter()
    cells = [rr.image_cells([Image.open(p).convert("RGB") for p in paths[i:i + batch]])
             for i in range(0, len(paths), batch)]
    image_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hidden, lengths = [], []
    for i in range(0, len(captions), batch):
        h, mask = text_features(enc.text_tower, tokenize(enc.tokenizer, captions[i:i + batch]))
        hidden.extend(h[j, :int(n)] for j, n in enumerate(mask.sum(dim=1)))
        lengths.append(mask.sum(dim=1))
    text_s = time.perf_counter() - t0
    padded = torch.zeros(len(hidden), max(len(h) for h in hidden), hidden[0].shape[-1])
    for j, h in enumerate(hidden):
        padded[j, :len(h)] = h
    return {"cells": torch.cat(cells), "text": padded, "lengths": torch.cat(lengths),
            "image_s": torch.tensor(image_s), "text_s": torch.tensor(text_s)}


def cached_tower_outputs(rr: LiteReranker, paths: list[Path], captions: list[str], batch: int,
                         cache: Path | None) -> dict:
    """`tower_outputs`, read from / written to a safetensors file when `cache` is given."""
    from safetensors.torch import load_file, save_file

    if cache is not None and cache.is_file():
        out = load_file(str(cache))
        return {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
    out = tower_outputs(rr, paths, captions, batch)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: (v.half() if k in ("cells", "text") else v).contiguous()
                   for k, v in out.items()}, str(cache))
    return out


@torch.no_grad()
def embed(rr: LiteReranker, towers: dict) -> dict:
    """Dual-encoder unit embeddings and the reranker's reduced image cells."""
    heads, cells = rr.encoder.heads, towers["cells"]
    img = torch.cat([F.normalize(heads.image(cells[i:i + 256]), dim=-1)
                     for i in range(0, len(cells), 256)])
    mask = torch.arange(towers["text"].shape[1]).unsqueeze(0) < towers["lengths"].unsqueeze(1)
    txt = F.normalize(heads.text(towers["text"], mask), dim=-1)
    reduced = torch.cat([rr.head.reduce(cells[i:i + 256]) for i in range(0, len(cells), 256)])
    return {"img": img, "txt": txt, "reduced": reduced, **towers}


def evaluate(rr: LiteReranker, data: dict, owner: np.ndarray, topk: int) -> dict:
    """R@1/5/10 both ways, dual encoder alone and reranked."""
    own = torch.from_numpy(owner).long()
    sims = data["txt"] @ data["img"].T  # (captions, images)
    out = {}
    # text -> image: each caption, a hit is its image
    top = sims.topk(topk, dim=1).indices
    target = torch.zeros_like(sims, dtype=torch.bool)
    target[torch.arange(len(own)), own] = True
    logits = score_pairs(rr.head, data["reduced"], data["text"], data["lengths"],
                         torch.arange(len(own)).repeat_interleave(topk), top.reshape(-1))
    logits = logits.view(len(own), topk)
    for name, alpha in (("dual", 0.0), ("reranked", rr.alpha)):
        out[f"t2i_{name}"] = recall_at(rerank_ranks(sims, logits, top, target, alpha))
    # image -> text: each image, a hit is any of its captions
    sims_t = sims.T.contiguous()
    top = sims_t.topk(topk, dim=1).indices
    target = own.unsqueeze(0) == torch.arange(len(sims_t)).unsqueeze(1)
    logits = score_pairs(rr.head, data["reduced"], data["text"], data["lengths"],
                         top.reshape(-1), torch.arange(len(sims_t)).repeat_interleave(topk))
    logits = logits.view(len(sims_t), topk)
    for name, alpha in (("dual", 0.0), ("reranked", rr.alpha)):
        out[f"i2t_{name}"] = recall_at(rerank_ranks(sims_t, logits, top, target, alpha))
    return out


def reranker_cost(rr: LiteReranker, paths: list[Path], captions: list[str], cells: torch.Tensor,
                  n: int, repeats: int) -> dict:
    """Milliseconds per candidate: end to end from PIL images, and the head on cached cells."""
    images = [Image.open(p).convert("RGB") for p in paths[:n]]
    rr.score(captions[0], images[:2])  # warm-up
    t0 = time.perf_counter()
    for r in range(repeats):
        rr.score(captions[r], images)
    full = (time.perf_counter() - t0) / (repeats * n) * 1000
    t0 = time.perf_counter()
    for r in range(repeats):
        rr.score_cells(captions[r], cells[:n])
    head = (time.perf_counter() - t0) / (repeats * n) * 1000
    return {"candidates": n, "ms_per_candidate_end_to_end": full,
            "ms_per_candidate_on_tower_features": head}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared/data folder")
    p.add_argument("--weights", default=None, help="reranker head (default: the shipped one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--topk", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5, help="queries timed for ms/candidate")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--feature-cache", type=Path, default=None,
                   help="keep tower outputs here (val.safetensors, test.safetensors) so a "
                        "re-run with another head skips the towers")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rr = LiteReranker(device=args.device, weights=args.weights)
    sets = {
        "val": ("val (flickr8k_train224 val, 887 img)",
                read_set(args.data / "flickr8k_train224", "val")),
        "test": ("test (flickr8k, 500 img)", read_set(args.data / "flickr8k", None)),
    }
    results, speed, cost = {}, {"images": 0, "image_s": 0.0, "texts": 0, "text_s": 0.0}, {}
    for key, (name, (paths, captions, owner)) in sets.items():
        cache = args.feature_cache / f"{key}.safetensors" if args.feature_cache else None
        data = embed(rr, cached_tower_outputs(rr, paths, captions, args.batch_size, cache))
        results[name] = evaluate(rr, data, owner, args.topk)
        if float(data["image_s"]) > 0:  # 0: features imported from the training cache
            speed["images"] += len(paths)
            speed["image_s"] += float(data["image_s"])
            speed["texts"] += len(captions)
            speed["text_s"] += float(data["text_s"])
        if not cost:
            cost = reranker_cost(rr, paths, captions, data["cells"], args.topk, args.repeats)
    print(f"reranker {rr.spec} (alpha {rr.alpha:g}, top {args.topk}) on {rr.device}, "
          f"{args.threads} threads\n")
    print("| set | ranking | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for kind in ("dual", "reranked"):
            cells = " | ".join(f"{r[f'{d}_{kind}'][k]:.1f}" for d in ("t2i", "i2t")
                               for k in (1, 5, 10))
            print(f"| {name} | {kind} | {cells} |")
    ips = speed["images"] / speed["image_s"]
    tps = speed["texts"] / speed["text_s"]
    print(f"\nencoding: {ips:.1f} images/s (decode + preprocess + tower + head), "
          f"{tps:.1f} texts/s (batch {args.batch_size})")
    print(f"reranker, {cost['candidates']} candidates per query: "
          f"{cost['ms_per_candidate_end_to_end']:.1f} ms/candidate end to end (image tower "
          f"included), {cost['ms_per_candidate_on_tower_features']:.2f} ms/candidate on "
          f"tower features")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "images_per_s": ips,
                                         "texts_per_s": tps, "cost": cost,
                                         "alpha": rr.alpha, "topk": args.topk,
                                         "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
