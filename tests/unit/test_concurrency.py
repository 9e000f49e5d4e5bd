"""Many threads search while one writer upserts and deletes: consistent snapshots, no
errors, and searches that do not wait for a write to finish."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import mmsearch

N, DIM = 300, 32


def _batch(rng, number, ids):
    vecs = rng.normal(size=(len(ids), DIM)).astype(np.float32)
    return [{"id": i, "vector": v, "batch": number, "half": int(i[1:]) % 2}
            for i, v in zip(ids, vecs, strict=True)]


def _hammer(col, stop, seen, errors, latencies, query):
    while not stop.is_set():
        try:
            started = time.perf_counter()
            hits = col.search(vector=query, k=N)
            latencies.append(time.perf_counter() - started)
            seen.append((len(hits), frozenset(h.metadata.get("batch") for h in hits)))
        except Exception as e:
            errors.append(repr(e))


@pytest.mark.parametrize("index", ["exact", "ivfpq"])
def test_readers_see_whole_batches_during_upserts_and_deletes(tmp_path, index):
    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(N)]
    odd = [i for i in ids if int(i[1:]) % 2]
    params = {"threshold": 100} if index == "ivfpq" else None  # IVF-PQ shared by snapshots
    col = mmsearch.open(tmp_path / "s", index_params=params)
    col.upsert(_batch(rng, 0, ids))
    assert col.info()["index"] == index.replace("exact", "flat")
    stop, seen, errors, latencies = threading.Event(), [], [], []
    query = rng.normal(size=DIM).astype(np.float32)
    readers = [threading.Thread(target=_hammer, args=(col, stop, seen, errors, latencies,
                                                      query)) for _ in range(3)]
    for t in readers:
        t.start()
    for number in range(1, 9):
        col.upsert(_batch(rng, number, ids))  # replaces every item in one commit
        if number % 4 == 0:
            col.delete(odd)  # half the items leave in one commit...
            time.sleep(0.02)
            col.upsert(_batch(rng, number, odd))  # ...and come back with the same number
    stop.set()
    for t in readers:
        t.join()
    col.close()
    assert not errors, errors[:3]
    assert len(seen) > 30
    for count, numbers in seen:
        assert len(numbers) == 1, f"a search saw a mix of batches {sorted(numbers)}"
        assert count in (N, N - len(odd)), count
    assert {count for count, _ in seen} >= {N}
    assert len({next(iter(n)) for _, n in seen}) > 3  # readers did see the writes happen


def test_reader_latency_is_not_the_length_of_a_write(tmp_path):
    """An IVF-PQ training run (a long write) does not hold searches up."""
    rng = np.random.default_rng(1)
    n = 20_000
    vecs = rng.normal(size=(n, 64)).astype(np.float32)
    col = mmsearch.open(tmp_path / "s", index_params={"threshold": 10**9, "niter": 25})
    col.upsert([{"id": str(i), "vector": v} for i, v in enumerate(vecs)])
    col.search(vector=vecs[0], k=5)  # the exact index is built
    col._ann_params = col._ann_params.__class__.resolve({"threshold": 1000, "niter": 25})
    stop, seen, errors, latencies = threading.Event(), [], [], []
    reader = threading.Thread(target=_hammer, args=(col, stop, seen, errors, latencies,
                                                    vecs[3]))
    reader.start()
    started = time.perf_counter()
    col.rebuild_index()  # trains IVF-PQ, adds every row, saves, commits
    write_s = time.perf_counter() - started
    time.sleep(0.05)
    stop.set()
    reader.join()
    col.close()
    assert not errors, errors[:3]
    during = latencies[:-1]
    assert len(during) >= 10, (len(during), write_s)
    # with the writer holding the searches' lock, one search lasts the whole write
    assert max(during) < write_s / 2, (max(during), write_s)
    print(f"write {write_s:.2f}s, {len(during)} searches meanwhile, median "
          f"{np.median(during) * 1e3:.1f} ms, max {max(during) * 1e3:.1f} ms")
    assert np.median(during) < write_s / 10, (np.median(during), write_s)


def test_rwlock_readers_share_writers_exclude():
    from mmsearch.index.rwlock import RWLock

    lock, inside, most, log = RWLock(), [0], [0], []
    guard = threading.Lock()

    def read():
        with lock.read():
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.2)
            with guard:
                inside[0] -= 1

    def write():
        with lock.write():
            log.append(("write", inside[0]))  # no reader is inside while a writer is
            time.sleep(0.02)

    threads = [threading.Thread(target=read) for _ in range(4)]
    threads += [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] >= 2 and log == [("write", 0), ("write", 0)]
