"""Joining or starting a Ray cluster (Ray is the optional extra `mmsearch[ray]`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmsearch.errors import UsageError

#: CPUs a `local` cluster gets (None: all of this machine's).
LOCAL_CPUS_ENV = "MMSEARCH_RAY_CPUS"


def ray_module() -> Any:
    """The `ray` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError("Ray is not installed: pip install 'mmsearch[ray]'") from None
    return ray


def connect(address: str) -> Any:
    """Make sure this process is connected to a Ray cluster; returns the `ray` module.

    `address`: "local" starts a cluster inside this process (tests, laptops), "auto" joins
    the cluster running on this machine (`ray start --head`), anything else is a Ray
    address ("ray://head:10001", "10.0.0.5:6379"). Already connected: kept as is.
    """
    ray = ray_module()
    if not isinstance(address, str) or not address.strip():
        raise UsageError("--ray needs local, auto or a Ray address")
    if ray.is_initialized():
        return ray
    # workers import this very mmsearch (a checkout or an install), not another copy
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    try:
        if address == "local":
            cpus = os.environ.get(LOCAL_CPUS_ENV)
            ray.init(num_cpus=int(cpus) if cpus else None, include_dashboard=False,
                     runtime_env=runtime_env, logging_level="WARNING", log_to_driver=False)
        else:
            ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING")
    except ConnectionError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address!r}: {e}") from None
    return ray
