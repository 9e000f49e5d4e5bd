"""Schemathesis over the whole HTTP API: N generated requests per operation, from the
service's own OpenAPI schema; counts server errors and schema violations.

    python benchmarks/fuzz.py [--examples 400] [--json out.json]

Runs tests/e2e/test_fuzz.py with MMSEARCH_FUZZ_EXAMPLES set: per operation (9) and mode
(requests that fit the schema, and requests that violate it) at most that many requests
(Hypothesis stops early for operations with few distinct inputs); prints the tally:
requests per mode, operation and status code, server errors, failures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report = Path(tempfile.mkdtemp()) / "fuzz.json"
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/e2e/test_fuzz.py"], cwd=REPO,
                          env={**os.environ, "MMSEARCH_FUZZ_EXAMPLES": str(args.examples),
                               "MMSEARCH_FUZZ_REPORT": str(report)})
    tally = json.loads(report.read_text()) if report.exists() else {}
    tally.update(seconds=round(time.time() - started), examples=args.examples,
                 load_average=os.getloadavg(), pytest_exit=proc.returncode)
    print(json.dumps(tally, indent=1))
    if args.json:
        args.json.write_text(json.dumps(tally, indent=1))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
