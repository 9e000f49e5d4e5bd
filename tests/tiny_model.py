"""A tiny, randomly initialised open_clip model for fast tests (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32,
                   "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


def make_tiny_model(folder: Path, name: str = "mmsearch-tiny-test", seed: int = 0) -> str:
    """Write a config JSON and a random checkpoint into `folder`; return the model spec."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{name}.json"
    config_path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(str(config_path))
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    weights = folder / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    return f"{config_path}:{weights}"
