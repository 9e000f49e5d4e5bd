"""Shared fixtures: a tiny random open_clip model and folders of synthetic photos.

Tests live in layers: unit/ (library mechanics), e2e/ (the CLI and HTTP service as a user
drives them), acceptance/ (real data from ../shared, skipped with a reason when absent).
Each test is marked with its layer (`pytest -m unit`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import make_photo
from tiny_model import make_tiny_model
from typer.testing import CliRunner

LAYERS = ("unit", "e2e", "acceptance")

# Tests never touch the network: a model that is not on this machine fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _fresh_hub_answer() -> None:
    """Each test asks the (offline) hub afresh: the process-wide answer is not shared."""
    from mmsearch import hub

    hub.reset()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With MMSEARCH_SKIPPED_LOG set, append each skipped test's id to that file (.ci/run
    runs them again with ../shared)."""
    log = os.environ.get("MMSEARCH_SKIPPED_LOG")
    if log and report.skipped and report.when in ("setup", "call"):
        with open(log, "a", encoding="utf-8") as f:
            f.write(report.nodeid + "\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the layer (folder) it lives in."""
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Model spec of a tiny random open_clip model (config JSON + checkpoint on disk)."""
    return make_tiny_model(tmp_path_factory.mktemp("model"))


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
