"""The REST handlers.

Every route resolves the caller's key to a grant and checks it (see
:mod:`headrace.server.access`): reads need ``read``; inject, push, fire,
pause and resume need ``write``; uploads, deletes and keys need ``admin``.
Errors are ``{"error", "code"}`` (:mod:`headrace.server.errors`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from headrace.server.access import Access, checked
from headrace.server.auth import KeyStore
from headrace.server.config import ServerConfig
from headrace.server.errors import ApiError, json_response, supervisor_error
from headrace.server.fires import page_of
from headrace.server.limits import ByteBudget
from headrace.server.metrics import render_metrics
from headrace.server.revocation import OpenSockets
from headrace.server.views import durable, grant_json, graph_detail, graph_summary, reactor
from headrace.supervisor.client import OpFailed, WorkerUnavailable
from headrace.supervisor.process import GraphWorker
from headrace.supervisor.supervisor import DeployError, Supervisor

T = TypeVar("T")


def _found(value: T | None, name: str) -> T:
    """``value``, or a 404 naming the workflow that is not there."""
    if value is None:
        raise ApiError(404, f"no workflow named '{name}'", "not_found")
    return value


#: Refusal codes that say "not now": the same event may be sent again.
RETRY_LATER = frozenset({"backpressure", "unavailable", "fire_log_unavailable", "store_unavailable"})

__all__ = ["Api", "fire_arg"]

#: Seconds an op may take in a worker before the API answers 504.
OP_TIMEOUT = 60.0
#: Seconds after which the server is ready even if a graph registered at start (past the
#: supervisor's 120 s start timeout) is still starting: one graph must not keep it out for good.
BOOT_GRACE = 150.0


class Api:
    def __init__(self, config: ServerConfig, supervisor: Supervisor, keys: KeyStore) -> None:
        self.config = config
        self.sup = supervisor
        self.keys = keys
        self.access = Access(supervisor, keys, config.allowed_origins)
        #: Set once the graphs registered at start have left "starting" (see ready()).
        self.booted = False
        self.created_at = time.monotonic()
        self.stopping = False
        #: Open WebSockets by key, closed when their key is revoked.
        self.sockets = OpenSockets(keys)
        #: Uploads being unpacked and checked at once (more wait their turn).
        self.uploads = asyncio.Semaphore(config.limits.upload_concurrency)
        #: Bytes pushed over WebSockets and not yet acknowledged, server-wide.
        self.inflight = ByteBudget(config.limits.max_inflight_bytes)

    async def visible_stats(self, request: Request) -> list[tuple[GraphWorker, dict[str, Any] | None]]:
        """The graphs the request's read key sees, each with its worker's stats."""
        workers = self.access.visible(self.access.require(request, "read"))
        stats = await asyncio.gather(*(self.stats(w) for w in workers))
        return list(zip(workers, stats, strict=True))

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

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Ready means this server can serve: every graph registered when it
        started has been started (each is running, or has failed), and it is
        not shutting down. One graph's state never makes the whole server
        unready (one tenant's crash loop must not take every tenant out of a
        load balancer); each graph's state is in ``/v1/health/graphs``."""
        states = Counter(w.state for w in self.sup.workers.values())
        body: dict[str, Any] = {"graphs": dict(sorted(states.items()))}
        if self.stopping:
            return json_response({"ready": False, "reason": "shutting down", **body}, 503)
        if not self.booted:
            if states["starting"] and time.monotonic() - self.created_at < BOOT_GRACE:
                return json_response({"ready": False, "reason": f"{states['starting']} graph(s) starting", **body}, 503)
            self.booted = True
        return json_response({"ready": True, "reason": f"serving {sum(states.values())} graph(s)", **body})

    async def metrics(self, request: Request) -> Response:
        text = render_metrics(await self.visible_stats(request))
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def list_graphs(self, request: Request) -> Response:
        graphs = await self.visible_stats(request)
        items = [graph_summary(w, s) for w, s in graphs]
        reactors = [reactor(w, s) for w, s in graphs]
        return json_response({"items": items, "total": len(items), "reactors": reactors})

    async def get_graph(self, request: Request) -> Response:
        grant = self.access.require(request, "read")
        worker = self.access.graph_or_404(grant, request.path_params["name"], "read")
        return json_response(graph_detail(worker, await self.stats(worker)))

    async def list_accumulators(self, request: Request) -> Response:
        items = [a for w, s in await self.visible_stats(request) for a in graph_detail(w, s)["accumulator_health"]]
        return json_response({"items": items, "total": len(items)})

    async def get_accumulator(self, request: Request) -> Response:
        grant = self.access.require(request, "read")
        worker = self.access.accumulator_graph(grant, request.path_params["name"], request.query_params.get("graph"), "read")
        detail = graph_detail(worker, await self.stats(worker))
        item = next(a for a in detail["accumulator_health"] if a["name"] == request.path_params["name"])
        return json_response(item)

    async def inject(self, request: Request) -> Response:
        grant = self.access.require(request, "write")
        name = request.path_params["name"]
        body = await self.body(request)
        worker = self.access.accumulator_graph(grant, name, body.get("graph") or request.query_params.get("graph"), "write")
        if "event" not in body:
            raise ApiError(400, 'body must be {"event": <value>}', "bad_request")
        result = await self.call(worker, "inject", [name, body["event"]], data=True)
        if result["refused"]:
            _, code, text = result["refused"][0]
            # Refusals of the moment (resend later) are 503; a refusal of the event itself is 400.
            raise ApiError(503 if code in RETRY_LATER else 400, text, code)
        return json_response({"accepted": True, "graph": worker.spec.graph, "accumulator": name, **durable(result)})

    async def list_reactors(self, request: Request) -> Response:
        items = [reactor(w, s) for w, s in await self.visible_stats(request)]
        return json_response({"items": items, "total": len(items)})

    async def get_reactor(self, request: Request) -> Response:
        grant = self.access.require(request, "read")
        worker = self.access.graph_or_404(grant, request.path_params["name"], "read")
        return json_response(reactor(worker, await self.stats(worker)))

    async def fire(self, request: Request) -> Response:
        grant = self.access.require(request, "write")
        worker = self.access.graph_or_404(grant, request.path_params["name"], "write")
        return json_response(await self.call(worker, "fire", fire_arg(await self.body(request)), data=True))

    async def pause(self, request: Request) -> Response:
        grant = self.access.require(request, "write")
        worker = self.access.graph_or_404(grant, request.path_params["name"], "write")
        return json_response(await self.call(worker, "pause", None, data=True))

    async def resume(self, request: Request) -> Response:
        grant = self.access.require(request, "write")
        worker = self.access.graph_or_404(grant, request.path_params["name"], "write")
        return json_response(await self.call(worker, "resume", None, data=True))

    async def fires(self, request: Request) -> Response:
        grant = self.access.require(request, "read")
        worker = self.access.graph_or_404(grant, request.path_params["name"], "read")
        limits = self.config.limits
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= limits.fire_log_size:
            raise ApiError(400, f"limit must be an integer from 1 to {limits.fire_log_size}, got {raw!r}", "bad_request")
        cursor = request.query_params.get("cursor")
        if cursor is not None and not cursor.isdigit():
            raise ApiError(400, f"cursor must be a next_cursor from a previous page, got {cursor!r}", "bad_request")
        page = await page_of(
            lambda arg: self.call(worker, "fires", arg),
            before=int(cursor) if cursor is not None else None,
            limit=int(raw),
            max_bytes=limits.fires_page_bytes,
        )
        return json_response(page.json())

    async def call(self, worker: GraphWorker, op: str, arg: Any, data: bool = False) -> Any:
        client = worker.data if data else worker.control
        if worker.state != "running" or client is None:
            raise ApiError(
                503,
                f"graph '{worker.spec.graph}' is {worker.state}" + (f": {worker.last_error}" if worker.last_error else ""),
                "unavailable",
            )
        try:
            return await client.call(op, arg, timeout=OP_TIMEOUT)
        except (OpFailed, WorkerUnavailable, TimeoutError) as e:
            raise supervisor_error(e, worker.spec.graph, OP_TIMEOUT) from e

    # --- packages -----------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.access.require(request, "admin", tenant)
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
        grant = self.access.grant(request)
        assert grant is not None
        try:
            # Unpacking and checking run off the event loop, a few at a time.
            async with self.uploads:
                record, replaced = await self.sup.deploy(tenant, archive, allowed=grant.graphs or None)
        except DeployError as e:
            raise supervisor_error(e, "", OP_TIMEOUT) from e
        body = {**record.public(), "state": "starting", "replaced": replaced.version if replaced else None}
        return json_response(body, 201 if replaced is None else 200)

    async def list_packages(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.access.require(request, "read", tenant)
        items = []
        grant = self.access.grant(request)
        assert grant is not None
        for r in self.sup.registry.list(tenant):
            if grant.graphs and r.graph not in grant.graphs:
                continue
            worker = self.sup.worker(tenant, r.graph)
            items.append({**r.public(), "state": worker.state if worker else "stopped"})
        return json_response({"items": items, "total": len(items)})

    async def get_package(self, request: Request) -> Response:
        tenant, name = request.path_params["tenant"], request.path_params["name"]
        self.access.require(request, "read", tenant, name)
        record = _found(self.sup.registry.get(tenant, name), name)
        worker = self.sup.worker(tenant, name)
        return json_response({**record.public(), "state": worker.state if worker else "stopped"})

    async def delete_package(self, request: Request) -> Response:
        tenant, name = request.path_params["tenant"], request.path_params["name"]
        self.access.require(request, "admin", tenant, name)
        record = _found(await self.sup.remove(tenant, name), name)
        return json_response({"deleted": name, "version": record.version})

    async def restart_package(self, request: Request) -> Response:
        tenant, name = request.path_params["tenant"], request.path_params["name"]
        self.access.require(request, "admin", tenant, name)
        _found(await self.sup.restart(tenant, name), name)
        return json_response({"restarting": name})

    # --- keys ---------------------------------------------------------------

    async def list_keys(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.access.require_key_admin(request, tenant)
        items = [grant_json(g) for g in self.keys.list(tenant)]
        return json_response({"items": items, "total": len(items)})

    async def create_key(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.access.require_key_admin(request, tenant)
        body = await self.body(request)
        graphs = body.get("graphs")
        if graphs is None:
            graphs = []  # not limited: every graph of the tenant
        if not isinstance(graphs, list) or not all(isinstance(g, str) for g in graphs):
            raise ApiError(400, f"graphs must be a list of graph names, got {graphs!r}", "bad_request")
        for graph in graphs:
            checked("graph", graph)
        try:
            key, grant = self.keys.create(tenant, str(body.get("role", "read")), tuple(graphs), str(body.get("label", "")))
        except ValueError as e:
            raise ApiError(400, str(e), "bad_request") from e
        return json_response({"key": key, **grant_json(grant)}, 201)

    async def revoke_key(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        self.access.require_key_admin(request, tenant)
        if not self.keys.revoke(request.path_params["key_id"], tenant):
            raise ApiError(404, f"no active key with id '{request.path_params['key_id']}'", "not_found")
        self.sockets.revoke(request.path_params["key_id"])
        return json_response({"revoked": request.path_params["key_id"]})


def fire_arg(body: dict[str, Any]) -> dict[str, Any] | None:
    mode = body.get("mode", "fire_with" if "fire_with" in body else "force_fire")
    if mode == "force_fire":
        return None
    if mode == "fire_with":
        values = body.get("fire_with", body.get("inputs"))
        if not isinstance(values, dict) or not values:
            raise ApiError(400, 'fire_with needs {"fire_with": {"<accumulator>": <value>, ...}}', "bad_request")
        return {"fire_with": values}
    raise ApiError(400, f"mode must be 'force_fire' or 'fire_with', got {mode!r}", "bad_request")
