"""Find media files under the paths a user gives, safely (symlink loops, odd names)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Phone photos (HEIC/HEIF) and camera RAW formats that LibRaw reads (extra `photos`).
PHOTO_EXTENSIONS = frozenset({".heic", ".heif", ".dng", ".cr2", ".cr3", ".crw", ".nef",
                              ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef",
                              ".srw", ".x3f", ".3fr", ".erf", ".kdc", ".mrw", ".iiq", ".rwl"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff",
                              ".gif", *PHOTO_EXTENSIONS})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus"})


@dataclass(frozen=True)
class Found:
    """A media file to consider: absolute path, size in bytes, mtime in ns."""

    path: str
    size: int
    mtime_ns: int
    modality: str


@dataclass(frozen=True)
class Skipped:
    """A file that cannot be indexed, with the reason."""

    path: str
    reason: str


def modality_of(path: str) -> str | None:
    """The modality a file extension maps to, or None when it is not media we index."""
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    return "video" if ext in VIDEO_EXTENSIONS else None


def discover(paths: Iterable[str | os.PathLike[str]],
             exclude: Iterable[Path] = ()) -> Iterator[Found | Skipped]:
    """Walk files and folders recursively, following symlinks but never looping.

    Hidden folders (".git", ...) and the `exclude` folders (the store itself) are skipped.
    Files whose extension is not a supported media type are ignored silently.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[tuple[int, int]] = set()
    for root in paths:
        root = os.path.abspath(os.fspath(root))
        if os.path.isdir(root):
            yield from _walk(root, excluded, seen_dirs)
        elif modality_of(root) is None:
            yield Skipped(root, "not a supported media file")
        else:
            yield _stat(root)


def _walk(root: str, excluded: set[str], seen: set[tuple[int, int]]) -> Iterator[Found | Skipped]:
    errors: list[OSError] = []  # folders os.walk could not list (too long a path, no access)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=errors.append):
        while errors:
            e = errors.pop()
            yield Skipped(os.fsdecode(e.filename or dirpath),
                          f"cannot read folder: {e.strerror or e}")
        try:
            st = os.stat(dirpath)
        except OSError as e:
            yield Skipped(dirpath, f"cannot read folder: {e.strerror}")
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen or os.path.realpath(dirpath) in excluded:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if modality_of(name) is not None:
                yield _stat(os.path.join(dirpath, name))
    for e in errors:
        yield Skipped(os.fsdecode(e.filename or root), f"cannot read folder: {e.strerror or e}")


def _stat(path: str) -> Found | Skipped:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        return Skipped(shown, "file name is not valid UTF-8")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Skipped(path, "broken symbolic link" if os.path.islink(path) else "file vanished")
    except OSError as e:
        return Skipped(path, f"cannot stat: {e.strerror}")
    if not os.path.isfile(path):
        return Skipped(path, "not a regular file")
    return Found(path, st.st_size, st.st_mtime_ns, modality_of(path) or "image")


def is_under(path: str, roots: Iterable[str]) -> bool:
    """True when `path` equals one of `roots` or lies inside one."""
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
