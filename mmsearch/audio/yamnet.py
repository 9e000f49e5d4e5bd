"""YAMNet sound-event tagger (521 AudioSet classes) in plain PyTorch.

The network (MobileNet-v1 on a log-mel patch of 0.975 s at 16 kHz) is rebuilt from the
fp16 safetensors export described in the weights' PROVENANCE.md (batch-norm folded into
the biases, TF 'SAME' padding); no TFLite runtime is needed. Weights are looked up in
`$MMSEARCH_YAMNET`, else the user model folder, else the development folder
(`mmsearch.locate.find_yamnet`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmsearch.audio.analyze import PATCH
from mmsearch.errors import UsageError

SAMPLE_RATE = 16_000
_STRIDE2 = (3, 5, 7, 13)


def default_yamnet_path() -> Path | None:
    """Where YAMNet weights are (see `mmsearch.locate.find_yamnet`), else None."""
    from mmsearch.locate import find_yamnet

    found = find_yamnet()
    return found.path if found else None


def missing_yamnet_message() -> str:
    """Why sound tags are off and how to turn them on, worded for the caller."""
    from mmsearch import hub

    if hub.frontend == "cli":
        how = ("`mmsearch models add yamnet PATH` (a folder with yamnet.fp16.safetensors and "
               "yamnet_class_map.csv), or set MMSEARCH_YAMNET")
    else:
        how = ("mmsearch.locate.add_model('yamnet', PATH), or "
               "os.environ['MMSEARCH_YAMNET'] = PATH")
    return f"no YAMNet weights installed; add them with {how}"


class YamNet:
    """Scores 0.975 s patches of 16 kHz mono audio for the 521 AudioSet classes."""

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu") -> None:
        from safetensors.torch import load_file

        folder = Path(path)
        weights = folder / "yamnet.fp16.safetensors"
        classes = folder / "yamnet_class_map.csv"
        if not weights.is_file() or not classes.is_file():
            raise UsageError(f"no YAMNet weights in {folder} (need yamnet.fp16.safetensors "
                             "and yamnet_class_map.csv)")
        self.device = device
        self.w = {k: v.float().to(device) for k, v in load_file(str(weights)).items()}
        with open(classes, newline="", encoding="utf-8") as f:
            self.labels: list[str] = [row["display_name"] for row in csv.DictReader(f)]
        self.spec = str(folder)

    @torch.inference_mode()
    def patch_scores(self, wav: np.ndarray, hop: int = PATCH, batch: int = 64) -> np.ndarray:
        """Class scores (n_patches, 521) for patches of `wav`, one every `hop` samples.

        Audio shorter than one patch is zero-padded to one patch.
        """
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        if len(x) < PATCH:
            x = F.pad(x, (0, PATCH - len(x)))
        n = 1 + (len(x) - PATCH) // hop
        patches = x.unfold(0, PATCH, hop)[:n]
        out = [self._forward(patches[i:i + batch].to(self.device))
               for i in range(0, n, batch)]
        return torch.cat(out).cpu().numpy()

    def _forward(self, patches: torch.Tensor) -> torch.Tensor:
        w = self.w
        b = len(patches)
        idx = torch.arange(96)[:, None] * 2 + torch.arange(5)
        fr = patches.reshape(b, 195, 80)[:, idx].reshape(b, 96, 400)
        fr = F.pad(fr * w["frontend.window"], (56, 56))
        mag = torch.sqrt((fr @ w["frontend.dft_real"].T) ** 2
                         + (fr @ w["frontend.dft_imag"].T) ** 2)
        h = torch.log(mag @ w["frontend.mel"].T + w["frontend.log_offset"])[:, None]
        h = _conv(h, w["layer1.conv.weight"], w["layer1.conv.bias"], 2)
        for layer in range(2, 15):
            stride = 2 if layer in _STRIDE2 else 1
            h = _conv(h, w[f"layer{layer}.depthwise.weight"], w[f"layer{layer}.depthwise.bias"],
                      stride, groups=h.shape[1])
            h = _conv(h, w[f"layer{layer}.pointwise.weight"], w[f"layer{layer}.pointwise.bias"], 1)
        emb = h.mean((2, 3))
        return torch.sigmoid(emb @ w["classifier.weight"].T + w["classifier.bias"])


def _conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int,
          groups: int = 1) -> torch.Tensor:
    if stride == 2:  # TF 'SAME' padding for stride 2
        h = F.pad(h, (0, 1, 0, 1))
        pad = 0
    else:
        pad = w.shape[-1] // 2
    return F.relu(F.conv2d(h, w, b, stride=stride, padding=pad, groups=groups))
