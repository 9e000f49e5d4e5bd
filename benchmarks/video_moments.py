"""Moment retrieval on the Flickr8k slideshow videos (../shared/data/flickr8k_slideshow).

50 videos of 30 s each show 10 Flickr8k photos for 3 s each; `segments.csv` says which
photo is on screen when. The videos are indexed with `mmsearch index` defaults (1 frame
per second, scene-change dedupe), then:

* image -> moment: each of the 500 source photos is the query (`--image`); a hit is the
  right video first with its best moment's `start_s` inside the photo's segment
  [start_s, end_s).
* text -> moment: each of the 2,500 captions is the query; same hit rule. Meaningless
  with random weights (reported anyway, as a baseline for when a real offline model lands).

    PYTHONPATH=. python benchmarks/video_moments.py [--model tiny|vit-b-32-random|SPEC]
        [--videos N] [--no-text]

`tiny` is the tests' random 32-d open_clip model, `vit-b-32-random` a randomly initialised
ViT-B-32 (seed 0); both are written to a temporary folder, nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import mmsearch
from benchmarks._harness import DATA

SLIDESHOW = DATA / "flickr8k_slideshow"


def model_spec(name: str, folder: Path) -> str:
    if name == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_model import make_tiny_model

        return make_tiny_model(folder)
    if name == "vit-b-32-random":
        import open_clip
        import torch

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        path = folder / "vit-b-32-random.pt"
        torch.save(model.state_dict(), path)
        return f"ViT-B-32:{path}"
    return name


def load_segments(videos: set[str] | None = None) -> dict[tuple[str, int], dict]:
    """(video file name, segment) -> {start_s, end_s, source, captions}."""
    out: dict[tuple[str, int], dict] = {}
    with open(SLIDESHOW / "segments.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = Path(row["video"]).name
            if videos is not None and name not in videos:
                continue
            seg = out.setdefault((name, int(row["segment"])), {
                "start_s": float(row["start_s"]), "end_s": float(row["end_s"]),
                "source": DATA / "flickr8k" / row["source_file"], "captions": []})
            seg["captions"].append(row["caption"])
    return out


def evaluate(col: mmsearch.Collection, segments: dict, text: bool) -> dict[str, float]:
    stats: dict[str, list[int]] = defaultdict(list)
    t = time.perf_counter()
    for (video, _), seg in segments.items():
        queries = [("image", {"image": seg["source"]})]
        if text:
            queries += [("text", {"text": c}) for c in seg["captions"]]
        for kind, query in queries:
            hits = col.search(k=5, **query)
            top = hits[0]
            right_video = Path(top.path).name == video
            inside = right_video and seg["start_s"] <= (top.start_s or 0.0) < seg["end_s"]
            in5 = any(Path(h.path).name == video for h in hits)
            stats[f"{kind}_moment@1"].append(inside)
            stats[f"{kind}_video@1"].append(right_video)
            stats[f"{kind}_video@5"].append(in5)
    out = {k: 100.0 * sum(v) / len(v) for k, v in stats.items()}
    out["queries"] = sum(len(v) for k, v in stats.items() if k.endswith("moment@1"))
    out["query_seconds"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--videos", type=int, default=50, help="use the first N videos")
    ap.add_argument("--no-text", action="store_true", help="skip the caption queries")
    ap.add_argument("--fps", type=float, default=1.0)
    args = ap.parse_args()
    if not SLIDESHOW.is_dir():
        sys.exit(f"no data at {SLIDESHOW}")
    files = sorted((SLIDESHOW / "video").glob("*.mp4"))[: args.videos]
    segments = load_segments({f.name for f in files})
    with tempfile.TemporaryDirectory() as tmp:
        spec = model_spec(args.model, Path(tmp))
        with mmsearch.open(Path(tmp) / "store", model=spec) as col:
            t = time.perf_counter()
            report = col.index(files, progress=False, fps=args.fps)
            index_s = time.perf_counter() - t
            info = col.info()
            result = evaluate(col, segments, text=not args.no_text)
    print(f"model {args.model} ({spec.split(':')[0].rsplit('/', 1)[-1]}), {len(files)} videos, "
          f"{len(segments)} segments, fps {args.fps:g}")
    print(f"index: {report.summary()}; {info['vectors']} moments "
          f"({info['vectors'] / max(1, len(files)):.1f} per video) in {index_s:.1f} s")
    for key in sorted(k for k in result if "@" in k):
        print(f"  {key:18s} {result[key]:6.1f} %")
    print(f"  {result['queries']} queries in {result['query_seconds']:.1f} s")


if __name__ == "__main__":
    main()
