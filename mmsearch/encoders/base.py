"""The encoder interface every model family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch loads with the model, not with this module
    import torch


class Encoder(ABC):
    """Turns images and texts into unit vectors of one shared space.

    Attributes:
        spec: canonical model spec; a store pins it and refuses other models.
        dim: vector dimension.
        device: torch device the model runs on ("cpu", "cuda").
        image_size: side of the square input the image tower sees (decoders may decode
            large JPEGs at reduced scale down to twice this); None when unknown.
    """

    spec: str
    dim: int
    device: str
    image_size: int | None = None

    @abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Turn one RGB PIL image into a CHW float tensor. Thread-safe, no model call."""

    @abstractmethod
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a batch of preprocessed images (N, C, H, W) into (N, dim) float32 unit rows."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts into (N, dim) float32 unit rows."""


def normalize(x: torch.Tensor) -> np.ndarray:
    """L2-normalise rows and return float32 numpy (zero rows stay zero)."""
    x = x.float()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x.cpu().numpy().astype(np.float32, copy=False)


def pick_device(device: str | None = None) -> str:
    """Resolve a device name: explicit, else CUDA when available, else CPU."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
