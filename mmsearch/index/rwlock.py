"""A readers-writer lock: many concurrent searches, or one exclusive update."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """Shared `read()` sections run together; an `write()` section runs alone.

    Writers are preferred: once one waits, new readers queue behind it, so a stream of
    searches cannot starve an update. Not re-entrant.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0
        self._reading = _Reading(self)

    def read(self) -> _Reading:
        """A shared section: `with lock.read(): ...` (a plain context manager object: a
        search takes it a few times, where a generator-based one costs microseconds)."""
        return self._reading

    def _acquire_read(self) -> None:
        with self._mutex:  # (the condition's own lock, entered without its Python wrapper)
            while self._writing or self._waiting_writers:
                self._cond.wait()
            self._readers += 1

    def _release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            if not self._readers and self._waiting_writers:  # only writers wait on it
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class _Reading:
    """`RWLock.read()`'s context manager (stateless: one per lock, shared by threads)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock._release_read()
