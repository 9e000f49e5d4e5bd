"""Fault suite (a seeded sample; benchmarks/faults.py runs the long campaign): workers
killed with SIGKILL at random points of upsert, delete, compaction, index retraining and
indexing, and ENOSPC/EIO injected at random steps of a commit. After each, the store opens,
verifies, and holds the state before or after the operation in flight: nothing committed
is lost, no traceback."""

from __future__ import annotations

import fault_harness as fh


def test_kill_and_write_error_sample(tmp_path, tiny_spec):
    store = fh.setup(tmp_path, tiny_spec)
    assert len(fh.read_state(store)) > 10
    forker = fh.Forker()
    try:
        tally = fh.kill_trials(tmp_path, tiny_spec, store, trials=6, seed=13, forker=forker)
        tally = fh.fault_trials(tmp_path, tiny_spec, store, trials=5, seed=14, tally=tally,
                                forker=forker)
    finally:
        forker.close()
    assert tally.problems == []
    assert (tally.open_failures, tally.lost, tally.tracebacks) == (0, 0, 0)
    assert tally.trials >= 11 and tally.faults == 5
