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

from headrace.server.auth import AuthError, authorize
from headrace.server.errors import ApiError
from headrace.server.http import Api, fire_arg
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


async def ws_accumulator(api: Api, ws: WebSocket) -> None:
    """Events in, acknowledgements out. Frame n (from 1) is acknowledged with
    ``{"ack": n}`` once a checkpoint holds it, or ``{"refused": n, "code",
    "error"}``; with ``?ack=batch`` one ``{"ack": n}`` covers every frame up to
    n not refused before it. Acks are in frame order. A producer that loses
    the connection resends every frame it has no ack for. If no checkpoint
    can hold an event (its state cannot be encoded), its ack says
    ``"durable": false`` with the error."""
    name = ws.path_params["name"]
    try:
        grant = api.access.require(ws, "write")
        worker = api.access.accumulator_graph(grant, name, ws.query_params.get("graph"), "write")
    except (AuthError, ApiError) as e:
        await _ws_refuse(ws, e)
        return
    binary = "msgpack" in ws.scope.get("subprotocols", [])
    codec = "msgpack" if binary else "json"
    batch_acks = ws.query_params.get("ack", "each") == "batch"
    await ws.accept(subprotocol="msgpack" if binary else None)
    acks = Acks(ws, binary)
    key = (worker.spec.tenant, worker.spec.graph)
    limit = api.config.limits.max_unacked_events
    # Frames in order: (frame number, its push batch, its index in the batch).
    pending: deque[tuple[int, PushBatch, int]] = deque()
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def send_acks() -> None:
        while True:
            if not pending:
                arrived.clear()
                await arrived.wait()
                continue
            await pending[0][1].done
            run_end = None  # batch mode: the last frame of a run of plain acks
            while pending and pending[0][1].done.done():
                seq, batch, index = pending.popleft()
                outcome = batch.outcome(index)
                if batch_acks and outcome[1] is None:
                    run_end = seq
                    continue
                if run_end is not None:
                    await acks.send({"ack": run_end})
                    run_end = None
                await acks.send(_ack(seq, outcome))
            if run_end is not None:
                await acks.send({"ack": run_end})
            if len(pending) < limit:
                room.set()

    sender = asyncio.create_task(send_acks())
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
            if len(pending) >= limit:
                # Stop reading (TCP pushes back on the producer) until acks catch up.
                room.clear()
                await room.wait()
            current = api.sup.workers.get(key)
            client = current.data if current is not None and current.state == "running" else None
            if client is None:
                state = current.state if current is not None else "deleted"
                pending.append((seq, PushBatch.refused(f"graph '{key[1]}' is {state}; resend later"), 0))
            else:
                batch, index = client.push(name, codec, data)
                pending.append((seq, batch, index))
            arrived.set()
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender


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
        grant = api.access.require(ws, "read")
        api.access.graph_or_404(grant, name, "read")
    except (AuthError, ApiError) as e:
        await _ws_refuse(ws, e)
        return
    await ws.accept()
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
