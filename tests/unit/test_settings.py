"""One settings object: every MMSEARCH_* variable the code reads is in it, read when used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmsearch import config
from mmsearch.errors import UsageError
from mmsearch.index import AnnParams
from mmsearch.ingest.video import VideoOptions
from mmsearch.limits import Limits
from mmsearch.settings import VARIABLES, Settings, fields_from_settings, settings

PACKAGE = Path(__file__).resolve().parents[2] / "mmsearch"


def test_every_variable_in_the_code_is_in_the_table_and_the_readme():
    used = set()
    for path in PACKAGE.rglob("*.py"):
        used |= set(re.findall(r"MMSEARCH_[A-Z_]+[A-Z]", path.read_text()))
    used = {"MMSEARCH_ANN_<FIELD>" if u.startswith("MMSEARCH_ANN") else
            "MMSEARCH_LIMIT_<NAME>" if u.startswith("MMSEARCH_LIMIT") else u for u in used}
    names = {v.name for v in VARIABLES}
    assert used <= names, used - names
    readme = (PACKAGE.parent / "README.md").read_text()
    assert all(f"`{n}`" in readme for n in names), [n for n in names if f"`{n}`" not in readme]


def test_settings_are_read_when_used_not_at_import(monkeypatch, tmp_path):
    monkeypatch.setenv("MMSEARCH_COMMIT_EVERY", "7")
    monkeypatch.setenv("MMSEARCH_VIDEO_TIME_LIMIT", "3.5")
    monkeypatch.setenv("MMSEARCH_STORE", str(tmp_path / "s"))
    monkeypatch.setenv("MMSEARCH_ANN_THRESHOLD", "123")
    monkeypatch.setenv("MMSEARCH_RERANKER", "lite")
    assert config.commit_every() == 7 and config.commit_every(3) == 3
    assert VideoOptions().time_limit == 3.5
    assert config.store_path() == tmp_path / "s"
    assert AnnParams.resolve().threshold == 123
    assert config.reranker_spec() == "lite" and config.reranker_spec("blip") == "blip"
    monkeypatch.delenv("MMSEARCH_COMMIT_EVERY")
    assert settings().commit_every == 512


def test_bad_values_are_named_and_shared_can_be_hidden(tmp_path):
    with pytest.raises(UsageError, match="MMSEARCH_COMMIT_EVERY"):
        Settings.from_env({"MMSEARCH_COMMIT_EVERY": "many"})
    with pytest.raises(UsageError, match="positive"):
        Settings.from_env({"MMSEARCH_VIDEO_TIME_LIMIT": "-1"})
    (tmp_path / "models" / "yamnet").mkdir(parents=True)
    assert Settings.from_env({"MMSEARCH_SHARED": str(tmp_path)}).shared_models("yamnet") == \
        tmp_path / "models" / "yamnet"
    assert Settings.from_env({"MMSEARCH_SHARED": "none"}).shared_models("yamnet") is None



def test_dataclass_settings_read_their_prefix_then_overrides():
    env = {"MMSEARCH_ANN_NPROBE": "32", "MMSEARCH_ANN_GPU": "auto", "MMSEARCH_ANN_M": ""}
    params = fields_from_settings(AnnParams, "MMSEARCH_ANN_", {"nlist": 64}, "index", env)
    assert (params.nprobe, params.gpu, params.nlist) == (32, None, 64)
    assert params.m == AnnParams().m  # an empty variable is unset
    limits = fields_from_settings(Limits, "MMSEARCH_LIMIT_", None, "limit(s)",
                                  {"MMSEARCH_LIMIT_MAX_TEXT_CHARS": "4e3"})
    assert limits.max_text_chars == 4000
    with pytest.raises(UsageError, match="MMSEARCH_LIMIT_MAX_IN_VALUES='many'"):
        fields_from_settings(Limits, "MMSEARCH_LIMIT_", None, "limit(s)",
                             {"MMSEARCH_LIMIT_MAX_IN_VALUES": "many"})
    with pytest.raises(UsageError, match="unknown limit"):
        fields_from_settings(Limits, "MMSEARCH_LIMIT_", {"max_nothing": 1}, "limit(s)", {})
