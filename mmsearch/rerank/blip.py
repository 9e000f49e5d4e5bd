"""BLIP image-text matching (ITM) reranker: a cross-attention model scores (text, image).

Spec `blip` loads the online default `Salesforce/blip-itm-base-coco` (downloaded on first
use by transformers); `blip:PATH_OR_NAME` loads a local folder saved with
`save_pretrained` (model + processor) or another hub name. The score is the ITM head's
softmax probability that the image matches the text. Runs batched; fp16 on CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.errors import MmsearchError
from mmsearch.hub import is_local
from mmsearch.rerank.base import Reranker
from mmsearch.rerank.registry import register_reranker

DEFAULT = "Salesforce/blip-itm-base-coco"
BATCH_SIZE = 16


class BlipReranker(Reranker):
    """Scores (text, image) pairs with `BlipForImageTextRetrieval`'s ITM head."""

    def __init__(self, model: Any, processor: Any, spec: str, device: str,
                 batch_size: int = BATCH_SIZE) -> None:
        self.model = model.eval()
        self.processor = processor
        self.spec = spec
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def load(cls, name_or_path: str | None = None, device: str | None = None) -> BlipReranker:
        """Load model and processor from a hub name or a local folder."""
        import torch
        from transformers import BlipForImageTextRetrieval, BlipProcessor

        name = name_or_path or DEFAULT
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        if not is_local(name):
            from mmsearch.hub import require_hub

            require_hub(f"the BLIP reranker {name!r}", name, option="--reranker blip:PATH",
                        argument="reranker='blip:/path/to/folder'")
        try:
            processor = BlipProcessor.from_pretrained(name)
            model = BlipForImageTextRetrieval.from_pretrained(name, torch_dtype=dtype)
        except (OSError, ValueError) as e:
            raise MmsearchError(
                f"cannot load the BLIP reranker {name!r}: {str(e).splitlines()[0]}. Without "
                "network access give a local folder: --reranker blip:/path/to/blip-itm") from None
        return cls(model.to(device), processor, f"blip:{name}", device)

    def score(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = []
        dtype = next(self.model.parameters()).dtype
        for lo in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[lo:lo + self.batch_size]]
            inputs = self.processor(images=batch, text=[text] * len(batch),
                                    return_tensors="pt", padding=True, truncation=True)
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            with torch.inference_mode():
                logits = self.model(**inputs, use_itm_head=True).itm_score
            out.append(logits.float().softmax(dim=-1)[:, 1].cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


register_reranker("blip", BlipReranker.load)
