"""The OCR channel through the CLI: --ocr/--no-ocr, --where on the `ocr` column, JSON with
the matched line and its box, --explain, outlined thumbnails."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli_process
from ocr_evalset import sign_photo as sign

from mmsearch.ocr.engine import available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def test_ocr_through_the_cli(tmp_path, tiny_spec):
    data = tmp_path / "data"
    sign(data / "receipt.jpg", "Harbor Bakery", seed=1)
    sign(data / "poster.jpg", "Midnight Arcade", seed=2)
    store = tmp_path / "store"
    done = run_cli_process("index", data, "--store", store, "--model", tiny_spec, "-q",
                           timeout=600)
    assert done.returncode == 0, done.stderr
    found = run_cli_process("query", "harbor bakery", "--store", store, "--json", "-k", "2",
                            "--explain", "--thumbnails", tmp_path / "thumbs", timeout=600)
    assert found.returncode == 0, found.stderr
    top = json.loads(found.stdout.splitlines()[0])
    assert top["path"].endswith("receipt.jpg")
    assert top["ocr_match"]["text"].lower().replace(" ", "") == "harborbakery"
    assert len(top["ocr_match"]["box"]) == 4
    assert top["explain"]["ocr"]["words_found"] == ["harbor", "bakery"]
    assert len(list((tmp_path / "thumbs").glob("*.jpg"))) == 2
    where = run_cli_process("query", "x", "--store", store, "--json", "--where",
                            "ocr ILIKE '%arcade%'", timeout=600)
    assert where.returncode == 0, where.stderr
    assert [json.loads(line)["path"].split("/")[-1] for line in where.stdout.splitlines()] \
        == ["poster.jpg"]


def test_no_ocr_flag(tmp_path, tiny_spec):
    data = tmp_path / "data"
    sign(data / "a.jpg", "Ocean Breeze")
    store = tmp_path / "store"
    done = run_cli_process("index", data, "--store", store, "--model", tiny_spec, "-q",
                           "--no-ocr", timeout=600)
    assert done.returncode == 0, done.stderr
    info = run_cli_process("info", "--store", store, "--json", timeout=600)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["ocr"]["enabled"] is False
