"""The GPU suite: one run on an NVIDIA machine, one JSON (see gpu_suite.sh, which runs it).

    python benchmarks/gpu_suite.py --device cuda --out benchmarks/out/gpu_suite.json
    python benchmarks/gpu_suite.py --device cpu --n 20000 --dim 64 --images 8 ...  # (tests)

Stages (each writes its part of the JSON as soon as it is done, and a failing stage
records its error and lets the others run):

1. `env`: devices, FAISS / torch versions, how many GPUs FAISS sees.
2. `check`: mmsearch's GPU path against its CPU path on the same store (IVF-PQ trained
   and searched on the GPU vs the CPU; recall@10 of each against exact search), and FAISS
   flat GPU vs CPU top-10 agreement.
3. `data`: n × dim synthetic vectors (benchmarks/vector_sets.py's mixture, drawn on the
   device with torch) and 1,024 fresh queries; exact fp32 ground truth on the device.
4. `exact`: exact search in float16 (chunked matmul + top-k on the device), batch 1,024:
   the baseline.
5. `ivfpq`: FAISS IVF-PQ (nlist √n rounded to a power of two, m 64 × 8 bits, float16
   lookup tables on the GPU), batch 1,024, over a grid of nprobe × re-score depth (exact
   float16 re-scoring of the candidates on the device); the fastest setting with
   recall@10 ≥ 0.95 is the headline (goal on an H100/H200: ≥ 100k QPS at 10M).
6. `encoder`: images/s of `Collection.index` (the whole pipeline) ÷ the bare model's
   forward pass on the same, already preprocessed images (fp16 on CUDA).
7. `rerank`: BLIP ITM cost per candidate at the real `blip-itm-base` architecture size
   (random weights: cost does not depend on them).

The defaults are the real run (10M × 512 on cuda); the test suite runs every stage on the
CPU at small sizes so the script cannot rot.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
K = 10


# -- helpers --------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of `repeat` calls (after one warm-up) and the last result."""
    out = fn()
    sync(device)
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def recall(found: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> float:
    f = torch.as_tensor(np.asarray(found.cpu() if hasattr(found, "cpu") else found))
    t = torch.as_tensor(np.asarray(truth.cpu() if hasattr(truth, "cpu") else truth))
    hits = (f[:, :, None] == t[:, None, :]).any(dim=2).sum().item()
    return round(hits / t.numel(), 4)


def mixture(n: int, dim: int, device: str, seed: int, dtype: torch.dtype,
            centers: int = 2000, rank: int = 32) -> torch.Tensor:
    """vector_sets.mixture's distribution, drawn on the device in chunks."""
    g = torch.Generator(device="cpu").manual_seed(0)
    cen = torch.randn(centers, dim, generator=g)
    cen = torch.nn.functional.normalize(cen, dim=1).to(device)
    shapes = (torch.randn(centers, rank, dim, generator=g) / math.sqrt(dim * rank)).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(n, dim, dtype=dtype, device=device)
    step = 1 << 18
    for lo in range(0, n, step):
        m = min(step, n - lo)
        lab = torch.randint(0, centers, (m,), generator=gen, device=device)
        z = torch.randn(m, 1, rank, generator=gen, device=device) * 0.8
        x = cen[lab] + torch.bmm(z, shapes[lab]).squeeze(1)
        x += torch.randn(m, dim, generator=gen, device=device) * (0.5 / math.sqrt(dim))
        out[lo:lo + m] = torch.nn.functional.normalize(x, dim=1).to(dtype)
    return out


def exact_topk(x: torch.Tensor, q: torch.Tensor, k: int, chunk: int = 1 << 20
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k inner products, chunked over the database (in x's dtype)."""
    q = q.to(x.dtype)
    best_s = best_i = None
    for lo in range(0, len(x), chunk):
        s, i = torch.topk(q @ x[lo:lo + chunk].T, min(k, len(x[lo:lo + chunk])), dim=1)
        i = i + lo
        if best_s is None:
            best_s, best_i = s, i
        else:
            s2, j = torch.topk(torch.cat([best_s, s], 1), k, dim=1)
            best_i = torch.gather(torch.cat([best_i, i], 1), 1, j)
            best_s = s2
    return best_s, best_i


# -- stages ---------------------------------------------------------------------------------
def stage_env(a: argparse.Namespace, ctx: dict) -> dict:
    cuda = torch.cuda.is_available()
    return {"device": a.device, "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpus": torch.cuda.device_count() if cuda else 0,
            "faiss": faiss.__version__, "faiss_gpus": int(getattr(faiss, "get_num_gpus",
                                                                   lambda: 0)()),
            "torch": torch.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "load": [round(x, 2) for x in os.getloadavg()]}


def stage_check(a: argparse.Namespace, ctx: dict) -> dict:
    """mmsearch with gpu=True vs gpu=False on one store; FAISS flat GPU vs CPU."""
    import pyarrow as pa

    import mmsearch
    from benchmarks import vector_sets

    n, dim = a.check_n, a.check_dim
    x = vector_sets.mixture(n, dim=dim, centers=200, rank=16, seed=1)
    q = vector_sets.mixture(200, dim=dim, centers=200, rank=16, seed=2)
    truth = faiss.knn(q, x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]
    out: dict[str, Any] = {"n": n, "dim": dim}
    with tempfile.TemporaryDirectory() as tmp:
        for gpu in (False, True):
            path = Path(tmp) / f"store-{gpu}"
            params = {"threshold": min(50_000, n // 2), "gpu": gpu}
            with mmsearch.open(path, index_params=params) as col:
                col.upsert(pa.table({"id": [str(i) for i in range(n)], "vector":
                                     pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)),
                                                                       dim)}))
                info = col.info()["index_params"]
                t = time.perf_counter()
                _, rows = col.snapshot().index.search(q, K)
                secs = time.perf_counter() - t
            out["gpu" if gpu else "cpu"] = {
                "device": info.get("device"), "type": info.get("type"),
                "nbits": info.get("nbits"), "nprobe": info.get("nprobe"),
                "rerank": info.get("rerank"), "measured_recall": info.get("recall_at_10"),
                "recall_at_10": recall(rows, truth), "batch_qps": round(len(q) / secs, 1)}
    out["same_quality"] = out["gpu"]["recall_at_10"] >= out["cpu"]["recall_at_10"] - 0.02
    if ctx["env"]["faiss_gpus"]:
        res = faiss.StandardGpuResources()
        cpu = faiss.IndexFlatIP(dim)
        cpu.add(x)
        gpu_index = faiss.index_cpu_to_gpu(res, 0, cpu)
        a_ids = cpu.search(q, K)[1]
        b_ids = gpu_index.search(q, K)[1]
        out["faiss_flat_gpu_vs_cpu_top10_agreement"] = recall(b_ids, a_ids)
    else:
        out["faiss_flat_gpu_vs_cpu_top10_agreement"] = "skipped: FAISS sees no GPU"
    return out


def stage_data(a: argparse.Namespace, ctx: dict) -> dict:
    t = time.perf_counter()
    x32 = mixture(a.n, a.dim, a.device, 1, torch.float32)
    q = mixture(a.batch, a.dim, a.device, 2, torch.float32)
    sync(a.device)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    _, truth = exact_topk(x32, q, K)
    sync(a.device)
    truth_s = time.perf_counter() - t
    half = torch.float16 if a.device.startswith("cuda") else torch.float32
    ctx.update(x32=x32, xh=x32.to(half), q=q, truth=truth)
    return {"n": a.n, "dim": a.dim, "queries": a.batch, "generate_s": round(gen_s, 2),
            "exact_fp32_truth_s": round(truth_s, 3), "half_dtype": str(half)}


def stage_exact(a: argparse.Namespace, ctx: dict) -> dict:
    xh, q = ctx["xh"], ctx["q"]
    secs, (_, ids) = timed(lambda: exact_topk(xh, q, K), a.device)
    return {"dtype": str(xh.dtype), "batch": len(q), "qps": round(len(q) / secs, 1),
            "recall_at_10": recall(ids, ctx["truth"])}


def stage_ivfpq(a: argparse.Namespace, ctx: dict) -> dict:
    """FAISS IVF-PQ (on the GPU when FAISS sees one), exact re-scoring on the device."""
    x32, xh, q, truth = ctx["x32"], ctx["xh"], ctx["q"], ctx["truth"]
    n, dim = x32.shape
    nlist = int(max(16, min(65536, 2 ** round(math.log2(math.sqrt(n))), n // 39)))
    m = max(d for d in range(1, min(a.pq_m, dim) + 1) if dim % d == 0)
    use_gpu = a.device.startswith("cuda") and ctx["env"]["faiss_gpus"] > 0
    if use_gpu:
        importlib.import_module("faiss.contrib.torch_utils")  # FAISS GPU calls take tensors

        def host(t: torch.Tensor) -> Any:
            return t
    else:
        def host(t: torch.Tensor) -> Any:  # (mixing torch and FAISS OpenMP pools can hang)
            return np.ascontiguousarray(t.detach().cpu().numpy())
    t = time.perf_counter()
    if use_gpu:
        res = faiss.StandardGpuResources()
        cfg = faiss.GpuIndexIVFPQConfig()
        cfg.useFloat16LookupTables = True
        index = faiss.GpuIndexIVFPQ(res, dim, nlist, m, a.pq_bits, faiss.METRIC_L2, cfg)
        ivf = index
    else:
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x{a.pq_bits}", faiss.METRIC_L2)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10
    sample = x32[torch.randperm(n, device=x32.device)[:min(n, 64 * nlist)]]
    index.train(host(sample))
    train_s = time.perf_counter() - t
    step = 1 << 20
    for lo in range(0, n, step):
        index.add(host(x32[lo:lo + step]))
    sync(a.device)
    build_s = time.perf_counter() - t
    qh = host(q)
    grid = []
    for nprobe in sorted({min(p, nlist) for p in a.nprobes}):
        for rerank in a.reranks:

            def run(nprobe: int = nprobe, rerank: int = rerank) -> torch.Tensor:
                ivf.nprobe = nprobe
                cand = torch.as_tensor(index.search(qh, K * rerank)[1]).to(xh.device)
                if rerank == 1:
                    return cand
                sims = torch.einsum("qcd,qd->qc", xh[cand.clamp(min=0)],
                                    q.to(xh.dtype)).float()
                sims[cand < 0] = -math.inf
                return torch.gather(cand, 1, torch.topk(sims, K, dim=1).indices)

            secs, ids = timed(run, a.device)
            grid.append({"nprobe": nprobe, "rerank": rerank, "qps": round(len(q) / secs, 1),
                         "recall_at_10": recall(ids, truth)})
    ok = [g for g in grid if g["recall_at_10"] >= 0.95]
    best = max(ok, key=lambda g: g["qps"]) if ok else None
    return {"nlist": nlist, "m": m, "nbits": a.pq_bits, "on_gpu": use_gpu,
            "train_s": round(train_s, 1), "build_s": round(build_s, 1), "batch": len(q),
            "grid": grid, "best_at_recall_0.95": best,
            "goal_100k_qps": bool(best and best["qps"] >= 100_000)}


def stage_encoder(a: argparse.Namespace, ctx: dict) -> dict:
    from PIL import Image

    from benchmarks.embed_throughput import bare_throughput, pipeline_throughput
    from mmsearch.encoders.registry import load_encoder

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(a.images):
            small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((640, 480), Image.Resampling.BILINEAR)
            img.save(folder / f"img{i:05d}.jpg", quality=90)
        files = sorted(folder.glob("*.jpg"))
        encoder = load_encoder(a.encoder, device=a.device)
        bare = bare_throughput(encoder, files, a.encode_batch)
        pipe = pipeline_throughput(a.encoder, folder, a.encode_batch, a.device)
        dtype = str(next(encoder.image_tower.parameters()).dtype) if hasattr(
            encoder, "image_tower") else None
    return {"model": a.encoder, "images": a.images, "batch": a.encode_batch, "dtype": dtype,
            "bare_images_per_s": round(bare, 1), "pipeline_images_per_s": round(pipe, 1),
            "pipeline_over_bare": round(pipe / bare, 3)}


def stage_rerank(a: argparse.Namespace, ctx: dict) -> dict:
    from PIL import Image

    from benchmarks.rerank_cost import random_base_reranker
    from mmsearch.rerank.blip import BlipReranker

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_blip import make_tiny_blip

    if a.blip == "tiny":  # the test suite's tiny random BLIP: the code path, not the cost
        reranker = BlipReranker.load(str(make_tiny_blip(Path(tempfile.mkdtemp()))), a.device)
    else:
        reranker = random_base_reranker(a.device, a.rerank_batch)
    model = reranker.model
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (288, 384, 3), dtype=np.uint8))
              for _ in range(a.candidates)]
    text = "a man in a red hat on the beach with a dog"
    secs, _ = timed(lambda: reranker.score(text, images), a.device, repeat=2)
    return {"architecture": a.blip, "params_m": round(sum(p.numel() for p in
                                                          model.parameters()) / 1e6, 1),
            "candidates": a.candidates, "batch": a.rerank_batch,
            "ms_per_candidate": round(secs * 1000 / len(images), 2)}


STAGES = {"env": stage_env, "check": stage_check, "data": stage_data, "exact": stage_exact,
          "ivfpq": stage_ivfpq, "encoder": stage_encoder, "rerank": stage_rerank}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--nprobes", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--reranks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--pq-m", type=int, default=64, help="PQ sub-quantizers (IVF-PQ stage)")
    ap.add_argument("--pq-bits", type=int, default=8)
    ap.add_argument("--check-n", type=int, default=100_000)
    ap.add_argument("--check-dim", type=int, default=128)
    ap.add_argument("--encoder", default="lite", help="model spec for the encoder stage")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--encode-batch", type=int, default=64)
    ap.add_argument("--blip", choices=["base", "tiny"], default="base")
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--rerank-batch", type=int, default=32)
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gpu_suite.json")
    a = ap.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "args": {k: str(v) for k, v in vars(a).items()}}
    ctx: dict[str, Any] = {}
    start = time.perf_counter()
    for name in ["env", *[s for s in a.stages if s != "env"]]:
        t = time.perf_counter()
        try:
            result[name] = ctx[name] = STAGES[name](a, ctx)
        except Exception as e:  # one stage failing must not lose the others' numbers
            result[name] = ctx[name] = {"error": f"{type(e).__name__}: {e}",
                                        "trace": traceback.format_exc(limit=3)}
        result[name]["stage_s"] = round(time.perf_counter() - t, 1)
        result["total_s"] = round(time.perf_counter() - start, 1)
        a.out.write_text(json.dumps(result, indent=1, default=str))
        print(f"[{result['total_s']:7.1f}s] {name}: "
              f"{json.dumps({k: v for k, v in result[name].items() if k != 'grid'})[:400]}",
              flush=True)
    return result


if __name__ == "__main__":
    main()
