"""Average the weights of several mmsearch-lite heads trained from the same start (a
"model soup"): same config, tensors averaged one by one, written as float16 safetensors.

    python training/average_heads.py A.safetensors B.safetensors --out SOUP.safetensors

Score the result on val with ``train_lite_heads.py --epochs 0 --init SOUP.safetensors``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mmsearch.encoders.lite import LiteHeads


def average(paths: list[Path]) -> LiteHeads:
    """The heads of the first file with every tensor replaced by the mean over all files."""
    heads = [LiteHeads.load(p) for p in paths]
    first = heads[0]
    for h, p in zip(heads[1:], paths[1:], strict=True):
        same = {**h.config, "spec": ""} == {**first.config, "spec": ""}
        if not same or set(h.tower_state) != set(first.tower_state):
            raise SystemExit(f"{p} has another config than {paths[0]}: cannot average")
    state = {k: torch.stack([h.state_dict()[k] for h in heads]).mean(dim=0)
             for k in first.state_dict()}
    first.load_state_dict(state)
    first.tower_state = {k: torch.stack([h.tower_state[k] for h in heads]).mean(dim=0)
                         for k in first.tower_state}
    return first


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("heads", type=Path, nargs="+", help="heads files to average")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    from train_lite_heads import head_metadata

    records = [head_metadata(p).get("trained_on") for p in args.heads]
    average(args.heads).save(args.out, extra={"averaged": [p.name for p in args.heads],
                                              "trained_on": {"each": records}})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
