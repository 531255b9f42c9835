"""The HTTP/WebSocket API (Starlette): the route table and the lifespan.

The handlers live in :mod:`headrace.server.http` and :mod:`headrace.server.ws`,
access checks in :mod:`headrace.server.access`, the JSON views in
:mod:`headrace.server.views`, and errors in :mod:`headrace.server.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from headrace.server.auth import KeyStore
from headrace.server.config import ServerConfig
from headrace.server.errors import error_response, handler, internal_error
from headrace.server.http import Api
from headrace.server.limits import BodyLimit, ConnectionLimit
from headrace.server.ws import ws_accumulator, ws_reactor
from headrace.supervisor.supervisor import Supervisor

__all__ = ["create_app"]
def create_app(config: ServerConfig, supervisor: Supervisor | None = None, keys: KeyStore | None = None) -> Starlette:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    sup = supervisor or Supervisor(config)
    key_store = keys or KeyStore(config.data_dir / "keys.db")
    api = Api(config, sup, key_store)

    def r(path: str, fn: Callable[[Request], Awaitable[Response]], methods: list[str]) -> Route:
        return Route(path, handler(fn), methods=methods)

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
        watcher = asyncio.create_task(api.sockets.watch(), name="revocation-watcher")
        try:
            yield
        finally:
            api.stopping = True
            watcher.cancel()
            await sup.shutdown()
            key_store.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route {request.method} {request.url.path}", "not_found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")

    async def internal(request: Request, exc: Exception) -> Response:
        return internal_error(request, exc)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed, 500: internal},
    )
    app.state.api = api
    app.state.supervisor = sup
    limits = config.limits
    upload_paths = ("/tenants/", "/v1/tenants/")

    def limit_for(path: str, method: str) -> int:
        if method == "POST" and path.startswith(upload_paths) and path.rstrip("/").endswith("/workflows"):
            return limits.max_upload_bytes
        return limits.max_body_bytes

    return ConnectionLimit(BodyLimit(app, limit_for, limits.body_deadline), limits.max_connections)  # type: ignore[return-value]
