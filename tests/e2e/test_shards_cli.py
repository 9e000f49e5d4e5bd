"""`--shards N` on the CLI: index, query, info and remove on a sharded store give what
the same commands give on one store."""

from __future__ import annotations

import json
from pathlib import Path


def _json(cli, *args) -> list[dict]:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_sharded_store_from_the_cli_answers_like_one_store(cli, photos, tmp_path, tiny_spec):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    for store, extra in ((single, []), (sharded, ["--shards", "3"])):
        result = cli("index", photos, "--store", store, "--model", tiny_spec, *extra)
        assert result.exit_code == 0, result.stderr
        assert "8 added" in result.stderr
    assert (sharded / "shards.json").is_file()
    for args in (["a red mug"], ["dog", "-k", "3", "--offset", "2"],
                 ["photo", "--where", "width >= 200"]):
        a = _json(cli, "query", *args, "--store", single)
        b = _json(cli, "query", *args, "--store", sharded)
        assert [h["id"] for h in a] == [h["id"] for h in b] and a
        assert all(abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(a, b, strict=True))
    info = json.loads(cli("info", "--store", sharded, "--json").stdout)
    assert info["items"] == 8 and len(info["shards"]) == 3
    assert sum(s["items"] for s in info["shards"]) == 8
    text = cli("info", "--store", sharded).stdout
    assert "shards     shard-000" in text and "8 image" in text
    again = cli("index", photos, "--store", sharded)
    assert again.exit_code == 0 and "8 unchanged" in again.stderr
    assert cli("remove", photos / "sub", "--store", sharded).exit_code == 0
    assert len(_json(cli, "query", "x", "-k", "100", "--store", sharded)) == 5


def test_shard_count_mismatch_is_a_usage_error(cli, photos, tmp_path, tiny_spec):
    store = tmp_path / "s"
    assert cli("index", photos, "--store", store, "--model", tiny_spec,
               "--shards", "2").exit_code == 0
    result = cli("index", photos, "--store", store, "--shards", "4")
    assert result.exit_code == 2 and "has 2 shards, not 4" in result.stderr
    single = tmp_path / "single"
    assert cli("index", photos / "sub", "--store", single, "--model", tiny_spec).exit_code == 0
    result = cli("query", "x", "--store", single, "--shards", "2")
    assert result.exit_code == 2 and "single" in result.stderr
    assert not Path(single / "shards.json").exists()
