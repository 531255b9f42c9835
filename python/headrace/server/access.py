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
from headrace.server.auth import Grant, KeyStore, authorize
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
    def __init__(self, supervisor: Supervisor, keys: KeyStore) -> None:
        self.sup = supervisor
        self.keys = keys

    def grant(self, request: Request | WebSocket) -> Grant | None:
        return self.keys.lookup(token(request.headers, request.query_params))

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
