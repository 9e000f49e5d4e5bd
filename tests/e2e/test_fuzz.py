"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (Schemathesis): no
server error, every answer's status code, content type and body as the schema declares.

A bounded number of examples per operation here (MMSEARCH_FUZZ_EXAMPLES, default 12);
benchmarks/fuzz.py runs the long campaign (>= 5,000 requests).
"""

from __future__ import annotations

import collections
import itertools
import json
import os

import numpy as np
import pytest
from helpers import make_photo

pytest.importorskip("schemathesis", reason="the `dev` extra is not installed")
pytest.importorskip("fastapi", reason="the `serve` extra is not installed")
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import mmsearch
from mmsearch.serve import Limits, create_app

EXAMPLES = int(os.environ.get("MMSEARCH_FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, tiny_spec):
    root = tmp_path_factory.mktemp("fuzz")
    for i in range(3):
        make_photo(root / "pics" / f"p{i}.jpg", seed=400 + i, size=(64, 48))
    col = mmsearch.open(root / "store", model=tiny_spec)
    col.index([root / "pics"], progress=False)
    rng = np.random.default_rng(0)
    col.upsert([{"id": f"r{i}", "vector": rng.normal(size=col.encoder.dim).tolist(),
                 "price": float(i), "brand": "acme"} for i in range(5)])
    app = create_app(col, limits=Limits(max_k=100, max_records=50, max_body_bytes=200_000,
                                        max_image_bytes=100_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def fuzz(schema, examples: int, tally: collections.Counter[str]) -> list[str]:
    """Send `examples` generated requests per operation and mode (requests that fit the
    schema, and requests that violate it); returns the failures found."""
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    for mode, operation in itertools.product(GenerationMode, operations):
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception as e:  # an operation with nothing to make invalid
            tally[f"skipped {mode.value} {operation.label}: {type(e).__name__}"] += 1
            continue

        @given(case=strategy)
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(case) -> None:
            response = case.call()
            tally["requests"] += 1
            kind = mode.value  # noqa: B023 - run() is called within this iteration
            tally[f"{kind} {case.method} {case.path} {response.status_code}"] += 1
            if response.status_code >= 500:
                tally["server_errors"] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except AssertionError as e:  # schemathesis's failure group: keep going
                failures.append(f"{case.method} {case.path}: {str(e)[:800]}")

        try:
            run()
        except Unsatisfiable:  # nothing in the request can violate the schema (/health)
            tally[f"nothing to vary: {mode.value} {operation.label}"] += 1
    return failures


def test_api_never_fails_and_answers_as_declared(api_schema):
    tally: collections.Counter[str] = collections.Counter()
    failures = fuzz(api_schema, EXAMPLES, tally)
    report = os.environ.get("MMSEARCH_FUZZ_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump({"failures": failures, **tally}, f, indent=1, sort_keys=True)
    assert tally["requests"] >= 10 * EXAMPLES
    assert not failures, "\n".join(failures[:5])
    assert tally["server_errors"] == 0
