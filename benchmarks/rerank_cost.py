"""Cost of BLIP ITM reranking per candidate, real-size architecture, random weights.

No model hub here, so the weights are random (the cost does not depend on them): the
`Salesforce/blip-itm-base-coco` architecture (ViT-B/16 at 384 px + BERT-base text encoder
with cross-attention) is built from `BlipConfig()` defaults and run through the same
`BlipReranker.score` the search uses (processor, batching, ITM softmax).

    PYTHONPATH=. python benchmarks/rerank_cost.py [--candidates 16] [--batch 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_blip import make_processor

from mmsearch.rerank.blip import BlipReranker


def random_base_reranker(device: str, batch: int) -> BlipReranker:
    """`blip-itm-base` architecture with random weights (fp16 on CUDA) behind BlipReranker."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    torch.manual_seed(0)
    config = BlipConfig()
    model = BlipForImageTextRetrieval(config)
    if device.startswith("cuda"):
        model = model.half()
    processor = make_processor(Path(tempfile.mkdtemp()), config.vision_config.image_size)
    return BlipReranker(model.to(device), processor, "blip:random-base", device,
                        batch_size=batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    reranker = random_base_reranker(args.device, args.batch)
    config = reranker.model.config
    params = sum(p.numel() for p in reranker.model.parameters()) / 1e6
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (288, 384, 3), dtype=np.uint8))
              for _ in range(args.candidates)]
    text = "a man in a red hat on the beach with a dog"
    reranker.score(text, images[: args.batch])  # warm-up
    t = time.perf_counter()
    reranker.score(text, images)
    ms = (time.perf_counter() - t) * 1000 / len(images)
    print(f"BLIP ITM base ({params:.0f}M params, {config.vision_config.image_size}px), "
          f"device {args.device}, {torch.get_num_threads()} threads, batch {args.batch}: "
          f"{ms:.0f} ms/candidate over {len(images)} candidates")


if __name__ == "__main__":
    main()
