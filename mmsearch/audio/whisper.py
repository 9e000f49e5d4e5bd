"""Speech to text with Whisper (transformers), with segment timestamps.

A spec is a local folder or a Hugging Face model id (fetched on first use, online). A
folder holding `model.int8.safetensors` is the project's offline int8 export (weights
`int8 * qscale` per output row, see its PROVENANCE.md); any other folder or id loads with
`from_pretrained`. Default: `$MMSEARCH_WHISPER`, else `../shared/models/whisper-tiny.en-int8`
next to the checkout when present, else `openai/whisper-tiny.en`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mmsearch.errors import UsageError

SAMPLE_RATE = 16_000
ONLINE_DEFAULT = "openai/whisper-tiny.en"


def default_whisper_spec() -> str:
    """$MMSEARCH_WHISPER, else the shared offline export when present, else the online id."""
    env = os.environ.get("MMSEARCH_WHISPER")
    if env:
        return env
    shared = Path(__file__).resolve().parents[3] / "shared" / "models" / "whisper-tiny.en-int8"
    return str(shared) if (shared / "model.int8.safetensors").is_file() else ONLINE_DEFAULT


class Whisper:
    """Transcribes clips of up to 30 s of 16 kHz mono audio."""

    def __init__(self, spec: str | None = None, device: str = "cpu") -> None:
        from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

        self.spec = spec or default_whisper_spec()
        self.device = device
        folder = Path(self.spec)
        try:
            if (folder / "model.int8.safetensors").is_file():
                model = _load_int8(folder)
            else:
                model = WhisperForConditionalGeneration.from_pretrained(self.spec)
            self.processor = WhisperProcessor.from_pretrained(self.spec)
            model.generation_config = GenerationConfig.from_pretrained(self.spec)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot load Whisper {self.spec!r}: {e}") from None
        self.model = model.to(device).eval()

    @torch.inference_mode()
    def transcribe(self, audio: list[np.ndarray], batch: int = 8,
                   max_new_tokens: int = 128) -> list[str]:
        """The text of each clip (each at most 30 s), greedy decoding in batches."""
        out: list[str] = []
        for i in range(0, len(audio), batch):
            clips = [a.astype(np.float32, copy=False) for a in audio[i:i + batch]]
            feats = self.processor(clips, sampling_rate=SAMPLE_RATE,
                                   return_tensors="pt").input_features
            ids = self.model.generate(feats.to(self.device), max_new_tokens=max_new_tokens)
            out.extend(t.strip() for t in self.processor.batch_decode(
                ids, skip_special_tokens=True))
        return out


def _load_int8(folder: Path) -> torch.nn.Module:
    from safetensors.torch import load_file
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    sd = load_file(str(folder / "model.int8.safetensors"))
    weights = {k: (v.float() * sd[k + ".qscale"].float()[:, None]) if k + ".qscale" in sd
               else v.float() for k, v in sd.items() if not k.endswith(".qscale")}
    model = WhisperForConditionalGeneration(WhisperConfig.from_pretrained(folder))
    missing = model.load_state_dict(weights, strict=False).missing_keys
    if set(missing) - {"proj_out.weight"}:
        raise ValueError(f"{folder}: missing weights {sorted(missing)[:5]}")
    model.tie_weights()
    return model
