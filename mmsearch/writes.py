"""The write transaction every collection write runs in, written once.

    with writes.transaction() as store:   # lock, store writer, model check
        ...                                # commits (store.commit / rows.replace_rows)
    # on success: maintain the vector index and calibration, publish the new snapshot

A writer holds the collection's lock and the store's file lock for the whole transaction;
readers never wait for it (they keep the previous snapshot until `publish`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mmsearch.store.store import Store


class Writes:
    """Runs writes one at a time over a store (see the module docstring).

    Args:
        store: the writer's `Store`.
        check: called first inside the lock (e.g. the pinned-model check).
        maintain: `maintain(store, force)` after the commits (index, calibration).
        publish: `publish(store)` last (load and swap in the new snapshot).
    """

    def __init__(self, store: Store, check: Callable[[], None],
                 maintain: Callable[[Store, bool], None],
                 publish: Callable[[Store], None]) -> None:
        self.store = store
        self.lock = threading.RLock()
        self._check = check
        self._maintain = maintain
        self._publish = publish

    @contextmanager
    def transaction(self, *, always_maintain: bool = True, force_index: bool = False,
                    check: bool = True) -> Iterator[Store]:
        """Lock, open the writer, `check` (unless False); on success maintain (when something
        was committed, or `always_maintain`) and publish. An exception leaves the last
        commit in place and publishes nothing."""
        with self.lock, self.store.writer() as store:
            if check:
                self._check()
            start = store.generation
            yield store
            if always_maintain or force_index or store.generation != start:
                self._maintain(store, force_index)
            self._publish(store)
