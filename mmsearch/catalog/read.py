"""Read a catalog file into an Arrow table, keeping the column types."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from mmsearch.errors import UsageError

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
            ".jsonl": "jsonl", ".ndjson": "jsonl"}


def is_catalog(path: str | os.PathLike[str]) -> bool:
    """True for a file whose suffix names a catalog format."""
    return Path(path).suffix.lower() in SUFFIXES


def read_catalog(path: str | os.PathLike[str]) -> pa.Table:
    """The rows of a CSV/TSV, Parquet or JSON Lines file, types inferred (or kept)."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: not a catalog file (use one of {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise UsageError(f"no such catalog file: {path}")
    try:
        if kind in ("csv", "tsv"):
            from pyarrow import csv

            parse = csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",",
                                     newlines_in_values=True)
            return csv.read_csv(path, parse_options=parse)
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        from pyarrow import json

        return json.read_json(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise UsageError(f"cannot read catalog {path}: {str(e).splitlines()[0]}") from None
