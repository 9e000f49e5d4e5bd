"""Catalog ingestion on the 500 fashion products with the offline model mmsearch-lite.

    python benchmarks/catalog_fashion.py [--limit 500]

Ingests ../shared/data/fashion_products/products.csv as a catalog (image + title per
product), then re-syncs the unchanged file (the baseline it is compared against: the first
run), edits 10 titles and drops 10 products and syncs again; then queries with every
product photo re-encoded as JPEG q70 and resized to 180x180 and counts how often its
product comes first.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

import mmsearch
from benchmarks._harness import DATA

FASHION = DATA / "fashion_products"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=500)
    args = ap.parse_args()
    frame = pd.read_csv(FASHION / "products.csv").head(args.limit)
    out: dict[str, object] = {"products": len(frame), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frame.to_csv(root / "products.csv", index=False)
        (root / "images").symlink_to(FASHION / "images")
        col = mmsearch.open(root / "store", model="mmsearch-lite", device="cpu")
        col.encoder  # noqa: B018 - load the model outside the timings

        def sync() -> tuple[float, dict]:
            started = time.perf_counter()
            report = col.index_catalog(root / "products.csv", image_col="file",
                                       text_cols=["title"], delete_missing=True)
            return time.perf_counter() - started, report.to_dict()

        first_s, first = sync()
        again_s, again = sync()
        edited = frame.copy()
        edited.loc[:9, "title"] = edited.loc[:9, "title"] + " (new season)"
        edited.iloc[:-10].to_csv(root / "products.csv", index=False)  # and drop the last 10
        edit_s, edit = sync()
        frame = edited.iloc[:-10]
        out.update(first_sync_s=round(first_s, 1), first=first,
                   products_per_s=round(len(frame) / first_s, 1),
                   unchanged_sync_s=round(again_s, 2), unchanged=again,
                   speedup_unchanged=round(first_s / again_s, 1),
                   edit10_sync_s=round(edit_s, 2), edit10=edit)
        encoder = col.encoder
        found, started = 0, time.perf_counter()
        for lo in range(0, len(frame), 64):
            part = frame.iloc[lo:lo + 64]
            pixels = []
            for file in part.file:
                buf = io.BytesIO()
                Image.open(FASHION / file).convert("RGB").resize((180, 180)).save(buf, "JPEG",
                                                                                 quality=70)
                pixels.append(encoder.preprocess(Image.open(buf).convert("RGB")))
            vectors = encoder.encode_images(torch.stack(pixels))
            found += sum(col.search(vector=v, k=1)[0].id == str(i)
                         for v, i in zip(vectors, part.id, strict=True))
        out.update(image_to_product_top1=round(found / len(frame), 4),
                   image_queries_s=round(time.perf_counter() - started, 1))
        lat = []
        for q in ["black running shoes", "women handbag", "blue denim shirt", "watch"] * 5:
            started = time.perf_counter()
            col.search(text=q, k=10, filters={"gender": {"in": ["Men", "Unisex"]},
                                              "year": {"gte": 2011}})
            lat.append(time.perf_counter() - started)
        out["filtered_text_query_ms_median"] = round(1000 * sorted(lat)[len(lat) // 2], 1)
        col.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
