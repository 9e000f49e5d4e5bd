"""Markdown tables from benchmarks/ann_results.json (for the ANN section of RESULTS.md).

    python benchmarks/ann_report.py [benchmarks/ann_results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def size_tables(res: dict) -> str:
    f = res["flat"]
    out = [f"### {res['n']:,} × {res['dim']}", "",
           "| method | recall@10 | QPS batch 1 | QPS batch 1024 | p50 ms | p99 ms | "
           "RAM B/vector | build |", "|---|---|---|---|---|---|---|---|",
           f"| FAISS flat (exact) | 1.000 | {fmt(f['qps_b1'])} | {fmt(f['qps_b1024'])} | "
           f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f} | 2048 | – |"]
    for r in res["ours"]:
        name = f"mmsearch nprobe {r['nprobe']}" + (" (default)" if r["default"] else "")
        build = (f"{res['build_s']} s (train {res.get('train_s', '?')} s)"
                 if r["default"] else "")
        cells = [name, f"{r['recall']:.4f}", fmt(r["qps_b1"]), fmt(r["qps_b1024"]),
                 f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['bytes_per_vector']:.0f}",
                 build]
        if r["default"]:
            cells = [f"**{c}**" if c else c for c in cells]
        out.append("| " + " | ".join(cells) + " |")
    for r in res.get("usearch", []):
        out.append(f"| usearch HNSW f16, ef {r['ef']} | {r['recall']:.4f} | {fmt(r['qps_b1'])} | "
                   f"{fmt(r['qps_b1024'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                   f"{r['bytes_per_vector']:.0f} | {r['build_s']} s |")
    s = res["speedup"]
    out += ["", "Speed-up over exact flat at the defaults, interleaved rounds (median, min–max; "
            "every round):", "",
            "| | median | min–max | rounds | flat QPS | mmsearch QPS |",
            "|---|---|---|---|---|---|"]
    for kind, label in (("batch", "batch 1024"), ("single", "batch 1")):
        v = s[kind]
        out.append(f"| {label} | **{v['ratio_median']}×** | {v['ratio_min']}–{v['ratio_max']}× | "
                   f"{', '.join(map(str, v['ratios']))} | {fmt(v['base_qps'])} | "
                   f"{fmt(v['fast_qps'])} |")
    api = res["api_default"]
    out += ["", f"Through the public API (`col.search(vector=..., k=10)`): p50 {api['p50_ms']} ms, "
            f"p99 {api['p99_ms']} ms."]
    out += ["", "Filter plans, each query run with both back to back (every (1/s)-th row "
            "allowed; recall against exact search among the allowed rows):", "",
            "| share | rows | exact: recall | exact: p50 ms | bitmap: recall | bitmap: p50 ms |",
            "|---|---|---|---|---|---|"]
    for r in res.get("filter_plans", []):
        e, b = r["exact"], r["bitmap"]
        out.append(f"| {r['share'] * 100:g}% | {r['rows']:,} | {e['recall']:.3f} | "
                   f"{e['p50_ms']} | {b['recall']:.3f} | {b['p50_ms']} |")
    out += ["", "Filtered search at the defaults (`bucket < s` through DuckDB, 100 queries):", "",
            "| selectivity | rows | plan | recall@10 | k results always | p50 ms | p99 ms | "
            "DuckDB ms |", "|---|---|---|---|---|---|---|---|"]
    for r in res["filtered"]:
        out.append(f"| {r['selectivity_pct']}% | {r['rows']:,} | {r['plan']} | "
                   f"{r['recall']:.3f} | {'yes' if r['full_k'] else 'NO'} | {r['p50_ms']:.2f} | "
                   f"{r['p99_ms']:.2f} | {r['sql_ms']} |")
    return "\n".join(out)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name(
        "ann_results.json")
    meta = json.loads(path.read_text())
    print(f"<!-- {meta['command']}; {meta['seconds']} s; load average at the end "
          f"{', '.join(f'{x:.1f}' for x in meta['load_avg_end'])} -->\n")
    for res in sorted(meta["results"], key=lambda r: -r["n"]):
        print(size_tables(res) + "\n")


if __name__ == "__main__":
    main()
