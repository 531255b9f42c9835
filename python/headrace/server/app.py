"""The HTTP/WebSocket API (Starlette).

Every route resolves the caller's key to a grant and checks it with
:func:`headrace.server.auth.authorize`: reads need ``read``; inject, push,
fire, pause and resume need ``write``; uploads, deletes and keys need
``admin``. Graphs are looked up in the key's own tenant only, so another
tenant's graph is a 404, never a 403. Errors are ``{"error", "code"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from headrace.server.auth import AuthError, Grant, KeyStore, authorize
from headrace.server.config import ServerConfig
from headrace.server.limits import BodyLimit, BodyTooLarge
from headrace.server.metrics import render_metrics
from headrace.supervisor.client import OpFailed, PushBatch, WorkerUnavailable
from headrace.supervisor.process import GraphWorker
from headrace.supervisor.supervisor import DeployError, Supervisor

__all__ = ["create_app"]

log = logging.getLogger("headrace.server")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=str), status_code=status, media_type="application/json")


def error_response(status: int, message: str, code: str, **extra: Any) -> Response:
    return json_response({"error": message, "code": code, **extra}, status)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _token(headers: Any, query: Any) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    key: str | None = headers.get("x-api-key") or query.get("token")
    return key


class Api:
    def __init__(self, config: ServerConfig, supervisor: Supervisor, keys: KeyStore) -> None:
        self.config = config
        self.sup = supervisor
        self.keys = keys

    # --- helpers ------------------------------------------------------------

    def grant(self, request: Request | WebSocket) -> Grant | None:
        return self.keys.lookup(_token(request.headers, request.query_params))

    def require(self, request: Request | WebSocket, action: str, tenant: str | None = None, graph: str | None = None) -> Grant:
        grant = self.grant(request)
        authorize(grant, tenant=tenant if tenant is not None else (grant.tenant if grant else ""), action=action, graph=graph)
        assert grant is not None
        return grant

    def require_key_admin(self, request: Request, tenant: str) -> Grant:
        """Key management: an admin key of the tenant that is not limited to
        some graphs (a limited key could otherwise mint an unlimited one)."""
        grant = self.require(request, "admin", tenant)
        if grant.graphs:
            raise ApiError(403, "keys limited to some graphs cannot manage keys", "forbidden")
        return grant

    def graph_or_404(self, grant: Grant, name: str, action: str) -> GraphWorker:
        authorize(grant, tenant=grant.tenant, action=action, graph=name)
        worker = self.sup.worker(grant.tenant, name)
        if worker is None:
            raise ApiError(404, f"no graph named '{name}'", "not_found")
        return worker

    def visible(self, grant: Grant) -> list[GraphWorker]:
        return [w for w in self.sup.graphs(grant.tenant) if not grant.graphs or w.spec.graph in grant.graphs]

    def accumulator_graph(self, grant: Grant, name: str, graph: str | None, action: str) -> GraphWorker:
        """The graph holding accumulator ``name`` (``graph`` disambiguates)."""
        if graph is not None:
            worker = self.graph_or_404(grant, graph, action)
            if name not in _accumulator_names(worker):
                raise ApiError(404, f"graph '{graph}' has no accumulator '{name}'", "not_found")
            return worker
        matches = [w for w in self.visible(grant) if name in _accumulator_names(w)]
        if not matches:
            raise ApiError(404, f"no accumulator named '{name}'", "not_found")
        if len(matches) > 1:
            graphs = ", ".join(w.spec.graph for w in matches)
            raise ApiError(409, f"accumulator '{name}' exists in several graphs ({graphs}); add ?graph=NAME", "ambiguous")
        authorize(grant, tenant=grant.tenant, action=action, graph=matches[0].spec.graph)
        return matches[0]

    async def stats(self, worker: GraphWorker) -> dict[str, Any] | None:
        if worker.state != "running" or worker.control is None:
            return None
        try:
            result: dict[str, Any] = await worker.control.call("stats", timeout=5.0)
            return result
        except (WorkerUnavailable, OpFailed, TimeoutError):
            return None

    async def body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ApiError(400, f"request body is not valid JSON: {e}", "bad_json") from e
        if not isinstance(value, dict):
            raise ApiError(400, "request body must be a JSON object", "bad_json")
        return value

    # --- views --------------------------------------------------------------

    def graph_summary(self, worker: GraphWorker, stats: dict[str, Any] | None) -> dict[str, Any]:
        d = worker.describe
        record = worker.record
        return {
            "name": worker.spec.graph,
            "tenant": worker.spec.tenant,
            "state": worker.state,
            "version": worker.spec.version,
            "package": record.package if record else None,
            "accumulators": _accumulator_names(worker),
            "reaction_mode": d.get("reaction_mode"),
            "input_strategy": d.get("input_strategy"),
            "paused": bool(stats and stats["paused"]),
            "fire_count": stats["fire_count"] if stats else None,
            "last_fired_at": iso(stats["last_fired_at"]) if stats else None,
            "restarts": worker.restarts,
            "last_error": worker.last_error or (stats and stats.get("last_error")),
        }

    def graph_detail(self, worker: GraphWorker, stats: dict[str, Any] | None) -> dict[str, Any]:
        d = worker.describe
        accs = []
        for a in d.get("accumulators", []) or [{"name": n} for n in worker.accumulators]:
            s = (stats or {}).get("accumulators", {}).get(a["name"], {})
            accs.append({**a, **s, "graph": worker.spec.graph})
        events = sum(a.get("events", 0) for a in accs)
        record = worker.record
        return {
            "name": worker.spec.graph,
            "tenant": worker.spec.tenant,
            "health": {
                "state": worker.state,
                "engine": stats["health"] if stats else None,
                "last_fired_at": iso(stats["last_fired_at"]) if stats else None,
                "fire_count": stats["fire_count"] if stats else 0,
            },
            "accumulators": _accumulator_names(worker),
            "paused": bool(stats and stats["paused"]),
            "package": record.public() if record else None,
            "reaction_mode": d.get("reaction_mode"),
            "criteria": d.get("criteria_members"),
            "input_strategy": d.get("input_strategy"),
            "topology": {"nodes": d.get("nodes", []), "order": d.get("order", [])},
            "accumulator_health": accs,
            "events": events,
            "fires_failed": stats["fires_failed"] if stats else None,
            "queue_depth": stats["queue_depth"] if stats else None,
            "dead_letters": len(stats["dead_letters"]) if stats else None,
            "checkpoint": stats.get("checkpoint") if stats else None,
            "sources": stats.get("sources") if stats else None,
            "worker": {"pid": worker.pid, "restarts": worker.restarts, "started_at": iso(worker.started_at)},
            "last_error": worker.last_error or (stats.get("last_error") if stats else None),
        }

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        ok, reason = self.sup.ready()
        return json_response({"ready": ok, "reason": reason}, 200 if ok else 503)

    async def metrics(self, request: Request) -> Response:
        grant = self.require(request, "read")
        workers = self.visible(grant)
        stats = await asyncio.gather(*(self.stats(w) for w in workers))
        text = render_metrics(list(zip(workers, stats, strict=True)))
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def list_graphs(self, request: Request) -> Response:
        grant = self.require(request, "read")
        workers = self.visible(grant)
        stats = await asyncio.gather(*(self.stats(w) for w in workers))
        items = [self.graph_summary(w, s) for w, s in zip(workers, stats, strict=True)]
        reactors = [_reactor(w, s) for w, s in zip(workers, stats, strict=True)]
        return json_response({"items": items, "total": len(items), "reactors": reactors})

    async def get_graph(self, request: Request) -> Response:
        grant = self.require(request, "read")
        worker = self.graph_or_404(grant, request.path_params["name"], "read")
        return json_response(self.graph_detail(worker, await self.stats(worker)))

    async def list_accumulators(self, request: Request) -> Response:
        grant = self.require(request, "read")
        workers = self.visible(grant)
        stats = await asyncio.gather(*(self.stats(w) for w in workers))
        items = [a for w, s in zip(workers, stats, strict=True) for a in self.graph_detail(w, s)["accumulator_health"]]
        return json_response({"items": items, "total": len(items)})

    async def get_accumulator(self, request: Request) -> Response:
        grant = self.require(request, "read")
        worker = self.accumulator_graph(grant, request.path_params["name"], request.query_params.get("graph"), "read")
        detail = self.graph_detail(worker, await self.stats(worker))
        item = next(a for a in detail["accumulator_health"] if a["name"] == request.path_params["name"])
        return json_response(item)

    async def inject(self, request: Request) -> Response:
        grant = self.require(request, "write")
        name = request.path_params["name"]
        body = await self.body(request)
        worker = self.accumulator_graph(grant, name, body.get("graph") or request.query_params.get("graph"), "write")
        if "event" not in body:
            raise ApiError(400, 'body must be {"event": <value>}', "bad_request")
        result = await self.call(worker, "inject", [name, body["event"]], data=True)
        if result["refused"]:
            _, code, text = result["refused"][0]
            raise ApiError(503 if code == "backpressure" else 400, text, code)
        return json_response({"accepted": True, "graph": worker.spec.graph, "accumulator": name, **_durable(result)})

    async def list_reactors(self, request: Request) -> Response:
        grant = self.require(request, "read")
        workers = self.visible(grant)
        stats = await asyncio.gather(*(self.stats(w) for w in workers))
        items = [_reactor(w, s) for w, s in zip(workers, stats, strict=True)]
        return json_response({"items": items, "total": len(items)})

    async def get_reactor(self, request: Request) -> Response:
        grant = self.require(request, "read")
        worker = self.graph_or_404(grant, request.path_params["name"], "read")
        return json_response(_reactor(worker, await self.stats(worker)))

    async def fire(self, request: Request) -> Response:
        grant = self.require(request, "write")
        worker = self.graph_or_404(grant, request.path_params["name"], "write")
        return json_response(await self.call(worker, "fire", _fire_arg(await self.body(request)), data=True))

    async def pause(self, request: Request) -> Response:
        grant = self.require(request, "write")
        worker = self.graph_or_404(grant, request.path_params["name"], "write")
        return json_response(await self.call(worker, "pause", None, data=True))

    async def resume(self, request: Request) -> Response:
        grant = self.require(request, "write")
        worker = self.graph_or_404(grant, request.path_params["name"], "write")
        return json_response(await self.call(worker, "resume", None, data=True))

    async def fires(self, request: Request) -> Response:
        grant = self.require(request, "read")
        worker = self.graph_or_404(grant, request.path_params["name"], "read")
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= self.config.limits.fire_log_size:
            raise ApiError(
                400, f"limit must be an integer from 1 to {self.config.limits.fire_log_size}, got {raw!r}", "bad_request"
            )
        items = await self.call(worker, "fires", int(raw))
        return json_response({"items": items, "total": len(items)})

    async def call(self, worker: GraphWorker, op: str, arg: Any, data: bool = False) -> Any:
        client = worker.data if data else worker.control
        if worker.state != "running" or client is None:
            raise ApiError(
                503,
                f"graph '{worker.spec.graph}' is {worker.state}" + (f": {worker.last_error}" if worker.last_error else ""),
                "unavailable",
            )
        try:
            return await client.call(op, arg, timeout=60.0)
        except OpFailed as e:
            raise ApiError(400 if e.code in ("unknown_accumulator", "bad_request") else 409, str(e), e.code) from e
        except WorkerUnavailable as e:
            raise ApiError(503, str(e), "unavailable") from e
        except TimeoutError as e:
            raise ApiError(504, f"graph '{worker.spec.graph}' did not answer within 60 s", "timeout") from e

    # --- packages -----------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.require(request, "admin", tenant)
        limits = self.config.limits
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=10, max_part_size=limits.max_upload_bytes) as form:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise ApiError(400, "multipart field 'file' (the package archive) is missing", "missing_file")
                archive = await upload.read()
        else:
            archive = await request.body()
        if not archive:
            raise ApiError(400, "the upload is empty; send the archive as multipart field 'file'", "missing_file")
        grant = self.grant(request)
        assert grant is not None
        try:
            record, replaced = await self.sup.deploy(tenant, archive, allowed=grant.graphs or None)
        except DeployError as e:
            raise ApiError(e.status, str(e), e.code, problems=e.problems) from e
        body = {**record.public(), "state": "starting", "replaced": replaced.version if replaced else None}
        return json_response(body, 201 if replaced is None else 200)

    async def list_packages(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.require(request, "read", tenant)
        items = []
        grant = self.grant(request)
        assert grant is not None
        for r in self.sup.registry.list(tenant):
            if grant.graphs and r.graph not in grant.graphs:
                continue
            worker = self.sup.worker(tenant, r.graph)
            items.append({**r.public(), "state": worker.state if worker else "stopped"})
        return json_response({"items": items, "total": len(items)})

    async def get_package(self, request: Request) -> Response:
        tenant, name = request.path_params["tenant"], request.path_params["name"]
        self.require(request, "read", tenant, name)
        record = self.sup.registry.get(tenant, name)
        if record is None:
            raise ApiError(404, f"no workflow named '{name}'", "not_found")
        worker = self.sup.worker(tenant, name)
        return json_response({**record.public(), "state": worker.state if worker else "stopped"})

    async def delete_package(self, request: Request) -> Response:
        tenant, name = request.path_params["tenant"], request.path_params["name"]
        self.require(request, "admin", tenant, name)
        record = await self.sup.remove(tenant, name)
        if record is None:
            raise ApiError(404, f"no workflow named '{name}'", "not_found")
        return json_response({"deleted": name, "version": record.version})

    async def restart_package(self, request: Request) -> Response:
        tenant, name = request.path_params["tenant"], request.path_params["name"]
        self.require(request, "admin", tenant, name)
        worker = await self.sup.restart(tenant, name)
        if worker is None:
            raise ApiError(404, f"no workflow named '{name}'", "not_found")
        return json_response({"restarting": name})

    # --- keys ---------------------------------------------------------------

    async def list_keys(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.require_key_admin(request, tenant)
        items = [_grant_json(g) for g in self.keys.list(tenant)]
        return json_response({"items": items, "total": len(items)})

    async def create_key(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.require_key_admin(request, tenant)
        body = await self.body(request)
        graphs = body.get("graphs") or []
        if not isinstance(graphs, list) or not all(isinstance(g, str) for g in graphs):
            raise ApiError(400, "graphs must be a list of graph names", "bad_request")
        try:
            key, grant = self.keys.create(tenant, str(body.get("role", "read")), tuple(graphs), str(body.get("label", "")))
        except ValueError as e:
            raise ApiError(400, str(e), "bad_request") from e
        return json_response({"key": key, **_grant_json(grant)}, 201)

    async def revoke_key(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.require_key_admin(request, tenant)
        if not self.keys.revoke(request.path_params["key_id"], tenant):
            raise ApiError(404, f"no active key with id '{request.path_params['key_id']}'", "not_found")
        return json_response({"revoked": request.path_params["key_id"]})


def _accumulator_names(worker: GraphWorker) -> list[str]:
    described = worker.describe.get("accumulators")
    if described:
        return [a["name"] for a in described]
    return list(worker.accumulators)


def _reactor(worker: GraphWorker, stats: dict[str, Any] | None) -> dict[str, Any]:
    d = worker.describe
    return {
        "name": worker.spec.graph,
        "graph": worker.spec.graph,
        "state": worker.state,
        "reaction_mode": d.get("reaction_mode"),
        "criteria": d.get("criteria_members"),
        "input_strategy": d.get("input_strategy"),
        "accumulators": _accumulator_names(worker),
        "paused": bool(stats and stats["paused"]),
        "fire_count": stats["fire_count"] if stats else None,
        "last_fired_at": iso(stats["last_fired_at"]) if stats else None,
        "queue_depth": stats["queue_depth"] if stats else None,
        "pending": stats["pending"] if stats else None,
    }


def _grant_json(g: Grant) -> dict[str, Any]:
    return {
        "id": g.key_id,
        "tenant": g.tenant,
        "role": g.role,
        "graphs": list(g.graphs),
        "label": g.label,
        "created_at": iso(g.created_at),
    }


def _durable(result: dict[str, Any]) -> dict[str, Any]:
    if result.get("durable") is False:
        return {"durable": False, "checkpoint_error": result.get("checkpoint_error")}
    return {"durable": True}


def _fire_arg(body: dict[str, Any]) -> dict[str, Any] | None:
    mode = body.get("mode", "fire_with" if "fire_with" in body else "force_fire")
    if mode == "force_fire":
        return None
    if mode == "fire_with":
        values = body.get("fire_with", body.get("inputs"))
        if not isinstance(values, dict) or not values:
            raise ApiError(400, 'fire_with needs {"fire_with": {"<accumulator>": <value>, ...}}', "bad_request")
        return {"fire_with": values}
    raise ApiError(400, f"mode must be 'force_fire' or 'fire_with', got {mode!r}", "bad_request")


# --- WebSockets ---------------------------------------------------------------


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
        grant = api.require(ws, "write")
        worker = api.accumulator_graph(grant, name, ws.query_params.get("graph"), "write")
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
        grant = api.require(ws, "read")
        api.graph_or_404(grant, name, "read")
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
            worker = api.graph_or_404(grant, name, "read")
            if op == "get_state":
                result = await api.call(worker, "state", None)
            elif op in writes:
                authorize(grant, tenant=grant.tenant, action="write", graph=name)
                arg: Any = None
                if op == "fire_with":
                    arg = _fire_arg({"mode": "fire_with", "fire_with": command.get("inputs", command.get("fire_with"))})
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


# --- the application -----------------------------------------------------------


def _handler(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except AuthError as e:
            return error_response(e.status, str(e), e.code)
        except ApiError as e:
            return error_response(e.status, str(e), e.code, **e.extra)
        except BodyTooLarge as e:
            return error_response(413, str(e), "too_large")
        except HTTPException as e:
            # Starlette's own (e.g. a malformed or oversized multipart form).
            code = "too_large" if e.status_code == 413 else "bad_request"
            return error_response(e.status_code, str(e.detail), code)

    return wrapped


def create_app(config: ServerConfig, supervisor: Supervisor | None = None, keys: KeyStore | None = None) -> Starlette:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    sup = supervisor or Supervisor(config)
    key_store = keys or KeyStore(config.data_dir / "keys.db")
    api = Api(config, sup, key_store)

    def r(path: str, fn: Callable[[Request], Awaitable[Response]], methods: list[str]) -> Route:
        return Route(path, _handler(fn), methods=methods)

    routes: list[Route | WebSocketRoute] = [
        r("/health", api.health, ["GET"]),
        r("/ready", api.ready, ["GET"]),
        r("/metrics", api.metrics, ["GET"]),
    ]
    for prefix in ("", "/v1"):
        routes += [
            r(prefix + "/tenants/{tenant}/workflows", api.upload, ["POST"]),
            r(prefix + "/tenants/{tenant}/workflows", api.list_packages, ["GET"]),
            r(prefix + "/tenants/{tenant}/workflows/{name}", api.get_package, ["GET"]),
            r(prefix + "/tenants/{tenant}/workflows/{name}", api.delete_package, ["DELETE"]),
            r(prefix + "/tenants/{tenant}/workflows/{name}/restart", api.restart_package, ["POST"]),
        ]
    routes += [
        r("/v1/tenants/{tenant}/keys", api.list_keys, ["GET"]),
        r("/v1/tenants/{tenant}/keys", api.create_key, ["POST"]),
        r("/v1/tenants/{tenant}/keys/{key_id}", api.revoke_key, ["DELETE"]),
        r("/v1/health/graphs", api.list_graphs, ["GET"]),
        r("/v1/health/graphs/{name}", api.get_graph, ["GET"]),
        r("/v1/health/accumulators", api.list_accumulators, ["GET"]),
        r("/v1/health/accumulators/{name}", api.get_accumulator, ["GET"]),
        r("/v1/health/accumulators/{name}/inject", api.inject, ["POST"]),
        r("/v1/health/reactors", api.list_reactors, ["GET"]),
        r("/v1/health/reactors/{name}", api.get_reactor, ["GET"]),
        r("/v1/health/reactors/{name}/fire", api.fire, ["POST"]),
        r("/v1/health/reactors/{name}/pause", api.pause, ["POST"]),
        r("/v1/health/reactors/{name}/resume", api.resume, ["POST"]),
        r("/v1/health/reactors/{name}/fires", api.fires, ["GET"]),
        WebSocketRoute("/v1/ws/accumulator/{name}", lambda ws: ws_accumulator(api, ws)),
        WebSocketRoute("/v1/ws/reactor/{name}", lambda ws: ws_reactor(api, ws)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sup.start()
        try:
            yield
        finally:
            await sup.shutdown()
            key_store.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route {request.method} {request.url.path}", "not_found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.api = api
    app.state.supervisor = sup
    limits = config.limits
    upload_paths = ("/tenants/", "/v1/tenants/")

    def limit_for(path: str, method: str) -> int:
        if method == "POST" and path.startswith(upload_paths) and path.rstrip("/").endswith("/workflows"):
            return limits.max_upload_bytes
        return limits.max_body_bytes

    return BodyLimit(app, limit_for)  # type: ignore[return-value]
