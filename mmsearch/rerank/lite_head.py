"""The trained part of the offline `lite` reranker: a cross-attention image-text match head.

Image side: the 81 cells of the frozen EfficientNet-Lite2 feature map (9x9x1280), reduced
by a fixed PCA (fitted on the training images) and layer-normalised, plus learned position
embeddings and a learned per-channel scale/shift. They are the keys and values.

Text side: each caption token's frozen MiniLM state gives a query (multi-head), a value
gate and a pooling weight. Each token attends over the image cells; its match feature is
gate * attended cells, pooled over the tokens with the learned weights; an MLP turns the
pooled feature into one match logit. All per-pair work is the attention itself (about
L x 81 x dim multiply-adds twice), so scoring many candidates is cheap; the learned
projections run once per text and the image cells once per image.

Weights: `training/train_lite_reranker.py` -> float16 safetensors (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmsearch.encoders.lite import IMAGE_CHANNELS, TEXT_WIDTH
from mmsearch.errors import MmsearchError

HEAD_PATH = Path(__file__).resolve().parents[1] / "models" / "mmsearch-lite.rerank.safetensors"
GRID_CELLS = 81  # 9x9 feature map of EfficientNet-Lite2 at 260 px

#: Text side of a batch of captions: queries (M, H, L, dim/H), gates (M, L, dim),
#: pooling logits (M, L).
TextSide = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class MatchHead(nn.Module):
    """Cross-attention match head; `config` keys: dim (= PCA size), heads, hidden, dropout."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        dim = int(config["dim"])
        self.heads = int(config["heads"])
        drop = float(config.get("dropout", 0.0))
        self.register_buffer("pca_mean", torch.zeros(IMAGE_CHANNELS))
        self.register_buffer("pca_proj", torch.zeros(IMAGE_CHANNELS, dim))
        self.img_scale = nn.Parameter(torch.ones(dim))
        self.img_shift = nn.Parameter(torch.zeros(dim))
        self.img_pos = nn.Parameter(torch.zeros(GRID_CELLS, dim))
        self.txt_norm = nn.LayerNorm(TEXT_WIDTH)
        self.query = nn.Linear(TEXT_WIDTH, dim)
        self.gate = nn.Linear(TEXT_WIDTH, dim)
        self.weight = nn.Linear(TEXT_WIDTH, 1)
        self.final = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(drop),
                                   nn.Linear(dim, int(config["hidden"])), nn.GELU(),
                                   nn.Linear(int(config["hidden"]), 1))

    def reduce(self, cells: torch.Tensor) -> torch.Tensor:
        """(N, 81, 1280) tower cells -> (N, 81, dim): fixed PCA, then layer norm (no affine)."""
        x = (cells.float() - self.pca_mean) @ self.pca_proj
        return F.layer_norm(x, x.shape[-1:])

    def image_memory(self, reduced: torch.Tensor) -> torch.Tensor:
        """(N, 81, dim) reduced cells -> keys = values (N, heads, 81, dim/heads)."""
        mem = reduced.float() * self.img_scale + self.img_shift + self.img_pos
        n, s, d = mem.shape
        return mem.view(n, s, self.heads, d // self.heads).transpose(1, 2)

    def text_side(self, hidden: torch.Tensor) -> TextSide:
        """(M, L, 384) MiniLM states -> queries, gates and pooling logits."""
        x = self.txt_norm(hidden.float())
        q = self.query(x)
        m, n, d = q.shape
        q = q.view(m, n, self.heads, d // self.heads).transpose(1, 2)
        return q, self.gate(x), self.weight(x).squeeze(-1)

    def pair_logits(self, text: TextSide, mask: torch.Tensor, memory: torch.Tensor,
                    text_idx: torch.Tensor, image_idx: torch.Tensor) -> torch.Tensor:
        """Match logits (P,) of pairs (text[text_idx[p]], memory[image_idx[p]]).

        mask (M, L) marks the real tokens of each text.
        """
        q, gate, weight = text
        mem = memory[image_idx]
        att = F.scaled_dot_product_attention(q[text_idx], mem, mem)  # (P, H, L, dh)
        p, h, n, dh = att.shape
        feats = gate[text_idx] * att.transpose(1, 2).reshape(p, n, h * dh)
        w = weight[text_idx].masked_fill(~mask[text_idx].bool(), float("-inf")).softmax(dim=1)
        pooled = torch.einsum("pl,pld->pd", w, feats)
        return self.final(pooled).squeeze(-1)

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
