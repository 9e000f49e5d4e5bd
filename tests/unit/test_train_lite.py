"""training/train_lite_heads.py: the retrained MiniLM layer runs on length-sorted parts of a
batch (each cut to its own longest caption), which must give what one padded pass gives."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))


def test_length_sorted_parts_equal_one_padded_pass() -> None:
    import train_lite_heads as T

    from mmsearch.encoders.lite import LiteHeads, build_text_tower

    config = {"dim": 16, "image_hidden": 16, "image_blocks": 1, "image_pool_heads": 1,
              "text_hidden": 32, "text_blocks": 1, "text_pool_heads": 1, "dropout": 0.0}
    torch.manual_seed(0)
    _, bert = build_text_tower()
    model = T.Trainable(LiteHeads(config), copy.deepcopy(bert.encoder.layer[5]), None).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    lengths = torch.tensor([3, 17, 5, 9, 1, 12, 7, 2, 17, 4])
    mask = torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)
    layers = {5: torch.randn(len(lengths), mask.shape[1], 384) * mask.unsqueeze(-1)}
    model.text_part = 3  # four parts of different widths
    parts = model.text(layers, mask)
    model.text_part = len(lengths)  # one part: the whole padded batch
    whole = model.text(layers, mask)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)
    parts.square().sum().backward()  # the layer learns through the parts
    assert model.text_layer.output.dense.weight.grad.abs().sum() > 0
