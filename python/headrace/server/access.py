"""Who may see what: the caller's key, its tenant and its graph scopes.

Graphs are looked up in the key's own tenant only, so another tenant's graph
is a 404, never a 403.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket

from headrace.errors import InvalidNameError
from headrace.names import check_name
from headrace.server.auth import AuthError, Grant, KeyStore, authorize
from headrace.server.errors import ApiError
from headrace.server.views import accumulator_names
from headrace.supervisor.process import GraphWorker
from headrace.supervisor.supervisor import Supervisor

__all__ = ["Access", "checked", "token"]


def checked(kind: str, value: str) -> str:
    """``value`` if it is a valid ``kind`` name, else a 400 naming the rule
    (before any lookup: a hostile name never reaches a path or a query)."""
    try:
        return check_name(kind, value)
    except InvalidNameError as e:
        raise ApiError(400, str(e), "bad_name") from e


def token(headers: Any, query: Any) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    key: str | None = headers.get("x-api-key") or query.get("token")
    return key


class Access:
    def __init__(self, supervisor: Supervisor, keys: KeyStore, allowed_origins: tuple[str, ...] = ()) -> None:
        self.sup = supervisor
        self.keys = keys
        self.allowed_origins = allowed_origins

    def grant(self, request: Request | WebSocket) -> Grant | None:
        if isinstance(request, Request) and "token" in request.query_params:
            # URLs end up in logs, proxies and browser histories; only a
            # WebSocket handshake (where browsers cannot set headers) may carry a key.
            raise AuthError(
                "?token= is accepted only on WebSocket routes; send the key in the Authorization header",
                status=401,
                code="token_in_query",
            )
        return self.keys.lookup(token(request.headers, request.query_params))

    def check_origin(self, ws: WebSocket) -> None:
        """A browser's handshake must come from an allowed origin (a page on
        another site could otherwise use the browser's reach); clients that
        send no Origin are not browsers and are let through."""
        origin = ws.headers.get("origin")
        if origin is None or "*" in self.allowed_origins or origin in self.allowed_origins:
            return
        raise ApiError(
            403,
            f"WebSocket origin {origin!r} is not allowed (allowed: {', '.join(self.allowed_origins) or 'none'};"
            " set HEADRACE_ALLOWED_ORIGINS)",
            "origin_not_allowed",
        )

    def require(self, request: Request | WebSocket, action: str, tenant: str | None = None, graph: str | None = None) -> Grant:
        if tenant is not None:
            checked("tenant", tenant)
        if graph is not None:
            checked("graph", graph)
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
        checked("graph", name)
        authorize(grant, tenant=grant.tenant, action=action, graph=name)
        worker = self.sup.worker(grant.tenant, name)
        if worker is None:
            raise ApiError(404, f"no graph named '{name}'", "not_found")
        return worker

    def visible(self, grant: Grant) -> list[GraphWorker]:
        return [w for w in self.sup.graphs(grant.tenant) if not grant.graphs or w.spec.graph in grant.graphs]

    def accumulator_graph(self, grant: Grant, name: str, graph: str | None, action: str) -> GraphWorker:
        """The graph holding accumulator ``name`` (``graph`` disambiguates)."""
        checked("accumulator", name)
        if graph is not None:
            worker = self.graph_or_404(grant, graph, action)
            if name not in accumulator_names(worker):
                raise ApiError(404, f"graph '{graph}' has no accumulator '{name}'", "not_found")
            return worker
        matches = [w for w in self.visible(grant) if name in accumulator_names(w)]
        if not matches:
            raise ApiError(404, f"no accumulator named '{name}'", "not_found")
        if len(matches) > 1:
            graphs = ", ".join(w.spec.graph for w in matches)
            raise ApiError(409, f"accumulator '{name}' exists in several graphs ({graphs}); add ?graph=NAME", "ambiguous")
        authorize(grant, tenant=grant.tenant, action=action, graph=matches[0].spec.graph)
        return matches[0]
