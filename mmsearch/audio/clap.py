"""CLAP (audio-text contrastive) encoder through transformers, in a space of its own.

A spec is a Hugging Face id (online default `laion/clap-htsat-unfused`) or a local folder
saved with `save_pretrained` (model and processor).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mmsearch.audio.decode import open_audio
from mmsearch.encoders.base import normalize
from mmsearch.errors import UsageError
from mmsearch.hub import is_local

DEFAULT_CLAP = "laion/clap-htsat-unfused"


class ClapEncoder:
    """Embeds sounds and texts into CLAP's space (unit vectors)."""

    def __init__(self, spec: str | None = None, device: str = "cpu") -> None:
        from transformers import ClapModel, ClapProcessor

        self.spec = spec or DEFAULT_CLAP
        self.device = device
        if not is_local(self.spec):
            from mmsearch.hub import require_hub

            require_hub(f"CLAP model {self.spec!r}", self.spec, option="--audio-model PATH",
                        argument="audio_model='/path/to/folder'")
        try:
            self.model = ClapModel.from_pretrained(self.spec).to(device).eval()
            self.processor = ClapProcessor.from_pretrained(self.spec)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot load CLAP model {self.spec!r}: {e}") from None
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.dim = int(self.model.config.projection_dim)

    @torch.inference_mode()
    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) unit vectors of clips sampled at `sample_rate`."""
        x = self.processor(audio=[np.asarray(c, np.float32) for c in clips],
                           sampling_rate=self.sample_rate, return_tensors="pt")
        return normalize(_features(self.model.get_audio_features(
            **{k: v.to(self.device) for k, v in x.items()})))

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) unit vectors of texts."""
        x = self.processor(text=list(texts), return_tensors="pt", padding=True)
        return normalize(_features(self.model.get_text_features(
            **{k: v.to(self.device) for k, v in x.items()})))

    def embed_file(self, path: str, spans: Sequence[tuple[float, float]],
                   batch: int = 8) -> list[np.ndarray]:
        """Vectors of the (start_s, end_s) windows of a file (sorted by start), streamed."""
        stream = open_audio(path, rate=self.sample_rate)
        assert stream is not None
        sr = self.sample_rate
        out: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        buf = np.zeros(0, np.float32)
        offset = 0  # sample index of buf[0]
        todo = list(spans)
        blocks = stream.blocks()
        done = False
        while todo:
            a, b = int(todo[0][0] * sr), int(todo[0][1] * sr)
            while not done and offset + len(buf) < b:
                block = next(blocks, None)
                if block is None:
                    done = True
                else:
                    buf = np.concatenate([buf, block])
            clip = buf[max(0, a - offset):max(0, b - offset)]
            pending.append(clip if len(clip) else np.zeros(sr // 10, np.float32))
            todo.pop(0)
            if todo:  # drop samples no later window needs
                drop = max(0, int(todo[0][0] * sr) - offset)
                buf, offset = buf[drop:], offset + drop
            if len(pending) == batch or not todo:
                out.extend(self.embed_audio(pending))
                pending = []
        return out


def _features(out: object) -> torch.Tensor:
    """The projected embeddings, whether transformers returns a tensor or an output object."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output  # type: ignore[attr-defined]
