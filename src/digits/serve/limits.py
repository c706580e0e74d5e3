"""Bounds on what one request may cost the worker: its body, its time, its share of memory.

`BodyLimitMiddleware` reads the body here, up to the limit and within a deadline, and replays it
to the app: a client that lies in Content-Length or streams chunks without one is cut off at the
same limit, a body trickling in at a byte a second is answered 408, and neither the multipart
parser nor the JSON decoder ever holds more than `max_bytes`. An oversized body that is not too
large to swallow is read and discarded before the 413 goes out: clients such as Python's
http.client send the whole body before they read an answer, and closing on them mid-upload gives
them "connection reset" instead of the JSON error.

Only `slots` requests with a body are worked on at once (decoding an image is where a worker's
memory goes); the others wait up to `wait_s` and are then answered 503 with Retry-After. Bodies
held in memory, over all requests, are bounded by `body_budget`: past it, reading waits.

`GuardedHttpToolsProtocol` (or `GuardedH11Protocol` without httptools) is uvicorn's protocol with
a deadline and a size bound on each request head (an idle or half-sent request is closed after
`header_timeout_s`) and its plain-text 400 and 503 answers in the service's JSON error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

from digits.serve.errors import error_body

# An oversized body up to this size is read and thrown away so the client sees the 413; a larger
# one is cut off at once (the client may then see a reset: the bound on what we swallow).
DRAIN_BYTES = 64 * 1024 * 1024
RETRY_AFTER_S = 2
# Largest request head (line and headers) read before answering 400.
MAX_HEAD_BYTES = 16 * 1024


def json_error(status: int, code: str, detail: str, **headers: str) -> tuple[list[Any], bytes]:
    """Headers and body of a JSON error answer that closes the connection."""
    payload = json.dumps(error_body(code, detail)).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
        *((name.encode(), value.encode()) for name, value in headers.items()),
    ]
    return head, payload


async def send_error(send: Send, status: int, code: str, detail: str, **headers: str) -> None:
    head, payload = json_error(status, code, detail, **headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        body_timeout_s: float = 30.0,
        slots: int = 2,
        wait_s: float = 10.0,
        body_budget: int = 32 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s
        self.wait_s = wait_s
        self.slots = asyncio.Semaphore(slots)
        # Bodies held in memory at once, over all requests: many clients uploading the largest
        # body together wait for room (within their body deadline) instead of adding up.
        self.body_budget = body_budget
        self.buffered = 0
        self._room = asyncio.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared_header = dict(scope["headers"]).get(b"content-length")
        declared = int(declared_header) if declared_header and declared_header.isdigit() else None
        if declared_header is not None and declared is None:
            await send_error(send, 400, "bad_input", "Content-Length is not a number")
            return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(receive, send, declared)
            return
        held = [0]  # bytes of the budget this request holds
        try:
            await self._handle(scope, receive, send, held, declared)
        finally:
            if held[0]:
                await self._release(held[0])

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, held: list[int], declared: int | None
    ) -> None:
        try:
            # asyncio.timeout, not wait_for: it runs the read in this task instead of a new
            # one, which at a thousand requests a second is CPU worth keeping.
            async with asyncio.timeout(self.body_timeout_s):
                read = await self._read(receive, held, declared)
        except TimeoutError:
            detail = f"the request body did not arrive within {self.body_timeout_s:g} s"
            await send_error(send, 408, "timeout", detail)
            return
        if read is None:  # the client went away
            return
        body, complete = read
        if len(body) > self.max_bytes:
            await self._refuse(receive, send, None, drain=not complete)
            return
        try:
            async with asyncio.timeout(self.wait_s):
                await self.slots.acquire()
        except TimeoutError:
            detail = f"busy: every image slot was taken for {self.wait_s:g} s; try again shortly"
            await send_error(send, 503, "busy", detail, **{"retry-after": str(RETRY_AFTER_S)})
            return
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.slots.release()

    async def _read(
        self, receive: Receive, held: list[int], declared: int | None
    ) -> tuple[bytes, bool] | None:
        """The whole body, or as soon as it passes the limit the part read so far, and whether
        that is all of it; None when the client disconnects. Room in the budget is reserved
        whole before anything is read, the declared size or, for a chunked body, the limit: a
        request never holds part of the room while it waits for the rest, so uploads that
        arrive together cannot each hold a share and wait on one another."""
        held[0] = declared if declared is not None else self.max_bytes
        await self._reserve(held[0])
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            complete = not message.get("more_body", False)
            if size > self.max_bytes or complete:
                return b"".join(chunks), complete

    async def _reserve(self, size: int) -> None:
        async with self._room:
            await self._room.wait_for(
                lambda: self.buffered == 0 or self.buffered + size <= self.body_budget
            )
            self.buffered += size

    async def _release(self, size: int) -> None:
        async with self._room:
            self.buffered -= size
            self._room.notify_all()

    async def _refuse(
        self, receive: Receive, send: Send, declared: int | None, drain: bool = True
    ) -> None:
        if declared is not None:
            detail = f"the request body is {declared} bytes; the limit is {self.max_bytes}"
        else:
            detail = f"the request body is over {self.max_bytes} bytes, the limit"
        if drain and (declared is None or declared <= DRAIN_BYTES):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain(receive), self.body_timeout_s)
        await send_error(send, 413, "too_large", detail)

    async def _drain(self, receive: Receive) -> None:
        """Read and discard the rest of the body, up to DRAIN_BYTES."""
        size = 0
        while size <= DRAIN_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            # After the body, wait for the client to go away, as the real receive would.
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _json_service_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """uvicorn's answer once `limit_concurrency` connections are open, as JSON."""
    detail = "busy: too many connections are open; try again shortly"
    await send_error(send, 503, "busy", detail, **{"retry-after": str(RETRY_AFTER_S)})


class HeadGuard:
    """A deadline and a size bound on each request head, and JSON 400s, for uvicorn's HTTP
    protocols (mixed in before them). uvicorn itself only times idle keep-alive connections: a
    client that connects and sends nothing, or half a request line, would hold it forever."""

    header_timeout_s: float = 10.0
    max_head_bytes: int = MAX_HEAD_BYTES

    # Attributes of uvicorn's protocols, which this class is mixed into.
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._waiting_after = self.cycle
        self._head_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout_s, self._header_timeout
        )

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        # The head of a request did not arrive in time: an idle, half-open or trickling client.
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        waiting = getattr(self, "_header_timer", None) is not None
        super().data_received(data)  # type: ignore[misc]
        if not waiting or self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle is not self._waiting_after:
            self._cancel_header_timer()  # a new request's head is complete
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self.send_400_response(f"the request head is over {self.max_head_bytes} bytes")

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._cancel_header_timer()
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        # Written raw, as both protocols do, and the connection closed: nothing more is parsed.
        head, payload = json_error(400, "bad_request", f"malformed HTTP request: {msg}")
        lines = [b"HTTP/1.1 400 Bad Request"] + [name + b": " + value for name, value in head]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        self.transport.close()


class GuardedH11Protocol(HeadGuard, H11Protocol):  # type: ignore[misc]
    """uvicorn's pure-Python protocol (h11), guarded."""


# uvicorn answers connections over `limit_concurrency` with a plain-text 503 from a module
# global of each protocol; the service answers every error as JSON.
h11_impl.service_unavailable = _json_service_unavailable  # type: ignore[assignment]

try:
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional: h11 then
    PROTOCOL = "digits.serve.limits:GuardedH11Protocol"
else:

    class GuardedHttpToolsProtocol(HeadGuard, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's protocol on the C parser (httptools), guarded: the faster one."""

    httptools_impl.service_unavailable = _json_service_unavailable  # type: ignore[assignment]
    PROTOCOL = "digits.serve.limits:GuardedHttpToolsProtocol"
