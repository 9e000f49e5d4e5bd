"""open_clip dual encoders: `ARCH:PRETRAINED` with a pretrained tag or a local checkpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmsearch.encoders.base import Encoder, normalize, pick_device
from mmsearch.errors import MmsearchError, UsageError

#: Pretrained tag meaning "random weights" (speed benchmarks and tests only).
RANDOM = "random"


class ClipEncoder(Encoder):
    """An open_clip model; fp16 on CUDA, fp32 on the CPU."""

    def __init__(self, arch: str, pretrained: str | None, device: str | None = None) -> None:
        import open_clip

        self.device = pick_device(device)
        if not pretrained:
            raise UsageError(f"model {arch!r} names no weights: use {arch}:TAG (an open_clip "
                             f"pretrained tag), {arch}:/path/to/checkpoint, or {arch}:random "
                             "(random weights, for speed tests only)")
        self.spec = canonical_spec(arch, pretrained)
        arch = _register_config(arch)
        if arch not in open_clip.list_models():
            raise UsageError(f"unknown open_clip architecture {arch!r} "
                             "(see open_clip.list_models(), or pass a config .json path)")
        precision = "fp16" if self.device.startswith("cuda") else "fp32"
        local = pretrained == RANDOM or os.path.exists(pretrained)
        if not local:
            from mmsearch.encoders.available import open_clip_cached
            from mmsearch.hub import require_hub

            try:
                known = open_clip_cached(arch, pretrained)
            except Exception:  # an unknown tag: open_clip names it below
                known = True
            if not known:
                require_hub(f"model {arch}:{pretrained}", setting="MMSEARCH_MODEL",
                            option=f"--model {arch}:/path/to/weights.bin",
                            argument=f"model='{arch}:/path/to/weights.bin'")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=None if pretrained == RANDOM else pretrained,
                device=self.device, precision=precision)
        except Exception as e:
            from mmsearch import hub

            if not local:
                hub.note_failure(e)
            where = (f"--model {arch}:/path/to/weights.bin" if hub.frontend == "cli" else
                     f"mmsearch.open(store, model='{arch}:/path/to/weights.bin')")
            hint = "" if local else f" If this machine is offline, pass a local checkpoint: {where}"
            raise MmsearchError(f"cannot load model {arch}:{pretrained}: {e}.{hint}") from e
        self.model = model.eval()
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(arch)
        self.dim = int(open_clip.get_model_config(arch)["embed_dim"])
        size = getattr(self.model.visual, "image_size", None)
        self.image_size = int(max(size) if isinstance(size, tuple | list) else size or 0) or None

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        dtype = next(self.model.parameters()).dtype
        pixels = pixels.to(self.device, dtype=dtype, non_blocking=True)
        return normalize(self.model.encode_image(pixels))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self._tokenizer(list(texts)).to(self.device)
        return normalize(self.model.encode_text(tokens))


def canonical_spec(arch: str, pretrained: str | None) -> str:
    """The spec a store pins: local files (config, checkpoint) by absolute path, tags as given."""
    if arch.endswith(".json") and os.path.isfile(arch):
        arch = str(Path(arch).resolve())
    if pretrained and os.path.exists(pretrained):
        pretrained = str(Path(pretrained).resolve())
    return f"{arch}:{pretrained or ''}"


def _register_config(arch: str) -> str:
    """Accept a path to an open_clip model config JSON as ARCH; return the model name."""
    if arch.endswith(".json") and os.path.isfile(arch):
        import open_clip

        open_clip.add_model_config(arch)
        return Path(arch).stem
    return arch
