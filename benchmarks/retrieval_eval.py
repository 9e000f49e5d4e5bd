"""Retrieval quality through the public API: R@1/5/10 and mAP@10 for text->image,
image->image (near duplicates) and text->moment, with and without reranking, per channel.

Dataset folders of the kind in ../shared/data:

* images with captions (`captions.csv`: file, caption; e.g. flickr8k): the first `--limit`
  images are indexed. text->image: each caption must find its photo. image->image: each
  photo re-encoded as JPEG q60 and resized to 75 % must find its original (the
  near-duplicate check: R@1 >= 0.99 with any model).
* videos with moments (`segments.csv`: video, start_s, end_s, caption; e.g.
  flickr8k_slideshow): the first `--videos` videos are indexed; a caption's hit is its
  video with the best moment's start inside the caption's segment.

With one relevant item per query, AP is 1/rank (0 beyond rank 10), so mAP@10 = MRR@10.
Channels: each channel of the store is also evaluated alone (weights 0 for the others)
when there is more than one.

    PYTHONPATH=. python benchmarks/retrieval_eval.py ../shared/data/flickr8k \\
        ../shared/data/flickr8k_slideshow --model mmsearch-lite --limit 200 --videos 5 \\
        [--rerank 10 --reranker SPEC|tiny-blip] [--plot PNG] [--write]

`--model tiny` / `--reranker tiny-blip` use the tests' random models (a smoke run: the
numbers are meaningless). `--write` replaces this script's section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from video_moments import model_spec

import mmsearch

HERE = Path(__file__).resolve().parent
START, END = "<!-- retrieval_eval:start -->", "<!-- retrieval_eval:end -->"
KS = (1, 5, 10)


@dataclass
class Row:
    """Metrics of one (dataset, task, channel, rerank) cell."""

    dataset: str
    task: str
    channel: str
    rerank: str
    ranks: list[int] = field(default_factory=list)  # 0 = not in the top 10
    seconds: float = 0.0

    def recall(self, k: int) -> float:
        return float(np.mean([0 < r <= k for r in self.ranks])) if self.ranks else 0.0

    def map10(self) -> float:
        return float(np.mean([1.0 / r if r else 0.0 for r in self.ranks])) if self.ranks else 0.0

    def markdown(self) -> str:
        ms = 1000 * self.seconds / max(len(self.ranks), 1)
        return (f"| {self.dataset} | {self.task} | {self.channel} | {self.rerank} | "
                f"{len(self.ranks)} | " + " | ".join(f"{self.recall(k):.3f}" for k in KS)
                + f" | {self.map10():.3f} | {ms:.0f} |")


def rank_of(hits: list, good) -> int:
    for i, hit in enumerate(hits, 1):
        if good(hit):
            return i
    return 0


def channel_options(col: mmsearch.Collection) -> list[tuple[str, dict]]:
    """("all", {}) plus one entry per channel when the store has several."""
    channels = [str(c) for (c,) in col.snapshot().sql(
        "SELECT DISTINCT coalesce(channel, 'visual') FROM items ORDER BY 1").fetchall()]
    out = [("all", {})]
    if len(channels) > 1:
        out += [(c, {o: (1.0 if o == c else 0.0) for o in channels}) for c in channels]
    return out


def rerank_options(args: argparse.Namespace) -> list[tuple[str, dict]]:
    out = [("none", {})]
    if args.rerank:
        out.append((f"top {args.rerank}", {"rerank": args.rerank, "reranker": args.reranker}))
    return out


def run_queries(col, rows: list[Row], dataset: str, task: str, queries: list,
                args: argparse.Namespace, text: bool) -> None:
    """queries: (search kwargs, is_hit(result)) pairs."""
    for channel, weights in channel_options(col):
        for label, rerank in rerank_options(args) if text else [("none", {})]:
            row = Row(dataset, task, channel, label)
            t = time.perf_counter()
            for kwargs, good in queries:
                hits = col.search(k=10, weights=weights or None, **kwargs, **rerank)
                row.ranks.append(rank_of(hits, good))
            row.seconds = time.perf_counter() - t
            rows.append(row)
            print(row.markdown(), flush=True)


def near_duplicate(path: Path) -> bytes:
    """The photo re-encoded as JPEG quality 60 at 75 % of its size."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        im = im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=60)
        return buf.getvalue()


def eval_images(folder: Path, col, rows: list[Row], args: argparse.Namespace) -> None:
    captions: dict[Path, list[str]] = defaultdict(list)
    with open(folder / "captions.csv", newline="") as f:
        for r in csv.DictReader(f):
            captions[(folder / r["file"]).resolve()].append(r["caption"])
    files = sorted(captions)[: args.limit]
    t = time.perf_counter()
    report = col.index(files, progress=False)
    print(f"indexed {report.added} images in {time.perf_counter() - t:.1f}s", flush=True)
    text_q = [({"text": c}, lambda h, p=str(p): h.path == p)
              for p in files for c in captions[p]][: args.max_queries]
    run_queries(col, rows, folder.name, "text->image", text_q, args, text=True)
    image_q = [({"image": near_duplicate(p)}, lambda h, p=str(p): h.path == p)
               for p in files][: args.max_queries]
    run_queries(col, rows, folder.name, "image->image (near-dup)", image_q, args, text=False)


def eval_videos(folder: Path, col, rows: list[Row], args: argparse.Namespace) -> None:
    segments: list[tuple[Path, float, float, str]] = []
    with open(folder / "segments.csv", newline="") as f:
        for r in csv.DictReader(f):
            segments.append(((folder / r["video"]).resolve(), float(r["start_s"]),
                             float(r["end_s"]), r["caption"]))
    videos = sorted({s[0] for s in segments})[: args.videos]
    t = time.perf_counter()
    report = col.index(videos, progress=False)
    print(f"indexed {report.added} videos in {time.perf_counter() - t:.1f}s", flush=True)

    def good(video: Path, start: float, end: float):
        return lambda h: h.path == str(video) and start <= (h.start_s or 0.0) < end

    queries = [({"text": c, "modality": "video"}, good(v, a, b))
               for v, a, b, c in segments if v in set(videos)][: args.max_queries]
    run_queries(col, rows, folder.name, "text->moment", queries, args, text=True)


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.task}\n{r.channel}, rerank {r.rerank}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    for i, k in enumerate(KS):
        ax.bar(x + (i - 1) * 0.25, [r.recall(k) for r in rows], 0.25, label=f"R@{k}")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_section(text: str) -> None:
    results = HERE / "RESULTS.md"
    old = results.read_text()
    block = START + "\n" + text.rstrip("\n") + "\n" + END
    if START in old:  # replace in place
        new = old[: old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    results.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--model", default="mmsearch-lite")
    ap.add_argument("--limit", type=int, default=200, help="images indexed per image set")
    ap.add_argument("--videos", type=int, default=5, help="videos indexed per video set")
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--rerank", type=int, default=0, help="rerank the top N (0: only without)")
    ap.add_argument("--reranker", default=None, help="reranker spec, or tiny-blip")
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help="update this section of RESULTS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmsearch-eval-"))
    spec = model_spec(args.model, tmp)
    if args.reranker == "tiny-blip":
        from tiny_blip import make_tiny_blip

        args.reranker = f"blip:{make_tiny_blip(tmp / 'blip')}"
    rows: list[Row] = []
    print("| dataset | task | channel | rerank | queries | R@1 | R@5 | R@10 | mAP@10 | ms/query |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, folder in enumerate(args.datasets):
        with mmsearch.open(tmp / f"store{n}", model=spec) as col:
            if (folder / "captions.csv").is_file():
                eval_images(folder, col, rows, args)
            elif (folder / "segments.csv").is_file():
                eval_videos(folder, col, rows, args)
            else:
                sys.exit(f"{folder}: no captions.csv or segments.csv")
    near = [r for r in rows if "near-dup" in r.task and r.channel == "all"]
    lines = ["| dataset | task | channel | rerank | queries | R@1 | R@5 | R@10 | mAP@10 | "
             "ms/query |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [r.markdown() for r in rows]
    for r in near:
        verdict = "PASS" if r.recall(1) >= 0.99 else "FAIL"
        lines.append(f"\nNear-duplicate check ({r.dataset}): {r.recall(1):.3f} of "
                     f"{len(r.ranks)} JPEG-q60, 75 %-resized copies find their original "
                     f"first: {verdict} (needs >= 0.99).")
    table = "\n".join(lines)
    print(table)
    if args.plot:
        plot(rows, args.plot, f"model {args.model}, reranker {args.reranker or 'none'}")
        print(f"plot: {args.plot}")
    if args.write:
        write_section(f"Model `{args.model}`, reranker `{args.reranker or 'none'}`.\n\n"
                      f"    PYTHONPATH=. python {' '.join(sys.argv)}\n\n{table}\n")


if __name__ == "__main__":
    main()
