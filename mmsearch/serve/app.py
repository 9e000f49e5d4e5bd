"""FastAPI app: search (text, vector, uploaded image, filters, facets), upsert, delete,
health, stats, thumbnails, media files and the result page.

Searches run in the server's thread pool, concurrently: a `Collection` serves readers from
an immutable snapshot while one writer commits (see Collection.snapshot).
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Security,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import Base64Bytes, BaseModel, Field, ValidationError

from mmsearch.collection import Collection
from mmsearch.errors import (
    BadMediaError,
    LimitError,
    MediaChangedError,
    MmsearchError,
    StoreDamagedError,
    StoreLockedError,
    UsageError,
)
from mmsearch.index import set_threads
from mmsearch.media import Recorded, verified
from mmsearch.request import SearchOptions, SearchRequest, describe
from mmsearch.results import Result
from mmsearch.serve.fast_search import FastSearch
from mmsearch.thumbnails import thumbnail

API_KEY_HEADER = "X-API-Key"
#: Most facet columns one search may ask for.
MAX_FACETS = 32
#: Seconds a client should wait before retrying a write refused because another process
#: holds the store's write lock.
RETRY_AFTER_S = 2


@dataclass(frozen=True)
class Limits:
    """Request limits; anything over them gets a 4xx with the limit in the message."""

    max_k: int = 1000
    max_body_bytes: int = 20 * 2**20
    #: JSON bodies of /search and /delete (parsed before any other check: kept small;
    #: 32 texts of 2,000 characters, a 4,096-d vector or 10,000 short `in` values fit).
    max_query_body_bytes: int = 256 * 2**10
    max_image_bytes: int = 10 * 2**20
    max_records: int = 10_000
    max_batch: int = 1024


class ErrorBody(BaseModel):
    """An error answer: what was wrong, and for 413 the limit that was hit."""

    detail: str | list[Any]
    limit: str | None = None


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route can answer."""
    text = {400: "Bad input (a wrong value, type, filter or column)",
            401: "Missing or wrong API key (header X-API-Key)",
            404: "No such item, or it has no file",
            409: "The item's file changed since it was indexed",
            413: "Over a limit (the answer names it)",
            422: "The request does not match the schema",
            503: "The store is damaged (run `mmsearch doctor`) or busy with another "
                 "process's write (see Retry-After)"}
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


READ_ERRORS = _errors(400, 401, 413, 422, 503)
WRITE_ERRORS = _errors(400, 401, 413, 422, 503)
FILE_ERRORS = _errors(401, 404, 409, 422, 503)


class SearchBody(SearchOptions):
    """The body of `POST /search`: every search option of the library but the trusted-only
    `where` (see `mmsearch.request`), example media as base64, and facet columns."""

    image: Base64Bytes | None = Field(None, description="An example image (base64).")
    audio: Base64Bytes | None = Field(None, description="An example sound file (base64).")
    facets: list[str] | None = Field(None, max_length=MAX_FACETS,
                                     description="Columns to count values of over the hits.")


class BatchQuery(BaseModel):
    """One query of a batch: a text and/or a vector."""

    text: str | None = None
    vector: list[float] | None = None


class BatchSearchRequest(BaseModel):
    """Several queries sharing k, filters and modality; one result list per query."""

    queries: list[BatchQuery]
    k: int = Field(10, ge=1)
    filters: dict[str, Any] | None = None
    modality: str | None = None


class UpsertRequest(BaseModel):
    """Records with an `id` and a `vector` or `text` (files are not read over HTTP)."""

    records: list[dict[str, Any]]


class DeleteRequest(BaseModel):
    ids: list[str]


def create_app(collection: Collection, api_key: str | None = None,
               limits: Limits | None = None, threads_per_request: int | None = 1) -> FastAPI:
    """The HTTP app over one collection; `api_key` (if any) is required on the API.

    `threads_per_request`: FAISS (OpenMP) threads a request's search may use; the server
    gets its parallelism from concurrent requests, and nested OpenMP teams on a busy CPU
    make each search several times slower. None leaves FAISS's setting alone.
    """
    limits = limits or Limits()
    local = threading.local()

    def pin_threads() -> None:
        # OpenMP's thread count is per calling thread: set it once per worker thread
        if threads_per_request and getattr(local, "threads", None) != threads_per_request:
            set_threads(threads_per_request)
            local.threads = threads_per_request

    app = _App(title="mmsearch", version="0.1.0",
                  description="Multimodal search over one mmsearch store.")
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes,
                       small={"/search": limits.max_query_body_bytes,
                              "/delete": limits.max_query_body_bytes})

    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    async def check_key(given: str | None = Security(key_header)) -> None:
        # the key only in the header, never in the URL: URLs end up in logs. `async`: it
        # does no I/O, and FastAPI runs a plain `def` dependency through the thread pool
        if api_key is None:
            return
        if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong API key (header {API_KEY_HEADER})")

    auth = [Depends(check_key)]

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, e: RequestValidationError) -> JSONResponse:
        # what was wrong and where, without echoing the input (it may hold NaN or be huge)
        return JSONResponse({"detail": [{"loc": list(err.get("loc", ())), "msg": err["msg"],
                                         "type": err["type"]} for err in e.errors()]},
                            status_code=422)

    @app.exception_handler(UsageError)
    async def usage_error(_: Request, e: UsageError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    @app.exception_handler(LimitError)
    async def limit_error(_: Request, e: LimitError) -> JSONResponse:
        return JSONResponse({"detail": str(e), "limit": e.limit}, status_code=413)

    @app.exception_handler(StoreDamagedError)
    async def damaged(_: Request, e: StoreDamagedError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=503)

    @app.exception_handler(StoreLockedError)
    async def locked(_: Request, e: StoreLockedError) -> JSONResponse:
        return JSONResponse({"detail": f"{e}; try again shortly"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(MediaChangedError)
    async def changed(_: Request, e: MediaChangedError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=409)

    @app.exception_handler(MmsearchError)
    async def engine_error(_: Request, e: MmsearchError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=500)

    def run_search(body: SearchBody, image: bytes | None = None) -> dict[str, Any]:
        if body.k > limits.max_k:
            raise HTTPException(400, f"k={body.k} is over the limit of {limits.max_k}")
        image = image if image is not None else body.image
        if image is not None and len(image) > limits.max_image_bytes:
            raise HTTPException(413, f"image is over the limit of {limits.max_image_bytes} "
                                "bytes")
        pin_threads()
        options = {name: getattr(body, name) for name in body.model_fields_set
                   if name in SearchOptions.model_fields}
        started = time.perf_counter()
        with _sound_file(body.audio) as audio:
            req = SearchRequest.build(**options, image=image, audio=audio)
            hits = collection.search(req)
            out: dict[str, Any] = {"results": [_result_json(h) for h in hits]}
            if getattr(hits, "partial", False):  # a sharded store's shards that did not answer
                out.update(partial=True, missing_shards=hits.missing)
            if body.facets:
                out["facets"] = {c: [{"value": v, "count": n} for v, n in values]
                                 for c, values in collection.facets(body.facets, req).items()}
        out["took_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return out

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("mmsearch.serve").joinpath("static/index.html").read_text()

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: always answers while the process runs (`pid`: which worker answered)."""
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/stats", dependencies=auth, responses=_errors(401, 503))
    def stats() -> dict[str, Any]:
        """What the store holds (`Collection.info`) and the server's limits."""
        return {**collection.info(), "limits": limits.__dict__, "rerank": True}

    @app.post("/search", dependencies=auth, responses=READ_ERRORS)
    def search(body: SearchBody) -> dict[str, Any]:
        """Search by text, vector, example image or sound (base64), with structured filters
        (injection-safe) and every other search option; optional facet counts."""
        # the answer is plain JSON values already: serialised directly, not walked again by
        # FastAPI's encoder (a fifth of a small search's own time)
        return JSONResponse(run_search(body))  # type: ignore[return-value]

    def fast_search(raw: bytes) -> dict[str, Any]:
        return run_search(SearchBody.model_validate_json(raw))

    app.fast_search = FastSearch(app.full, fast_search, api_key=api_key,
                                 key_header=API_KEY_HEADER,
                                 max_body_bytes=limits.max_query_body_bytes)

    @app.post("/search/batch", dependencies=auth, responses=READ_ERRORS)
    def search_batch(req: BatchSearchRequest) -> dict[str, Any]:
        """Several searches in one call (`Collection.search_batch`): one list per query."""
        if req.k > limits.max_k:
            raise HTTPException(400, f"k={req.k} is over the limit of {limits.max_k}")
        if len(req.queries) > limits.max_batch:
            raise HTTPException(413, f"{len(req.queries)} queries is over the batch limit of "
                                     f"{limits.max_batch}")
        if not hasattr(collection, "search_batch"):
            raise HTTPException(400, "this server's collection does not support batch search")
        pin_threads()
        started = time.perf_counter()
        texts = [q.text for q in req.queries]
        vectors = [q.vector for q in req.queries]
        lists = collection.search_batch(
            texts=texts if any(t is not None for t in texts) else None,
            vectors=vectors if any(v is not None for v in vectors) else None,
            k=req.k, filters=req.filters, modality=req.modality)
        return {"results": [[_result_json(h) for h in hits] for hits in lists],
                "took_ms": round((time.perf_counter() - started) * 1000, 2)}

    @app.post("/search/image", dependencies=auth, responses=READ_ERRORS)
    def search_image(image: UploadFile = File(...),  # noqa: B008 - FastAPI's idiom
                     text: str | None = Form(None), k: int = Form(10),
                     filters: str | None = Form(None, description="JSON object"),
                     modality: str | None = Form(None),
                     facets: str | None = Form(None, description="comma-separated"),
                     rerank: int = Form(0, ge=0, description="Rescore the top N."),
                     reranker: str | None = Form(None, description="Reranker spec."),
                     options: str | None = Form(None, description="JSON object: any other "
                                                "option of POST /search.")
                     ) -> dict[str, Any]:
        """Search by an uploaded image (multipart), optionally with text, filters and any
        other search option (`options`, as the JSON body of POST /search)."""
        data = image.file.read(limits.max_image_bytes + 1)
        if len(data) > limits.max_image_bytes:
            raise HTTPException(413, f"image is over the limit of {limits.max_image_bytes} "
                                "bytes")
        given = {"text": text, "k": max(1, k), "filters": _json_object("filters", filters),
                 "modality": modality, "rerank": rerank, "reranker": reranker,
                 "facets": [f for f in (facets or "").split(",") if f] or None}
        given = {name: v for name, v in given.items() if v is not None}
        try:
            body = SearchBody.model_validate({**_json_object("options", options), **given})
        except ValidationError as e:
            raise HTTPException(422, describe(e)) from None
        return run_search(body, image=data)

    @app.post("/upsert", dependencies=auth, responses=WRITE_ERRORS)
    def upsert(req: UpsertRequest) -> dict[str, Any]:
        """Insert or replace records by id (vector or text; one atomic commit)."""
        if not req.records:
            raise HTTPException(400, "no records given")
        if len(req.records) > limits.max_records:
            raise HTTPException(413, f"{len(req.records)} records is over the limit of "
                                f"{limits.max_records} per request")
        if any("path" in r for r in req.records):
            raise HTTPException(400, "records with a `path` are not accepted over HTTP "
                                "(the server does not read files for clients); send a "
                                "`vector` or `text`")
        pin_threads()
        return {"rows": collection.upsert(req.records)}

    @app.post("/delete", dependencies=auth, responses=WRITE_ERRORS)
    def delete(req: DeleteRequest) -> dict[str, Any]:
        """Remove items (all their rows) by id."""
        return {"rows": collection.delete(req.ids)}

    @app.get("/thumbnail/{item_id}", dependencies=auth,
             responses={200: {"content": {"image/jpeg": {}}}, **FILE_ERRORS})
    def thumb(item_id: str, start_s: float | None = None,
              size: int = Query(256, ge=16, le=1024)) -> Response:
        """A JPEG of an item: the image, or a video's frame at `start_s`."""
        result, recorded = _media_row(collection, item_id, start_s)
        try:
            image = thumbnail(result, size, recorded)
        except (BadMediaError, OSError) as e:
            raise HTTPException(404, f"no thumbnail for {item_id}: {e}") from None
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85)
        return Response(buf.getvalue(), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=300"})

    @app.get("/media/{item_id}", dependencies=auth, response_class=FileResponse,
             responses={200: {"content": {"application/octet-stream": {}}}, **FILE_ERRORS})
    def media(item_id: str) -> FileResponse:
        """The item's file (only files the store indexed); videos open at `#t=START`."""
        result, recorded = _media_row(collection, item_id, None)
        if recorded.bytes is None or recorded.mtime_ns is None:
            raise HTTPException(404, f"the store recorded no size and time of {item_id}'s "
                                "file, so it cannot tell it is still that file; re-index it")
        try:
            st = verified(recorded)
        except BadMediaError as e:
            raise HTTPException(404, f"no file for {item_id}: {e}") from None
        return FileResponse(result.path, stat_result=st)  # type: ignore[arg-type]

    return app


class _App(FastAPI):
    """FastAPI, with valid searches answered before its own layers (`fast_search`)."""

    fast_search: FastSearch | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.fast_search is None:
            await self.full(scope, receive, send)
        else:
            await self.fast_search(scope, receive, send)

    async def full(self, scope: Any, receive: Any, send: Any) -> None:
        """The request through FastAPI's middleware and routing."""
        await super().__call__(scope, receive, send)


def _json_object(name: str, text: str | None) -> dict[str, Any]:
    """A form field holding a JSON object ({} when absent); 400 when it is not one."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise HTTPException(400, f"{name} must be a JSON object: {e}") from None
    if not isinstance(parsed, dict):
        raise HTTPException(400, f"{name} must be a JSON object")
    return parsed


@contextlib.contextmanager
def _sound_file(data: bytes | None) -> Iterator[str | None]:
    """An uploaded sound as a temporary file for the decoder (None: no sound)."""
    if data is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="mmsearch-sound-") as tmp:
        path = Path(tmp) / "query.audio"
        path.write_bytes(data)
        yield str(path)


def _result_json(hit: Result) -> dict[str, Any]:
    out = hit.to_dict()
    if hit.path:
        at = f"?start_s={hit.start_s}" if hit.start_s is not None else ""
        out["thumbnail"] = f"/thumbnail/{hit.id}{at}"
        out["media"] = f"/media/{hit.id}" + (f"#t={hit.start_s:g}" if hit.start_s is not None
                                             else "")
    return out


def _media_row(collection: Collection, item_id: str, start_s: float | None
               ) -> tuple[Result, Recorded]:
    """The row of an item with a file (the moment nearest `start_s` for videos) and what
    the store recorded of the file."""
    owner = collection.shard_for(item_id) if hasattr(collection, "shard_for") else collection
    snap = owner.snapshot()
    names = snap.table.column_names
    if not len(snap) or "path" not in names:
        raise HTTPException(404, f"no item {item_id!r} with a file")
    cols = ", ".join(f'"{c}"' if c in names else f'NULL AS "{c}"' for c in
                     ("path", "modality", "start_s", "bytes", "mtime_ns", "content_hash"))
    order = "abs(coalesce(start_s, 0) - ?)" if "start_s" in names else "?"
    cursor = snap.sql(f"SELECT {cols} FROM items WHERE id = ? AND path IS NOT NULL "
                      f"ORDER BY {order} LIMIT 1", [item_id, start_s or 0.0])
    row = cursor.fetchone()
    if row is None:
        raise HTTPException(404, f"no item {item_id!r} with a file")
    rec = Recorded.from_row(dict(zip(("path", "modality", "start_s", "bytes", "mtime_ns",
                                      "content_hash"), row, strict=True)))
    return Result(id=item_id, path=row[0], modality=row[1] or "image", score=0.0,
                  start_s=row[2]), rec


class _BodyLimit:
    """ASGI middleware: 413 when a request body is over `max_bytes`, declared or streamed."""

    def __init__(self, app: Any, max_bytes: int, small: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.small = small or {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.small.get(path, self.max_bytes)
        name = "max_query_body_bytes" if path in self.small else "max_body_bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit, name)(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body is over the limit of "
                                        f"{limit} bytes")
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int, name: str) -> JSONResponse:
    return JSONResponse({"detail": f"request body is over the limit {name}={limit} bytes",
                         "limit": name}, status_code=413)
