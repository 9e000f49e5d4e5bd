"""A YAMNet folder with random weights of the real shapes (tests of the tags channel
without ../shared): `yamnet.fp16.safetensors` and a 521-row class map."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from safetensors.torch import save_file

#: (in, out) channels of layers 2..14 (depthwise keeps `in`, pointwise maps to `out`).
_LAYERS = [(32, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512),
           (512, 512), (512, 512), (512, 512), (512, 512), (512, 1024), (1024, 1024)]


def make_tiny_yamnet(folder: Path, seed: int = 0) -> Path:
    """Write a random-weight YAMNet into `folder`; returns the folder."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.1) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).half()

    w = {"frontend.window": torch.rand(400, generator=g).half(),
         "frontend.dft_real": rnd(257, 512), "frontend.dft_imag": rnd(257, 512),
         "frontend.mel": torch.rand(64, 257, generator=g).half(),
         "frontend.log_offset": torch.full((64,), 0.001).half(),
         "layer1.conv.weight": rnd(32, 1, 3, 3), "layer1.conv.bias": rnd(32),
         "classifier.weight": rnd(521, 1024), "classifier.bias": rnd(521)}
    for i, (cin, cout) in enumerate(_LAYERS, start=2):
        w[f"layer{i}.depthwise.weight"] = rnd(cin, 1, 3, 3, scale=0.3)
        w[f"layer{i}.depthwise.bias"] = rnd(cin)
        w[f"layer{i}.pointwise.weight"] = rnd(cout, cin, 1, 1, scale=1 / cin ** 0.5)
        w[f"layer{i}.pointwise.bias"] = rnd(cout)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(w, str(folder / "yamnet.fp16.safetensors"))
    with open(folder / "yamnet_class_map.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["index", "mid", "display_name"])
        names = ["Speech", "Dog", "Music", "Rain", "Engine"]
        for i in range(521):
            out.writerow([i, f"/m/{i:05d}", names[i] if i < len(names) else f"Sound {i}"])
    return folder
