"""The trained part of the offline `lite` reranker: a cross-attention image-text match head.

Caption tokens (frozen MiniLM states) attend to the cells of the frozen EfficientNet-Lite2
feature map (9x9x1280, reduced by a fixed PCA to `pca_dim`); one or two pre-norm
cross-attention blocks, then a masked mean over the caption tokens and an MLP give one
match logit per (text, image) pair. Image and text sides are prepared once each
(`image_memory`, `text_tokens`), so scoring many pairs costs only the attention itself.
Weights: `training/train_lite_reranker.py` -> float16 safetensors (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmsearch.encoders.lite import IMAGE_CHANNELS, TEXT_WIDTH, masked_mean
from mmsearch.errors import MmsearchError

HEAD_PATH = Path(__file__).resolve().parents[1] / "models" / "mmsearch-lite.rerank.safetensors"
GRID_CELLS = 81  # 9x9 feature map of EfficientNet-Lite2 at 260 px


class CrossBlock(nn.Module):
    """Pre-norm block: text tokens attend to image cells, then a token-wise MLP."""

    def __init__(self, dim: int, heads: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_m = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp, dim))
        self.drop = nn.Dropout(dropout)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S, dim) image memory -> keys and values (N, heads, S, dim/heads)."""
        n, s, d = memory.shape
        kv = self.kv(memory).view(n, s, 2, self.heads, d // self.heads)
        return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x (P, L, dim) text tokens of each pair; k, v (P, heads, S, dim/heads)."""
        p, n, d = x.shape
        q = self.q(self.norm_q(x)).view(p, n, self.heads, d // self.heads).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(p, n, d)))
        return x + self.drop(self.mlp(self.norm_m(x)))


class MatchHead(nn.Module):
    """Cross-attention match head; `config` keys: dim, heads, layers, mlp, pca_dim, dropout."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        dim, pca = int(config["dim"]), int(config["pca_dim"])
        drop = float(config.get("dropout", 0.0))
        self.register_buffer("pca_mean", torch.zeros(IMAGE_CHANNELS))
        self.register_buffer("pca_proj", torch.zeros(IMAGE_CHANNELS, pca))
        self.img_in = nn.Sequential(nn.LayerNorm(pca), nn.Linear(pca, dim))
        self.img_pos = nn.Parameter(torch.zeros(GRID_CELLS, dim))
        self.img_norm = nn.LayerNorm(dim)
        self.txt_in = nn.Sequential(nn.LayerNorm(TEXT_WIDTH), nn.Linear(TEXT_WIDTH, dim))
        self.blocks = nn.ModuleList(CrossBlock(dim, int(config["heads"]), int(config["mlp"]),
                                               drop) for _ in range(int(config["layers"])))
        self.final = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(),
                                   nn.Dropout(drop), nn.Linear(dim, 1))

    def reduce(self, cells: torch.Tensor) -> torch.Tensor:
        """(N, 81, 1280) tower cells -> (N, 81, pca_dim) with the fixed PCA."""
        return (cells.float() - self.pca_mean) @ self.pca_proj

    def image_memory(self, reduced: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(N, 81, pca_dim) PCA-reduced cells -> keys/values of every block."""
        mem = self.img_norm(self.img_in(reduced) + self.img_pos)
        return [block.keys_values(mem) for block in self.blocks]

    def text_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """(M, L, 384) MiniLM states -> (M, L, dim)."""
        return self.txt_in(hidden.float())

    def pair_logits(self, tokens: torch.Tensor, mask: torch.Tensor,
                    memory: list[tuple[torch.Tensor, torch.Tensor]],
                    text_idx: torch.Tensor, image_idx: torch.Tensor) -> torch.Tensor:
        """Match logits (P,) of pairs (tokens[text_idx[p]], memory[image_idx[p]])."""
        x = tokens[text_idx]
        for block, (k, v) in zip(self.blocks, memory, strict=True):
            x = block(x, k[image_idx], v[image_idx])
        return self.final(masked_mean(x, mask[text_idx])).squeeze(-1)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write float16 weights (PCA in float32) and the config to a safetensors file."""
        from safetensors.torch import save_file

        tensors = {k: (v.float() if k.startswith("pca_") else v.to(torch.float16))
                   .detach().contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {"config": json.dumps(self.config)}
        meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> tuple[MatchHead, dict[str, Any]]:
        """Read a head written by `save`; returns it (eval mode) and its JSON metadata."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise MmsearchError(f"lite reranker weights not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118
        if "config" not in meta:
            raise MmsearchError(f"{path} has no lite reranker config")
        head = cls(json.loads(meta["config"]))
        head.load_state_dict(state, strict=True)
        head.eval()
        for p in head.parameters():
            p.requires_grad_(False)
        return head, {k: json.loads(v) for k, v in meta.items()}
