"""The WebSocket protocols: events in and acknowledgements out
(``/v1/ws/accumulator/{name}``), and reactor commands (``/v1/ws/reactor/{name}``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import msgpack
import orjson
from starlette.responses import Response
from starlette.websockets import WebSocket

from headrace.server.auth import AuthError, Grant, authorize
from headrace.server.errors import ApiError
from headrace.server.http import Api, fire_arg
from headrace.server.limits import ByteBudget
from headrace.server.revocation import CLOSE_CODE, CLOSE_REASON, until_revoked
from headrace.supervisor.client import PushBatch

__all__ = ["ws_accumulator", "ws_reactor"]


class Acks:
    """Encodes acknowledgements in the connection's format (JSON or msgpack)."""

    def __init__(self, ws: WebSocket, binary: bool) -> None:
        self.ws = ws
        self.binary = binary

    async def send(self, message: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send({"type": "websocket.send", "bytes": msgpack.packb(message, use_bin_type=True)})
        else:
            await self.ws.send({"type": "websocket.send", "text": orjson.dumps(message, default=str).decode()})


class AckStream:
    """One producer socket's pipeline: frame -> push batch -> in-order ack.

    What is in flight (pushed, not yet acknowledged) is bounded three ways:
    events per connection, bytes per connection, and bytes over the whole
    server. At a bound the socket is not read until acks catch up, so TCP
    pushes back on the producer and the server's memory stays bounded."""

    def __init__(self, acks: Acks, batch_acks: bool, max_events: int, connection: ByteBudget, server: ByteBudget) -> None:
        self.acks = acks
        self.batch_acks = batch_acks
        self.max_events = max_events
        self.connection = connection
        self.server = server
        # Frames in order: (frame number, its push batch, its index in the batch, its size).
        self.pending: deque[tuple[int, PushBatch, int, int]] = deque()
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    async def admit(self, size: int) -> None:
        """Waits until a frame of ``size`` bytes fits in every bound."""
        if len(self.pending) >= self.max_events:
            self.room.clear()
            await self.room.wait()
        await self.connection.acquire(size)
        try:
            await self.server.acquire(size)
        except BaseException:
            self.connection.release(size)
            raise

    def add(self, seq: int, batch: PushBatch, index: int, size: int) -> None:
        self.pending.append((seq, batch, index, size))
        self.arrived.set()

    def _done(self, size: int) -> None:
        self.connection.release(size)
        self.server.release(size)

    def release_all(self) -> None:
        """The connection ended: its frames no longer count against the server."""
        while self.pending:
            self._done(self.pending.popleft()[3])

    async def send_acks(self) -> None:
        while True:
            if not self.pending:
                self.arrived.clear()
                await self.arrived.wait()
                continue
            await self.pending[0][1].done
            run_end = None  # batch mode: the last frame of a run of plain acks
            while self.pending and self.pending[0][1].done.done():
                seq, batch, index, size = self.pending.popleft()
                self._done(size)
                outcome = batch.outcome(index)
                if self.batch_acks and outcome[1] is None:
                    run_end = seq
                    continue
                if run_end is not None:
                    await self.acks.send({"ack": run_end})
                    run_end = None
                await self.acks.send(_ack(seq, outcome))
            if run_end is not None:
                await self.acks.send({"ack": run_end})
            if len(self.pending) < self.max_events:
                self.room.set()


async def ws_accumulator(api: Api, ws: WebSocket) -> None:
    """Events in, acknowledgements out. Frame n (from 1) is acknowledged with
    ``{"ack": n}`` once a checkpoint holds it, or ``{"refused": n, "code",
    "error"}``; with ``?ack=batch`` one ``{"ack": n}`` covers every frame up to
    n not refused before it. Acks are in frame order. A producer that loses
    the connection resends every frame it has no ack for. If no checkpoint
    can hold an event (its state cannot be encoded), its ack says
    ``"durable": false`` with the error. The socket closes with 1008 when its
    key is revoked."""
    name = ws.path_params["name"]
    try:
        api.access.check_origin(ws)
        grant = api.access.require(ws, "write")
        worker = api.access.accumulator_graph(grant, name, ws.query_params.get("graph"), "write")
    except (AuthError, ApiError) as e:
        await _ws_refuse(ws, e)
        return
    binary = "msgpack" in ws.scope.get("subprotocols", [])
    await ws.accept(subprotocol="msgpack" if binary else None)
    limits = api.config.limits
    stream = AckStream(
        Acks(ws, binary),
        ws.query_params.get("ack", "each") == "batch",
        limits.max_unacked_events,
        ByteBudget(limits.max_unacked_bytes),
        api.inflight,
    )
    async with api.sockets.holding(grant.key_id) as revoked:
        if await until_revoked(revoked, _pump(api, ws, stream, (worker.spec.tenant, worker.spec.graph), name, binary)):
            await _close_revoked(ws)


async def _pump(api: Api, ws: WebSocket, stream: AckStream, key: tuple[str, str], name: str, binary: bool) -> None:
    codec = "msgpack" if binary else "json"
    sender = asyncio.create_task(stream.send_acks())
    seq = 0
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None:
                data = message.get("text", "").encode()
            seq += 1
            # Until there is room, the socket is not read (TCP pushes back on the producer).
            await stream.admit(len(data))
            current = api.sup.workers.get(key)
            client = current.data if current is not None and current.state == "running" else None
            if client is None:
                state = current.state if current is not None else "deleted"
                stream.add(seq, PushBatch.refused(f"graph '{key[1]}' is {state}; resend later"), 0, len(data))
            else:
                batch, index = client.push(name, codec, data)
                stream.add(seq, batch, index, len(data))
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        stream.release_all()


async def _close_revoked(ws: WebSocket) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code=CLOSE_CODE, reason=CLOSE_REASON)


def _ack(seq: int, outcome: tuple[bool, str | None, str | None]) -> dict[str, Any]:
    ok, code, text = outcome
    if not ok:
        return {"refused": seq, "code": code, "error": text}
    if code == "not_durable":
        return {"ack": seq, "durable": False, "error": text}
    return {"ack": seq}


async def ws_reactor(api: Api, ws: WebSocket) -> None:
    """Commands as JSON objects ``{"op": ..., "id": ...}``: force_fire,
    fire_with (``"inputs": {...}``), get_state, pause, resume. Each answer is
    ``{"id", "ok": true, "result"}`` or ``{"id", "ok": false, "error", "code"}``."""
    name = ws.path_params["name"]
    try:
        api.access.check_origin(ws)
        grant = api.access.require(ws, "read")
        api.access.graph_or_404(grant, name, "read")
    except (AuthError, ApiError) as e:
        await _ws_refuse(ws, e)
        return
    await ws.accept()
    async with api.sockets.holding(grant.key_id) as revoked:
        if await until_revoked(revoked, _commands(api, ws, grant, name)):
            await _close_revoked(ws)


async def _commands(api: Api, ws: WebSocket, grant: Grant, name: str) -> None:
    writes = {"force_fire": "fire", "fire_with": "fire", "pause": "pause", "resume": "resume"}
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text") or message.get("bytes") or b""
        req_id = None
        try:
            command = orjson.loads(raw)
            if not isinstance(command, dict):
                raise ApiError(400, "a command is a JSON object", "bad_request")
            req_id = command.get("id")
            op = command.get("op")
            worker = api.access.graph_or_404(grant, name, "read")
            if op == "get_state":
                result = await api.call(worker, "state", None)
            elif op in writes:
                authorize(grant, tenant=grant.tenant, action="write", graph=name)
                arg: Any = None
                if op == "fire_with":
                    arg = fire_arg({"mode": "fire_with", "fire_with": command.get("inputs", command.get("fire_with"))})
                result = await api.call(worker, writes[op], arg, data=True)
            else:
                raise ApiError(
                    400, f"op must be one of force_fire, fire_with, get_state, pause, resume; got {op!r}", "bad_request"
                )
            reply: dict[str, Any] = {"id": req_id, "ok": True, "result": result}
        except orjson.JSONDecodeError as e:
            reply = {"id": req_id, "ok": False, "error": f"not valid JSON: {e}", "code": "bad_json"}
        except AuthError as e:
            reply = {"id": req_id, "ok": False, "error": str(e), "code": e.code}
        except ApiError as e:
            reply = {"id": req_id, "ok": False, "error": str(e), "code": e.code}
        await ws.send_text(orjson.dumps(reply, default=str).decode())


async def _ws_refuse(ws: WebSocket, e: AuthError | ApiError) -> None:
    """Refuses the handshake with the HTTP status the REST API would give."""
    status = e.status
    body = orjson.dumps({"error": str(e), "code": e.code})
    await ws.send_denial_response(Response(body, status_code=status, media_type="application/json"))
