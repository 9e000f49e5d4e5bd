"""Search results equal a brute-force cosine ranking computed directly with open_clip."""

from __future__ import annotations

import numpy as np
import open_clip
import torch
from PIL import Image

import mmsearch
from mmsearch.encoders.registry import split_spec


def _reference_embeddings(spec: str, files: list, texts: list[str]):
    config_path, weights = split_spec(spec)
    open_clip.add_model_config(config_path)
    name = config_path.rsplit("/", 1)[-1].removesuffix(".json")
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights)
    tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files])
        img = model.encode_image(pixels)
        txt = model.encode_text(tokenizer(texts))
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return img.numpy(), txt.numpy()


def test_search_equals_bruteforce_open_clip(photos, tmp_path, tiny_spec):
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    texts = ["a red mug on a desk", "a dog running on grass", "sunset over the sea"]
    img, txt = _reference_embeddings(tiny_spec, files, texts)
    with mmsearch.open(tmp_path / "store", model=tiny_spec) as col:
        col.index([photos], progress=False)
        assert len(col) == len(files)
        for q, t in zip(texts, txt, strict=True):
            expected = np.argsort(-(img @ t))
            hits = col.search(text=q, k=len(files))
            assert [h.path for h in hits] == [str(files[i]) for i in expected]
            np.testing.assert_allclose([h.similarity for h in hits], (img @ t)[expected], atol=1e-5)
        # query by example: cosine against every image, same order
        sims = img @ img[3]
        hits = col.search(image=files[3], k=len(files))
        assert [h.path for h in hits] == [str(files[i]) for i in np.argsort(-sims)]
        np.testing.assert_allclose([h.similarity for h in hits], np.sort(sims)[::-1], atol=1e-5)


def test_filtered_search_equals_filtered_bruteforce(photos, tmp_path, tiny_spec):
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    img, txt = _reference_embeddings(tiny_spec, files, ["a cat"])
    widths = np.array([Image.open(f).width for f in files])
    with mmsearch.open(tmp_path / "store", model=tiny_spec) as col:
        col.index([photos], progress=False)
        for limit in (100, 200, 300):
            allowed = np.flatnonzero(widths >= limit)
            order = allowed[np.argsort(-(img[allowed] @ txt[0]))]
            hits = col.search(text="a cat", k=3, where=f"width >= {limit}")
            assert [h.path for h in hits] == [str(files[i]) for i in order[:3]]
            assert hits == col.search(text="a cat", k=3, filters={"width": {"gte": limit}})


def test_text_plus_image_query_fuses_calibrated_parts(photos, tmp_path, tiny_spec):
    """Text + image: each part's cosine calibrated, fused as (z_text + z_image) / sqrt(2)."""
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    img, txt = _reference_embeddings(tiny_spec, files, ["in red"])
    q = img[0] + txt[0]
    q /= np.linalg.norm(q)
    with mmsearch.open(tmp_path / "store", model=tiny_spec) as col:
        col.index([photos], progress=False)
        hits = col.search(text="in red", image=files[0], k=len(files), explain=True)
        stats = col._store.manifest["calibration"]["stats"]
    z_text = (img @ txt[0] - stats["text>visual"]["mean"]) / stats["text>visual"]["std"]
    z_img = (img @ img[0] - stats["image>visual"]["mean"]) / stats["image>visual"]["std"]
    fused = (z_text + z_img) / np.sqrt(2)
    assert [h.path for h in hits] == [str(files[i]) for i in np.argsort(-fused)]
    np.testing.assert_allclose([h.score for h in hits], np.sort(fused)[::-1], atol=1e-3)
    # similarity stays the cosine with the sum of the unit vectors
    by_path = {str(f): i for i, f in enumerate(files)}
    np.testing.assert_allclose([h.similarity for h in hits],
                               [img[by_path[h.path]] @ q for h in hits], atol=1e-5)
