"""Build the OCR evaluation set in a temporary folder (nothing of it is kept in the repo).

- **photos**: real Flickr8k photos from ../shared/data with 2-3 words printed on them, as
  a sign (a plate behind the words) or straight on the picture (an outline for contrast),
  in varied fonts, sizes (about 4-12 % of the picture's height), rotations (up to ±20°)
  and colours; each phrase is printed once in the whole set, so it names one picture;
- **screenshots**: small web pages (a heading, a paragraph, a table row) rendered by
  headless Chromium when `chromium` is installed, else drawn by PIL (`how` says which);
- **slides**: a deck of title slides rendered into one MP4 (PyAV), two seconds a slide.

Each picture comes with the words printed on it, so word recall and query hit rates can
be measured. Distractor phrases are made of words printed nowhere in the set.
"""

from __future__ import annotations

import glob
import math
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

#: Distinct, ordinary English words; phrases are drawn from the first part, distractor
#: phrases from the rest (printed nowhere).
_WORD_TEXT = (
    "amber lantern festival harbor bakery violet garden orchard copper kettle museum "
    "river station market quarterly revenue invoice summer winter library village "
    "mountain theater bicycle repair coffee roastery window cleaning silver dragon pizza "
    "kitchen garage sale tennis club vintage records ocean breeze parking zone "
    "emergency exit private property fresh bread organic farm jazz concert book shop "
    "city hall train depot pharmacy open daily closed sunday welcome home north gate "
    "south pier golden eagle hotel lobby dental clinic pet grooming tattoo studio "
    "flower stall cheese cellar wine tasting cinema tickets barber salon laundry "
    "service bus stop taxi rank fire station police academy science fair art gallery "
    "music school dance hall yoga retreat camping ground fishing tackle boat rental "
    "ski lodge sunset diner midnight arcade"
)
WORDS = _WORD_TEXT.split()
_DISTRACTOR_TEXT = (
    "granite pelican saxophone meadow tornado walnut compass glacier lemonade bishop "
    "falcon quartz velvet canyon anchor thimble marble lighthouse parsnip zeppelin"
)
DISTRACTOR_WORDS = _DISTRACTOR_TEXT.split()


@dataclass
class Printed:
    """One picture (or video moment) and the words printed on it."""

    path: Path
    words: list[str]
    kind: str  # "photo" | "screenshot" | "slide"
    start_s: float | None = None

    @property
    def query(self) -> str:
        return " ".join(self.words)


def fonts() -> list[str]:
    """TrueType fonts of this machine (PIL's own font when there are none)."""
    found = sorted(glob.glob("/usr/share/fonts/**/*.ttf", recursive=True))
    return [f for f in found if "Mono" not in f or "Bold" in f] or [""]


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def sign_photo(path: Path, text: str, seed: int = 0,
               at: tuple[int, int] = (30, 60)) -> Path:
    """A synthetic 480x320 photo with `text` printed large and dark on a light plate."""
    from helpers import make_photo

    make_photo(path, seed, size=(480, 320))
    im = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(im)
    font = _font(fonts()[0], 36)
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle((left - 12, top - 10, right + 12, bottom + 10), fill=(240, 240, 230))
    draw.text(at, text, font=font, fill=(10, 10, 10))
    im.save(path, quality=92)
    return path


def phrases(n: int, seed: int = 0, avoid: Iterable[Iterable[str]] = ()) -> list[list[str]]:
    """n phrases of 2-3 distinct words, each naming one picture: no phrase's words are
    all in another phrase (of these or of `avoid`, the phrases printed elsewhere in the
    set). Words are used once until all are used, then again in new combinations."""
    rng = random.Random(seed)
    taken = [frozenset(p) for p in avoid]
    words = list(WORDS)
    rng.shuffle(words)
    out: list[list[str]] = []
    while len(out) < n:
        size = rng.choice((2, 3))
        if len(words) < size:
            words = list(WORDS)  # more phrases than words/2.5: reuse words, new pairs
            rng.shuffle(words)
        phrase = [words.pop() for _ in range(size)]
        new = frozenset(phrase)
        if len(new) < size or any(new <= old or old <= new for old in taken):
            continue  # a query of it would name two pictures
        taken.append(new)
        out.append(phrase)
    return out


def distractors(n: int, seed: int = 1) -> list[str]:
    """Phrases of 2-3 words printed nowhere in the set."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(DISTRACTOR_WORDS, rng.choice((2, 3)))) for _ in range(n)]


def print_on(photo: Image.Image, words: list[str], rng: random.Random,
             font_files: list[str]) -> Image.Image:
    """The photo with the words printed on it (a sign or bare letters, rotated)."""
    im = photo.convert("RGB")
    w, h = im.size
    text = " ".join(words)
    if rng.random() < 0.5:
        text = text.upper() if rng.random() < 0.5 else text.title()
    size = max(12, int(h * rng.uniform(0.045, 0.12)))
    font = _font(rng.choice(font_files), size)
    left, top, right, bottom = font.getbbox(text)
    while right - left > 0.9 * w and size > 12:  # fit the width
        size = int(size * 0.9)
        font = _font(rng.choice(font_files), size)
        left, top, right, bottom = font.getbbox(text)
    tw, th = right - left + 2 * size // 2, bottom - top + size // 2
    layer = Image.new("RGBA", (tw, th), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    sign = rng.random() < 0.5
    if sign:  # a plate: light on dark or dark on light, contrast varied
        dark = rng.random() < 0.5
        plate = tuple(rng.randint(0, 70) if dark else rng.randint(185, 255) for _ in range(3))
        ink = tuple(rng.randint(190, 255) if dark else rng.randint(0, 80) for _ in range(3))
        draw.rounded_rectangle((0, 0, tw - 1, th - 1), radius=size // 4, fill=(*plate, 235))
        draw.text((size // 2 - left, size // 4 - top), text, font=font, fill=(*ink, 255))
    else:  # bare letters with an outline
        ink = tuple(rng.randint(0, 255) for _ in range(3))
        edge = (0, 0, 0) if sum(ink) > 380 else (255, 255, 255)
        draw.text((size // 2 - left, size // 4 - top), text, font=font, fill=(*ink, 255),
                  stroke_width=max(1, size // 14), stroke_fill=(*edge, 255))
    angle = rng.uniform(-20, 20) if rng.random() < 0.6 else 0.0
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    x = rng.randint(0, max(0, w - layer.width))
    y = rng.randint(0, max(0, h - layer.height))
    im.paste(layer, (x, y), layer)
    return im


def build_photos(folder: Path, photos: list[Path], seed: int = 0,
                 avoid: Iterable[Iterable[str]] = ()) -> list[Printed]:
    """One printed phrase per photo (JPEG, quality 90) in `folder`; `avoid`: the phrases
    printed elsewhere in the set (see `phrases`)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    font_files = fonts()
    out = []
    words_of = phrases(len(photos), seed, avoid)
    for i, (src, words) in enumerate(zip(photos, words_of, strict=True)):
        im = print_on(Image.open(src), words, rng, font_files)
        target = folder / f"sign{i:03d}.jpg"
        im.save(target, quality=90)
        out.append(Printed(target, words, "photo"))
    return out


_PAGE = """<!doctype html><html><head><style>
body {{ font-family: {font}; margin: 32px; background: {bg}; color: {fg}; }}
h1 {{ font-size: {h1}px; }} p {{ font-size: {p}px; line-height: 1.5; }}
td {{ border: 1px solid #888; padding: 6px 12px; font-size: {p}px; }}
</style></head><body><h1>{title}</h1>
<p>Notes from the meeting about the new site. Everyone agreed that the plan is good and
that the work should start next week, once the budget is approved.</p>
<table><tr><td>item</td><td>{cell}</td><td>42</td></tr></table></body></html>"""
_STYLES = [("Arial, sans-serif", "#ffffff", "#111111"), ("Georgia, serif", "#f4f1e8", "#222"),
           ("Verdana, sans-serif", "#1e1e1e", "#e8e8e8"),
           ("'Courier New', monospace", "#ffffff", "#003366")]


def chromium() -> str | None:
    """The headless browser used for page screenshots, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def build_screenshots(folder: Path, n: int, seed: int = 7,
                      size: tuple[int, int] = (1024, 640),
                      avoid: Iterable[Iterable[str]] = ()) -> tuple[list[Printed], str]:
    """n page screenshots (PNG); the title holds 2 phrase words, a table cell a third
    (else "total"); `avoid`: the phrases printed elsewhere in the set.

    Returns the pictures and how they were made ("chromium" or "pil").
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words = phrases(n, seed + 100, avoid)
    browser = chromium()
    out = []
    for i, ws in enumerate(words):
        title = " ".join(w.title() for w in ws[:2])
        cell = ws[2] if len(ws) > 2 else "total"
        font, bg, fg = _STYLES[i % len(_STYLES)]
        target = folder / f"page{i:03d}.png"
        html = _PAGE.format(font=font, bg=bg, fg=fg, h1=rng.randint(26, 40),
                            p=rng.randint(14, 18), title=title, cell=cell)
        if browser is None or not _chromium_shot(browser, html, target, size):
            _pil_page(target, title, cell, size, bg, fg)
        out.append(Printed(target, [*ws[:2], cell], "screenshot"))
    return out, "chromium" if browser else "pil"


def _chromium_shot(browser: str, html: str, target: Path, size: tuple[int, int]) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html)
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={tmp}/profile", f"--window-size={size[0]},{size[1]}",
               f"--screenshot={target}", page.as_uri()]
        try:
            subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return target.is_file() and target.stat().st_size > 0


def _pil_page(target: Path, title: str, cell: str, size: tuple[int, int], bg: str,
              fg: str) -> None:
    im = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(im)
    files = fonts()
    d.text((32, 32), title, font=_font(files[0], 34), fill=fg)
    body = _font(files[0], 16)
    for j, line in enumerate(("Notes from the meeting about the new site. Everyone agreed",
                              "that the plan is good and that the work should start next",
                              "week, once the budget is approved.")):
        d.text((32, 100 + 26 * j), line, font=body, fill=fg)
    d.rectangle((32, 200, 400, 236), outline="#888")
    d.text((40, 208), f"item     {cell}     42", font=body, fill=fg)
    im.save(target)


def build_slides(path: Path, n: int, seed: int = 11, seconds: float = 2.0,
                 size: tuple[int, int] = (640, 360),
                 avoid: Iterable[Iterable[str]] = ()) -> list[Printed]:
    """A slide deck as one H.264 MP4: each slide a title of 2-3 phrase words; `avoid`:
    the phrases printed elsewhere in the set."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = fonts()
    fps = 4
    out = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i, ws in enumerate(phrases(n, seed + 200, avoid)):
            bg = tuple(rng.randint(200, 255) for _ in range(3)) if i % 2 else (30, 40, 70)
            fg = (20, 20, 20) if i % 2 else (240, 240, 240)
            im = Image.new("RGB", size, bg)
            d = ImageDraw.Draw(im)
            d.text((40, 60), " ".join(w.title() for w in ws), font=_font(rng.choice(files), 40),
                   fill=fg)
            d.text((40, 160), f"Slide {i + 1}", font=_font(files[0], 22), fill=fg)
            frame = av.VideoFrame.from_ndarray(np.asarray(im), format="rgb24")
            for _ in range(math.ceil(seconds * fps)):
                for packet in stream.encode(frame):
                    container.mux(packet)
            out.append(Printed(path, ws, "slide", start_s=i * seconds))
        for packet in stream.encode():
            container.mux(packet)
    return out
