"""YAMNet at first use: download Google's published weights and convert them.

Sources (Apache-2.0, from the tensorflow/models `research/audioset/yamnet` README): the
Keras weights `yamnet.h5` and the class map `yamnet_class_map.csv`. The conversion gives
the layout `yamnet.py` runs (see the weights' PROVENANCE.md in the development folder):
batch-norm folded into the convolutions' biases, kernels re-laid out for PyTorch, and the
log-mel front end (periodic Hann window, 512-point DFT, 64 HTK mel bands 125-7500 Hz,
log offset 0.001) as matrices. Reading the `.h5` file needs `h5py` (the `tags` extra).

The download runs once, into the user model folder, only when the network is reachable
(the answer is the process-wide one of `mmsearch.hub`); offline it is never tried.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np

from mmsearch.errors import MmsearchError

WEIGHTS_URL = "https://storage.googleapis.com/audioset/yamnet.h5"
CLASSES_URL = ("https://raw.githubusercontent.com/tensorflow/models/master/research/"
               "audioset/yamnet/yamnet_class_map.csv")
#: Layers 2..14 are depthwise-separable; these use stride 2 (see yamnet.py).
LAYERS = 14
BN_EPSILON = 1e-4
_lock = threading.Lock()
_failed: str | None = None  # why the download failed in this process (not tried again)


def frontend() -> dict[str, np.ndarray]:
    """The log-mel front end as matrices: window (400,), dft_real/imag (257, 512),
    mel (64, 257), log_offset (64,)."""
    n = np.arange(400)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)  # periodic Hann
    k = np.arange(257)[:, None]
    t = np.arange(512)[None, :]
    angle = 2 * np.pi * k * t / 512
    return {"frontend.window": window, "frontend.dft_real": np.cos(angle),
            "frontend.dft_imag": np.sin(angle), "frontend.mel": _mel_matrix().T,
            "frontend.log_offset": np.full(64, 0.001)}


def _mel_matrix(bins: int = 64, spectrum: int = 257, rate: int = 16_000,
                low: float = 125.0, high: float = 7500.0) -> np.ndarray:
    """TensorFlow's `linear_to_mel_weight_matrix` (HTK mel scale, DC bin zeroed):
    (spectrum, bins)."""
    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    freqs = mel(np.linspace(0.0, rate / 2, spectrum))[1:]
    edges = np.linspace(float(mel(low)), float(mel(high)), bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower) / (center - lower)
    down = (upper - freqs[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.vstack([np.zeros((1, bins)), weights])


def convert(h5_path: Path) -> dict[str, np.ndarray]:
    """Tensors in `yamnet.py`'s layout from the Keras weights file."""
    try:
        import h5py
    except ImportError:
        raise MmsearchError("converting YAMNet's Keras weights needs h5py: "
                            "pip install 'mmsearch[tags]'") from None
    raw: dict[str, np.ndarray] = {}
    with h5py.File(h5_path, "r") as f:
        root = f.get("model_weights", f)
        for layer in root.attrs["layer_names"]:
            group = root[layer if isinstance(layer, str) else layer.decode()]
            for name in group.attrs.get("weight_names", []):
                name = name if isinstance(name, str) else name.decode()
                raw[name.split(":")[0]] = np.asarray(group[name], dtype=np.float64)

    def folded(prefix: str, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch norm (centre, no scale) folded into the kernel's output channels (axis 0)."""
        bn = f"{prefix}/bn"
        scale = 1.0 / np.sqrt(raw[f"{bn}/moving_variance"] + BN_EPSILON)
        shape = (-1,) + (1,) * (kernel.ndim - 1)
        return (kernel * scale.reshape(shape),
                raw[f"{bn}/beta"] - raw[f"{bn}/moving_mean"] * scale)

    out = frontend()
    w, b = folded("layer1/conv", raw["layer1/conv/kernel"].transpose(3, 2, 0, 1))
    out["layer1.conv.weight"], out["layer1.conv.bias"] = w, b
    for i in range(2, LAYERS + 1):
        dw = raw[f"layer{i}/depthwise_conv/depthwise_kernel"].transpose(2, 3, 0, 1)
        w, b = folded(f"layer{i}/depthwise_conv", dw)
        out[f"layer{i}.depthwise.weight"], out[f"layer{i}.depthwise.bias"] = w, b
        pw = raw[f"layer{i}/pointwise_conv/kernel"].transpose(3, 2, 0, 1)
        w, b = folded(f"layer{i}/pointwise_conv", pw)
        out[f"layer{i}.pointwise.weight"], out[f"layer{i}.pointwise.bias"] = w, b
    dense = next(k.rsplit("/", 1)[0] for k in raw if k.endswith("/kernel")
                 and raw[k].shape == (1024, 521))
    out["classifier.weight"] = raw[f"{dense}/kernel"].T
    out["classifier.bias"] = raw[f"{dense}/bias"]
    return out


def save(tensors: dict[str, np.ndarray], classes_csv: bytes, folder: Path) -> Path:
    """Write `yamnet.fp16.safetensors` and the class map into `folder` (atomically)."""
    import torch
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".yamnet-", dir=folder.parent))
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)).half() for k, v in tensors.items()},
              str(tmp / "yamnet.fp16.safetensors"))
    (tmp / "yamnet_class_map.csv").write_bytes(classes_csv)
    (tmp / "SOURCE.txt").write_text(f"YAMNet (Google LLC, Apache License 2.0)\nweights: "
                                    f"{WEIGHTS_URL}\nclasses: {CLASSES_URL}\n"
                                    "converted by mmsearch.audio.yamnet_fetch\n")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def fetch_yamnet(folder: Path, timeout: float = 60.0) -> Path:
    """Download, convert and install YAMNet into `folder`; MmsearchError when offline or
    when it fails (remembered: tried once per process)."""
    global _failed
    from mmsearch import hub

    with _lock:
        if _failed is not None:
            raise MmsearchError(_failed)
        if not hub.reachable():
            _failed = "offline: YAMNet cannot be downloaded"
            raise MmsearchError(_failed)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                h5 = Path(tmp) / "yamnet.h5"
                with urllib.request.urlopen(WEIGHTS_URL, timeout=timeout) as r:
                    h5.write_bytes(r.read())
                with urllib.request.urlopen(CLASSES_URL, timeout=timeout) as r:
                    classes = r.read()
                if classes.count(b"\n") < 521 or not math.isfinite(h5.stat().st_size):
                    raise MmsearchError("the downloaded YAMNet class map is incomplete")
                return save(convert(h5), classes, folder)
        except (OSError, KeyError, ValueError, MmsearchError) as e:
            _failed = f"YAMNet download failed: {e}"
            raise MmsearchError(_failed) from None
