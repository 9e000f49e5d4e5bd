"""A short way through the server for the most frequent request: a valid `POST /search`.

FastAPI's way costs a search more Python than the search itself: a dozen middleware and
routing layers, dependency solving, `json.loads` and then model validation on the event
loop's thread, and the encoder walking the answer. Here a well-formed search takes the
body, parses and validates it in one step (pydantic's JSON parser), searches and writes
its JSON answer in one hop to the thread pool, and answers. Anything else, and any search
that does not end in a 200 (bad input, a missing key, a damaged store), is handed to the
FastAPI app with the body it sent, so every answer but the fast one is FastAPI's own: same
status codes, same error bodies, same OpenAPI schema. A search has no side effects, so
running a failed one a second time changes nothing but its cost.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Parses, validates and runs one search body; returns the answer, or raises.
Handler = Callable[[bytes], dict[str, Any]]

PATH = "/search"
#: Threads answering fast searches in one process: a few per core keep the cores busy
#: while some wait in FAISS or DuckDB; more only take turns at the interpreter lock.
THREADS = 4 * (os.cpu_count() or 1)


class FastSearch:
    """ASGI middleware: answers valid `POST /search` requests itself (see the module)."""

    def __init__(self, app: Any, handler: Handler, api_key: str | None,
                 key_header: str, max_body_bytes: int) -> None:
        self.app = app
        self.handler = handler
        self.api_key = api_key.encode() if api_key is not None else None
        self.key_header = key_header.lower().encode()
        self.max_body_bytes = max_body_bytes
        self._pool: ThreadPoolExecutor | None = None  # made on first use, in the server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == PATH and self._may_pass(scope["headers"])):
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive, self.max_body_bytes)
        if more:  # over the limit or cut off: the full way answers, from the start
            await self.app(scope, _replay(body, more, receive), send)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="mmsearch-search")
        try:
            # a plain executor: anyio's thread hop (capacity limiter, cancel scopes) cost a
            # fifth of a search's interpreter time
            answer = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._answer, body)
        except Exception:  # any failure: the full way names it
            await self.app(scope, _replay(body, False, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    def _may_pass(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """JSON of a declared size within the limit, and the API key when the server has
        one."""
        json_body = sized = key_ok = False
        for name, value in headers:
            if name == b"content-type":
                json_body = value.split(b";")[0].strip().lower() == b"application/json"
            elif name == b"content-length":
                sized = value.isdigit() and int(value) <= self.max_body_bytes
            elif name == self.key_header and self.api_key is not None:
                key_ok = hmac.compare_digest(value, self.api_key)
        return json_body and sized and (key_ok or self.api_key is None)

    def _answer(self, body: bytes) -> bytes:
        # as Starlette's JSONResponse renders
        return json.dumps(self.handler(body), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request's body, and whether more than `limit` bytes were sent (then what was
    read so far, to hand on)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # disconnected: the full way sees it
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), True
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A `receive` that first gives back what was read, then the rest of the stream."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return again
