"""The real offline mmsearch-lite model: shapes, norms and determinism.

The tower packages are dependencies of mmsearch, so their absence is a broken install and
fails here rather than skipping. Its retrieval quality is checked in acceptance/.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def enc():
    from mmsearch.encoders.lite import load_lite

    return load_lite("cpu")


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), "RGB")


def test_spec_dims_and_unit_norm(enc) -> None:
    assert enc.spec == "mmsearch-lite-4"
    assert enc.device == "cpu"
    pixels = torch.stack([enc.preprocess(_image(0)), enc.preprocess(_image(1))])
    assert pixels.shape == (2, 3, 260, 260)
    img = enc.encode_images(pixels)
    txt = enc.encode_texts(["a dog runs on the beach", "two people ride bicycles"])
    for v in (img, txt):
        assert v.dtype == np.float32
        assert v.shape == (2, enc.dim)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, enc.dim)


def test_preprocess_accepts_other_modes(enc) -> None:
    gray = _image(2).convert("L")
    assert enc.preprocess(gray).shape == (3, 260, 260)


def test_deterministic_and_batch_independent(enc) -> None:
    pixels = torch.stack([enc.preprocess(_image(i)) for i in range(3)])
    a = enc.encode_images(pixels)
    b = enc.encode_images(pixels)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(enc.encode_images(pixels[1:2])[0], a[1], atol=1e-4)
    texts = ["a red car", "a man climbing a rock wall with a rope"]
    t = enc.encode_texts(texts)
    np.testing.assert_array_equal(t, enc.encode_texts(texts))
    np.testing.assert_allclose(enc.encode_texts(texts[1:])[0], t[1], atol=1e-4)


def _v2_heads(**extra):
    """Small random heads with every second-generation option, written to disk."""
    from mmsearch.encoders.lite import LiteHeads

    config = {"dim": 32, "image_hidden": 64, "image_blocks": 1, "image_pool_heads": 1,
              "text_hidden": 64, "text_blocks": 1, "text_pool_heads": 1,
              "image_cells": ["fmap", "s6"], "image_global": ["s4"], "text_layers": [5, 6],
              "spec": "mmsearch-lite-test", **extra}
    torch.manual_seed(0)
    heads = LiteHeads(config)
    return heads, config


def test_second_generation_heads_round_trip_with_tower_tensors(tmp_path) -> None:
    from mmsearch.encoders.lite import build_text_tower, load_lite

    heads, _ = _v2_heads(flip_average=True)
    _, bert = build_text_tower()
    tuned = {k: v + 0.01 for k, v in bert.encoder.layer[5].state_dict().items()}
    heads.tower_state = {f"text.encoder.layer.5.{k}": v for k, v in tuned.items()}
    path = tmp_path / "h.safetensors"
    heads.save(path)
    enc = load_lite("cpu", heads_path=str(path))
    assert enc.spec == "mmsearch-lite-test" and enc.dim == 32
    loaded = enc.text_tower.encoder.layer[5].state_dict()
    for k, v in tuned.items():  # the retrained layer replaced the tower's (float16 on disk)
        torch.testing.assert_close(loaded[k], v.half().float())
    txt = enc.encode_texts(["a dog runs", "two people on a bench"])
    assert txt.shape == (2, 32)
    # flip averaging: an image and its mirror get the same vector
    img = _image(5)
    mirrored = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    v = enc.encode_images(torch.stack([enc.preprocess(img), enc.preprocess(mirrored)]))
    np.testing.assert_allclose(v[0], v[1], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_retrained_tower_tensors_must_fit(tmp_path) -> None:
    from mmsearch.encoders.lite import load_lite
    from mmsearch.errors import MmsearchError

    heads, _ = _v2_heads()
    heads.tower_state = {"image.conv_head.weight": torch.zeros(3, 3)}
    heads.save(tmp_path / "bad.safetensors")
    with pytest.raises(MmsearchError, match="do not fit"):
        load_lite("cpu", heads_path=str(tmp_path / "bad.safetensors"))


def test_both_generations_are_registered_with_their_own_spec() -> None:
    from mmsearch.encoders.lite import HEADS_PATHS, LiteHeads
    from mmsearch.encoders.registry import OFFLINE_MODEL, same_model

    assert OFFLINE_MODEL == "mmsearch-lite-4"
    assert set(HEADS_PATHS) == {"mmsearch-lite", "mmsearch-lite-2", "mmsearch-lite-3",
                               "mmsearch-lite-4"}
    for spec, path in HEADS_PATHS.items():  # each shipped file says which space it makes
        assert LiteHeads.load(path).spec == spec
    assert not same_model("mmsearch-lite", "mmsearch-lite-2")
    assert not same_model("mmsearch-lite-2", "mmsearch-lite-3")
    assert not same_model("mmsearch-lite-3", "mmsearch-lite-4")


def test_derived_pools_are_computed_from_the_cells() -> None:
    from mmsearch.encoders.lite import LiteHeads, feature_width, global_feature
    from mmsearch.errors import MmsearchError

    cells = torch.arange(2 * 81 * 3, dtype=torch.float32).reshape(2, 81, 3)
    feats = {"s6": cells, "s4": torch.ones(2, 240)}
    torch.testing.assert_close(global_feature(feats, "s6_max"), cells.amax(dim=1))
    torch.testing.assert_close(global_feature(feats, "s6"), cells.mean(dim=1))
    grid = global_feature(feats, "s6_grid")  # four overlapping 5x5 quadrants of the 9x9 map
    assert grid.shape == (2, 12)
    quads = cells.reshape(2, 9, 9, 3)
    torch.testing.assert_close(grid[:, :3], quads[:, :5, :5].mean(dim=(1, 2)))
    torch.testing.assert_close(grid[:, 9:], quads[:, 4:, 4:].mean(dim=(1, 2)))
    assert feature_width("fmap_max") == 1280 and feature_width("s6_grid") == 4 * 352
    _, config = _v2_heads()
    heads = LiteHeads({**config, "image_global": ["s4", "fmap_max", "s6_grid"]})
    assert heads.image.inp.in_features == 2 * (1280 + 352) + 240 + 1280 + 4 * 352
    for bad in ("s4_max", "fmap_median", "nope"):
        with pytest.raises(MmsearchError, match="unknown mmsearch-lite image feature"):
            LiteHeads({**config, "image_global": [bad]})
