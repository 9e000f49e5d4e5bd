"""One query model: every search option through the library, the CLI (`--json`, by flags
and by `--request`) and HTTP on the same store gives the same ids and scores; HTTP rerank
works with the offline `lite` reranker and with a tiny random BLIP."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import SHARED_MODELS, make_photo
from tiny_blip import make_tiny_blip

pytest.importorskip("fastapi", reason="the `serve` extra is not installed")
from fastapi.testclient import TestClient

import mmsearch
from mmsearch.request import SearchRequest
from mmsearch.serve import create_app

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio" / "kitchen.flac"
YAMNET = SHARED_MODELS / "yamnet"
HAVE_YAMNET = (YAMNET / "yamnet.fp16.safetensors").is_file()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_spec):
    """A store with products (photo + title rows, price, colour), photos and, when YAMNet
    weights are at hand, a tagged sound; the library collection and an HTTP client."""
    root = tmp_path_factory.mktemp("entry")
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    if HAVE_YAMNET:
        mp.setenv("MMSEARCH_YAMNET", str(YAMNET))
    lines = ["id,image,title,price,colour"]
    for i in range(8):
        make_photo(root / "img" / f"p{i}.jpg", seed=300 + i, size=(120, 90))
        lines.append(f"p{i},img/p{i}.jpg,Product {i} {'red' if i % 2 else 'blue'} shoe,"
                     f"{10 * i},{'red' if i % 2 else 'blue'}")
    (root / "cat.csv").write_text("\n".join(lines) + "\n")
    for i in range(3):
        make_photo(root / "photos" / f"f{i}.png", seed=400 + i, size=(100, 80))
    col = mmsearch.open(root / "store", model=tiny_spec)
    col.index_catalog(root / "cat.csv", image_col="image", text_cols=["title"])
    col.index([root / "photos"], progress=False, tags=False, speech=False)
    if HAVE_YAMNET:
        (root / "sound").mkdir()
        (root / "sound" / AUDIO.name).write_bytes(AUDIO.read_bytes())
        col.index([root / "sound"], progress=False, tags=True, speech=False)
    blip = make_tiny_blip(root / "blip")
    yield root, col, TestClient(create_app(col)), blip
    col.close()
    mp.undo()


def _cases(root: Path, col: mmsearch.Collection, blip: Path) -> list[dict[str, Any]]:
    vector = col.snapshot().vectors.take(np.array([3]))[0]
    cases: list[dict[str, Any]] = [
        {"text": "Product"},
        {"text": [{"text": "red shoe", "weight": 2.0}, {"text": "Product 3", "weight": 1.0}],
         "negative": ["blue"], "k": 5},
        {"text": "Product shoe -blue", "k": 3, "offset": 2},
        {"vector": [float(x) for x in vector], "k": 4, "filters": {"price": {"gte": 20}}},
        {"image": str(root / "img" / "p2.jpg"), "k": 3, "modality": ["image"]},
        {"text": "shoe", "weights": {"visual": 1.0, "text": 0.5}, "fusion": "rrf", "k": 6},
        {"text": "Product", "min_score": -5.0, "sort": "-price", "explain": True, "k": 5},
        {"text": "red shoe", "rerank": 3, "reranker": "lite", "k": 4},
        {"text": "red shoe", "rerank": 2, "reranker": f"blip:{blip}", "k": 4},
    ]
    if HAVE_YAMNET:
        cases.append({"audio": str(root / "sound" / AUDIO.name), "k": 3})
    return cases


def _flags(case: dict[str, Any]) -> list[str] | None:
    """The CLI flags for a request (None: weighted texts, which only `--request` states)."""
    args: list[str] = []
    text = case.get("text")
    if isinstance(text, list):
        return None
    if text is not None:
        args.append(text)
    for name, flag in (("image", "--image"), ("audio", "--audio"), ("k", "-k"),
                       ("offset", "--offset"), ("fusion", "--fusion"), ("sort", "--sort"),
                       ("min_score", "--min-score"), ("rerank", "--rerank"),
                       ("reranker", "--reranker"), ("where", "--where")):
        if name in case:
            args += [flag, str(case[name])]
    for neg in case.get("negative", []):
        args += ["--not", neg]
    for channel, w in case.get("weights", {}).items():
        args += ["--weight", f"{channel}={w}"]
    if "modality" in case:
        args += ["--modality", ",".join(case["modality"])]
    if "vector" in case:
        args += ["--vector", ",".join(repr(x) for x in case["vector"])]
    if "filters" in case:
        args += ["--filters", json.dumps(case["filters"])]
    if case.get("explain"):
        args.append("--explain")
    return args


def _body(case: dict[str, Any]) -> dict[str, Any]:
    body = dict(case)
    for name in ("image", "audio"):
        if name in body:
            body[name] = base64.b64encode(Path(body[name]).read_bytes()).decode()
    return body


def _pairs(results: list[dict[str, Any]]) -> list[tuple[str, float]]:
    # 5 decimals: a reranker's float arithmetic may differ in the 7th between model loads
    return [(r["id"], round(r["score"], 5)) for r in results]


def _cli_results(cli, store: Path, args: list[str]) -> list[dict[str, Any]]:
    out = cli("query", *args, "--store", store, "--json")
    assert out.exit_code == 0, out.output
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_every_option_gives_the_same_hits_in_library_cli_and_http(world, cli, tmp_path):
    root, col, client, blip = world
    store = root / "store"
    for n, case in enumerate(_cases(root, col, blip)):
        library = _pairs([h.to_dict() for h in col.search(**case)])
        assert library, case
        # the request object round-trips through plain data and replays the same
        request = SearchRequest.build(**case)
        replayed = SearchRequest.from_dict(json.loads(json.dumps(request.to_dict())))
        assert replayed == request
        assert _pairs([h.to_dict() for h in col.search(replayed)]) == library, case
        # CLI: the flags, and the whole request from a file
        flags = _flags(case)
        if flags is not None:
            assert _pairs(_cli_results(cli, store, flags)) == library, case
        saved = tmp_path / f"request{n}.json"
        saved.write_text(json.dumps(request.to_dict()))
        assert _pairs(_cli_results(cli, store, ["--request", saved])) == library, case
        # HTTP: the same options as the JSON body
        res = client.post("/search", json=_body(case))
        assert res.status_code == 200, (case, res.text)
        assert _pairs(res.json()["results"]) == library, case
        if case.get("rerank"):
            top = res.json()["results"][: case["rerank"]]
            assert any("rerank" in (h.get("explain") or {}) for h in top) or not case.get(
                "explain")


def test_http_rerank_marks_reranked_hits_with_lite_and_tiny_blip(world):
    _, _, client, blip = world
    for spec in ("lite", f"blip:{blip}"):
        res = client.post("/search", json={"text": "red shoe", "k": 4, "rerank": 3,
                                           "reranker": spec, "explain": True})
        assert res.status_code == 200, res.text
        models = {h["explain"]["rerank"]["model"] for h in res.json()["results"]
                  if "prob" in h["explain"].get("rerank", {})}
        assert models == {spec}


def test_where_is_library_and_cli_only(world, cli):
    root, col, client, _ = world
    case = {"text": "Product", "where": "price < 40", "k": 8}
    library = _pairs([h.to_dict() for h in col.search(**case)])
    assert library and len(library) == 4  # p0..p3
    assert _pairs(_cli_results(cli, root / "store", _flags(case))) == library
    res = client.post("/search", json=case)
    assert res.status_code == 422 and "where" in res.text


def test_bad_options_are_named_the_same_way_everywhere(world, cli):
    root, col, client, _ = world
    with pytest.raises(mmsearch.UsageError, match="k: Input should be less than or equal"):
        col.search(text="x", k=10**9)
    with pytest.raises(mmsearch.UsageError, match="fusion"):
        col.search(text="x", fusion="max")
    with pytest.raises(mmsearch.UsageError, match="no such search option"):
        col.search(text="x", colour="red")
    out = cli("query", "x", "--store", root / "store", "--fusion", "max")
    assert out.exit_code == 2 and "fusion" in out.output
    res = client.post("/search", json={"text": "x", "fusion": "max"})
    assert res.status_code == 422 and "fusion" in res.text
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SearchBody"]
    props = schema["properties"]
    expected = {"text", "negative", "image", "audio", "vector", "k", "offset", "filters",
                "modality", "weights", "fusion", "min_score", "sort", "explain", "rerank",
                "reranker", "facets"}
    assert expected <= set(props) and "where" not in props
    assert props["k"]["maximum"] == mmsearch.request.MAX_K and props["k"]["minimum"] == 1
    assert props["rerank"]["maximum"] == mmsearch.request.MAX_RERANK
    assert props["vector"]["anyOf"][0]["maxItems"] == mmsearch.request.MAX_VECTOR_DIM
