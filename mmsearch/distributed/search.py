"""Sharded search on Ray: one actor per shard, the query embedded once on the driver.

`RayCollection` is a `ShardedCollection` whose per-shard search steps run on
`ShardServer` actors (restarted by Ray when they die); the driver merges their answers
exactly as the in-process path does. A shard that fails or does not answer within
`timeout` seconds is left out and named: the results come back with `partial=True` and
`missing=[shard names]`. Writes go through the driver (the store's commit protocol, on
storage the actors read); the actors follow the new generations by themselves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mmsearch.distributed.cluster import connect
from mmsearch.distributed.ingest import RayIndexer
from mmsearch.distributed.shard_actor import ShardServer
from mmsearch.distributed.writer_actor import (
    DRILL_EXIT_AFTER_COMMIT,
    RemoteShardStore,
    ShardWriter,
)
from mmsearch.errors import MmsearchError
from mmsearch.index.params import AnnParams
from mmsearch.indexer import Indexer
from mmsearch.planner.calibration import Calibration
from mmsearch.planner.plan import Hit
from mmsearch.planner.query import Query
from mmsearch.settings import settings
from mmsearch.shards.collection import SearchResults, ShardedCollection
from mmsearch.shards.search import ShardHits, merge

#: Seconds a search waits for the shards (MMSEARCH_RAY_TIMEOUT).
DEFAULT_TIMEOUT = 30.0
#: Seconds the shard actors may take to start and load their shard.
START_TIMEOUT = 600.0


class RayCollection(ShardedCollection):
    """A sharded collection searched by Ray actors (see the module docstring).

    Args:
        address: "local", "auto" or a Ray address (see `cluster.connect`).
        timeout: seconds a search waits for every shard before answering without the late
            ones (default $MMSEARCH_RAY_TIMEOUT, else 30).
        actor_options: extra `ray.remote` options of the shard actors (e.g. `{"num_cpus":
            4, "memory": 8e9}`); by default they reserve no CPU and spread over the nodes.
        Others: as `ShardedCollection`.
    """

    def __init__(self, path: str | os.PathLike[str], model: str | None = None,
                 device: str | None = None,
                 index_params: AnnParams | Mapping[str, Any] | None = None,
                 shards: int | None = None, *, address: str = "local",
                 timeout: float | None = None,
                 actor_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(path, model=model, device=device, index_params=index_params,
                         shards=shards)
        self.address = address
        self.timeout = float(timeout if timeout is not None else settings().ray_timeout)
        self._ray = connect(address)
        self._index_params = (index_params.__dict__ if isinstance(index_params, AnnParams)
                              else dict(index_params or {}))
        self._actor_options = {"num_cpus": 0, "scheduling_strategy": "SPREAD",
                               "max_restarts": -1, "max_task_retries": 0,
                               **(actor_options or {})}
        self._actors: list[Any] | None = None
        self.start_timeout = START_TIMEOUT
        self._restarting: set[int] = set()
        #: encoder actors of `index` (None: one per GPU, else 2)
        self.encoder_actors: int | None = None

    @property
    def actors(self) -> list[Any]:
        """The shard actors (started on first use, once the store exists)."""
        if self._actors is None:
            remote = self._ray.remote(ShardServer).options(**self._actor_options)
            actors = [remote.remote(str(shard.path), s, self._index_params)
                      for s, shard in enumerate(self.shards)]
            try:  # loaded before the first query's clock starts
                self._ray.get([a.generation.remote() for a in actors],
                              timeout=self.start_timeout)
            except self._ray.exceptions.GetTimeoutError:
                raise MmsearchError(f"the shard actors did not start within "
                                    f"{self.start_timeout:g} s") from None
            self._actors = actors
        return self._actors

    def _run(self, query: Query, texts: list[str], where: tuple[str | None, list[Any]],
             filters: None, pool: int,
             rerank_fn: Callable[[list[Hit], Any], list[Hit]] | None) -> SearchResults:
        ray = self._ray
        stored = Calibration.from_json(self._manifest().get("calibration"))
        if not stored.rows and not any(shard.path.exists() for shard in self.shards):
            return SearchResults()
        names = set(stored.channels) if stored.rows else \
            {c for s in self.shards for c in _channel_names(s)}
        calibration = self._calibration(query, names,
                                        lambda: [s.snapshot() for s in self.shards])
        condition, params = where  # the request's SQL condition and its parameters
        self._await_restarts()
        refs = [actor.search.remote(query, calibration.to_json(), condition, params, pool,
                                    texts) for actor in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.timeout)
        done = set(ready)
        parts: list[ShardHits] = []
        missing: list[str] = []
        for s, ref in enumerate(refs):
            answer = _get(ray, ref) if ref in done else None
            if isinstance(answer, MmsearchError):
                raise answer
            if answer is None:
                missing.append(self.shard_names[s])
                if ref in done:  # it failed (died): Ray is restarting it
                    self._restarting.add(s)
            else:
                parts.append(answer)
        generations = {p.shard: p.generation for p in parts}

        def fetch(pairs: list[tuple[int, int]]) -> list[dict[str, Any]]:
            by_shard: dict[int, list[int]] = {}
            for s, r in pairs:
                by_shard.setdefault(s, []).append(r)
            refs = {s: self.actors[s].records.remote(generations[s], rows)
                    for s, rows in by_shard.items()}
            got = {s: iter(ray.get(ref, timeout=self.timeout)) for s, ref in refs.items()}
            return [next(got[s]) for s, _ in pairs]

        merged = merge(parts, query, pool, fetch, rerank_fn)
        return SearchResults(self._results(merged, fetch(merged.origin), query.explain,
                                           texts), missing)

    def _indexer(self, *args: Any, **kwargs: Any) -> Indexer:
        """Decoding and embedding on a Ray Data encoder actor pool (see `ingest.py`)."""
        return RayIndexer(*args, ray=self._ray, actors=self.encoder_actors, **kwargs)

    @contextmanager
    def _shard_writers(self) -> Iterator[list[Any]]:
        """One `ShardWriter` actor per shard for an index run (holding its write lock);
        Ray restarts a writer that dies and retries its commit."""
        remote = self._ray.remote(ShardWriter).options(
            num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy="SPREAD")
        drill = os.environ.get(DRILL_EXIT_AFTER_COMMIT)
        actors = [remote.remote(str(shard.path), self._index_params, drill)
                  for shard in self.shards]
        try:
            yield [RemoteShardStore(self._ray, actor, shard.path)
                   for actor, shard in zip(actors, self.shards, strict=True)]
        finally:
            for actor in actors:
                self._ray.kill(actor, no_restart=True)

    def _after_shard_writes(self, stores: list[Any]) -> None:
        """Each writer updates its shard's vector index (in parallel) and lets go."""
        self._ray.get([store.actor.finish.remote() for store in stores])

    def _await_restarts(self) -> None:
        """Shards whose actor died in an earlier search are being restarted by Ray: wait
        for them (up to `start_timeout`) so that this search is whole again."""
        deadline = time.monotonic() + self.start_timeout
        while self._restarting and time.monotonic() < deadline:
            s = min(self._restarting)
            ref = self.actors[s].generation.remote()
            try:
                self._ray.get(ref, timeout=max(deadline - time.monotonic(), 0.1))
                self._restarting.discard(s)
            except (self._ray.exceptions.RayActorError,
                    self._ray.exceptions.ActorUnavailableError):
                time.sleep(0.5)  # still restarting
            except self._ray.exceptions.GetTimeoutError:
                break

    def pause_shard(self, shard: int, seconds: float) -> None:
        """Fault drills: make shard `shard`'s next search `seconds` slower."""
        self._ray.get(self.actors[shard].pause.remote(seconds))

    def close(self) -> None:
        """Stop the shard actors and release the model."""
        for actor in self._actors or []:
            self._ray.kill(actor, no_restart=True)
        self._actors = None
        super().close()

    def __repr__(self) -> str:
        return (f"RayCollection({str(self.path)!r}, shards={len(self.shards)}, "
                f"address={self.address!r})")


def _get(ray: Any, ref: Any) -> Any:
    """A finished task's value; None when its actor died or failed."""
    try:
        return ray.get(ref, timeout=0)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, MmsearchError):
            return cause
        return None
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None


def _channel_names(shard: Any) -> Iterable[str]:
    from mmsearch.planner.groups import layout

    snap = shard.snapshot()
    return layout(snap).names if len(snap) else []
