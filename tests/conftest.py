"""Shared fixtures: a tiny random open_clip model and folders of synthetic photos."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from tiny_model import make_tiny_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Model spec of a tiny random open_clip model (config JSON + checkpoint on disk)."""
    return make_tiny_model(tmp_path_factory.mktemp("model"))


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


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 8 distinct photos in several formats and sizes, two with EXIF."""
    root = tmp_path / "photos"
    for i in range(5):
        make_photo(root / f"img{i}.jpg", seed=i, size=(96 + 40 * i, 72 + 30 * i))
    make_photo(root / "sub" / "shot.png", seed=10, size=(320, 240))
    make_photo(root / "sub" / "dated.jpg", seed=11, size=(400, 300), exif={
        0x010F: "Canon", 0x0110: "EOS 5D",
        0x8769: {0x9003: "2021:06:15 10:30:00"},
        0x8825: {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}})
    make_photo(root / "sub" / "old.jpg", seed=12, size=(200, 150), exif={
        0x0110: "Nikon D70", 0x8769: {0x9003: "2015:01:02 03:04:05"}})
    return root


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    from mmsearch.cli import app

    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


def run_cli_process(*args: str, env: dict[str, str] | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m mmsearch` in a fresh process (cold start, real exit codes)."""
    return subprocess.run([sys.executable, "-m", "mmsearch", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
