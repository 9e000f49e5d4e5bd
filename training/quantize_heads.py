"""Store a heads file's large weight matrices as int8 rows (one float16 scale per row), or
chosen ones as 4-bit groups (one float16 scale per 32 values of a row).

    python training/quantize_heads.py IN.safetensors OUT.safetensors [--min-size 65536] \\
        [--int4 tower.text.encoder.layer.4.]

Readers rebuild them (`mmsearch.encoders.lite_files.dequantized`). Used for heads files
that carry retrained tower layers, to keep the package's files small; score the result on
val (`train_lite_heads.py --epochs 0 --init OUT`) before shipping it.
"""

from __future__ import annotations

import argparse

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from mmsearch.encoders.lite_files import (
    GROUP4,
    INT4,
    INT8,
    SCALE,
    SCALE4,
    quantize_groups4,
    quantize_rows,
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--min-size", type=int, default=65536, help="smallest matrix quantised")
    ap.add_argument("--int4", action="append", default=[], metavar="PREFIX",
                    help="matrices whose names start with PREFIX go to 4 bits (repeatable)")
    args = ap.parse_args(argv)
    out: dict[str, np.ndarray] = {}
    with safe_open(args.src, framework="numpy") as f:
        meta = f.metadata() or {}
        for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            w = f.get_tensor(name)
            big = w.ndim == 2 and w.size >= args.min_size \
                and not name.endswith((INT8, SCALE, INT4, SCALE4))
            if big and name.startswith(tuple(args.int4)) and w.shape[1] % (2 * GROUP4) == 0:
                out[name + INT4], out[name + SCALE4] = quantize_groups4(w)
            elif big:
                out[name + INT8], out[name + SCALE] = quantize_rows(w)
            else:
                out[name] = w
    save_file(out, args.dst, metadata=meta)


if __name__ == "__main__":
    main()
