"""Size and time limits that the ASGI server does not enforce by itself.

- Request bodies: a declared ``Content-Length`` over the limit is refused
  (413) before a byte is read; a chunked body is counted as it streams and
  refused as soon as it passes the limit.
- Header deadline: uvicorn has none (a client trickling one header line every
  few seconds keeps a connection forever), so the HTTP protocol below closes
  a connection whose request headers are not complete within the deadline
  of its first byte (or of the connection opening), answering 408.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["BodyLimit", "BodyTimeout", "BodyTooLarge", "ByteBudget", "ConnectionLimit", "header_deadline_protocol"]

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class BodyTooLarge(Exception):
    pass


class ConnectionLimit:
    """ASGI middleware: at most ``limit`` requests and WebSockets at once;
    beyond it an HTTP request or a handshake is answered 503
    ``too_many_connections`` at once (uvicorn's own limit, kept as a backstop
    for idle connections, answers plain text)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            body = orjson.dumps(
                {"error": f"the server has {self.limit} connections open, its limit; retry later", "code": "too_many_connections"}
            )
            prefix = "websocket.http." if scope["type"] == "websocket" else "http."
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"), (b"retry-after", b"1")]
            await send({"type": prefix + "response.start", "status": 503, "headers": headers})
            await send({"type": prefix + "response.body", "body": body})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class BodyTimeout(Exception):
    pass


class BodyLimit:
    """ASGI middleware: ``limit_for(path, method)`` bytes per request body,
    which must arrive within ``deadline`` seconds of the request's headers
    (a client trickling a body would otherwise hold a connection and its
    buffers for as long as it likes)."""

    def __init__(self, app: Any, limit_for: Callable[[str, str], int], deadline: float = 60.0) -> None:
        self.app = app
        self.limit_for = limit_for
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"], scope["method"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        seen = 0
        loop = asyncio.get_running_loop()
        due = loop.time() + self.deadline

        async def counting() -> Any:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), max(0.0, due - loop.time()))
            except TimeoutError:
                raise BodyTimeout(f"request body not received within {self.deadline:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"request body exceeds the {limit}-byte limit")
            return message

        await self.app(scope, counting, send)


async def _too_large(send: Send, limit: int) -> None:
    body = orjson.dumps({"error": f"request body exceeds the {limit}-byte limit", "code": "too_large"})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def header_deadline_protocol(deadline: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline on each request's headers."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _deadline_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline_timer is None:
                self._deadline_timer = self.loop.call_later(deadline, self._expired)

        def _disarm(self) -> None:
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
                self._deadline_timer = None

        def _expired(self) -> None:
            self._deadline_timer = None
            if self.transport.is_closing():
                return
            # A connection idle between requests is the keep-alive timer's business.
            if self.cycle is not None and not self.cycle.response_complete:
                return
            msg = f"request headers not received within {deadline:g} s"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: " + str(len(msg)).encode() + b"\r\n\r\n" + msg.encode()
            )
            self.transport.close()

    return HeaderDeadlineProtocol


class ByteBudget:
    """Bytes in flight, bounded: :meth:`acquire` waits until ``n`` more fit.

    One frame is always let through when nothing is in flight, so a frame
    larger than the whole budget cannot wedge a connection (frames are
    bounded by ``max_frame_bytes`` anyway)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, n: int) -> None:
        while self.used > 0 and self.used + n > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
