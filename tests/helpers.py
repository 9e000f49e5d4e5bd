"""Helpers shared by the test layers: synthetic photos, the CLI in a fresh process, and
the location of the development data in ../shared (hidden with MMSEARCH_SHARED=none)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """The development folder beside the checkout, or $MMSEARCH_SHARED; None when hidden
    (MMSEARCH_SHARED=none) or absent. The code honours the same setting."""
    from mmsearch.locate import shared_dir as located

    return located()


def shared_path(*parts: str) -> Path:
    """A path under the shared folder; a path that does not exist when it is hidden."""
    root = shared_dir()
    return (root if root is not None else REPO / ".no-shared").joinpath(*parts)


SHARED_DATA = shared_path("data")
SHARED_MODELS = shared_path("models")


def make_photo(path: Path, seed: int, size: tuple[int, int] = (96, 72), *,
               exif: dict[int, object] | None = None, fmt: str | None = None) -> Path:
    """A distinct synthetic photo: coloured blocks and noise, optionally with EXIF."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST)
    noise = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255)
                          .astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, object] = {}
    if exif:
        ex = Image.Exif()
        for tag, value in exif.items():
            if tag in (0x8769, 0x8825):
                ex.get_ifd(tag).update(value)  # type: ignore[arg-type]
            else:
                ex[tag] = value
        kwargs["exif"] = ex
    img.save(path, format=fmt, **kwargs)
    return path


def run_cli_process(*args: str, env: dict[str, str] | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m mmsearch` in a fresh process (cold start, real exit codes)."""
    return subprocess.run([sys.executable, "-m", "mmsearch", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
