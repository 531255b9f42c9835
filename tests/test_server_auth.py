"""End to end against a real `headrace serve`: who may call what, uploads that
must be refused, and the limits that protect the server.

One server for the module, with

- tenant ``public``: graphs ``prices`` (accumulator ``price``) and ``beta``
  (accumulator ``tick``); keys of every role, keys scoped to ``prices``;
- tenant ``other``: graph ``alpha`` (accumulator ``quote``) and its own admin
  key (made with the CLI before the server starts). No graph or accumulator
  name is shared between the tenants, so a 404 across tenants can only come
  from the tenant check.

Rules checked (see headrace.server.auth): no or unknown key -> 401; another
tenant's graph, or a graph outside a key's scope -> 404, never 403; a role
too low -> 403 (read < write < admin: reads need read; inject, push, fire,
pause and resume need write; uploads, deletes, restarts and keys need admin).
Errors are JSON ``{"error", "code"}``.
"""

from __future__ import annotations

import io
import os
import select
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from server_util import PRICES, Server, new_key, package_bytes
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from headrace.server.config import ServerLimits

LIMITS = ServerLimits()

BETA = """
import headrace as hr

@hr.passthrough_accumulator
def tick(event):
    return event

graph = hr.ComputationGraph("beta", accumulators=[tick])

@graph.node
def seen(tick):
    return tick
"""

ALPHA = """
import headrace as hr

@hr.passthrough_accumulator
def quote(event):
    return event

graph = hr.ComputationGraph("alpha", accumulators=[quote])

@graph.node
def last(quote):
    return quote
"""


def graph_source(name: str, accumulator: str) -> str:
    """A one-accumulator graph for throwaway deploys (unique accumulator names,
    so ``/v1/health/accumulators/{name}`` never becomes ambiguous)."""
    return BETA.replace('"beta"', f'"{name}"').replace("tick", accumulator)


# --- helpers -----------------------------------------------------------------


def show(r: httpx.Response) -> str:
    return f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:2000]}"


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, show(r)
    assert r.headers.get("content-type", "").startswith("application/json"), show(r)
    body: dict[str, Any] = r.json()
    assert isinstance(body.get("error"), str) and body["error"], show(r)
    if code is not None:
        assert body.get("code") == code, show(r)
    return body


def cli_key(data_dir: Path, tenant: str, role: str, label: str) -> str:
    """A key made with `headrace keys create` (before the server runs)."""
    p = subprocess.run(
        [sys.executable, "-m", "headrace", "keys", "create", "--tenant", tenant, "--role", role,
         "--label", label, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    key = p.stdout.strip().splitlines()[-1]
    assert key.startswith("clk_"), p.stdout
    return key


@dataclass
class Env:
    server: Server
    #: An httpx client with no default credentials.
    anon: httpx.Client
    #: Caller name -> key. ``admin`` is the server's HEADRACE_ADMIN_KEY.
    keys: dict[str, str] = field(default_factory=dict)
    #: Caller name -> key id (keys made through the API).
    ids: dict[str, str] = field(default_factory=dict)

    def call(
        self,
        method: str,
        path: str,
        key: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        return self.anon.request(method, path, headers=h, **kwargs)

    def as_(self, caller: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(method, path, self.keys[caller], **kwargs)

    def create_key(self, role: str, graphs: list[str] | None = None, label: str = "", key: str | None = None) -> tuple[str, str]:
        r = self.call(
            "POST",
            "/v1/tenants/public/keys",
            key or self.keys["admin"],
            json={"role": role, "graphs": graphs or [], "label": label},
        )
        assert r.status_code == 201, show(r)
        body = r.json()
        assert body["key"].startswith("clk_") and body["role"] == role, show(r)
        return body["key"], body["id"]

    def detail(self, graph: str = "prices", caller: str = "admin") -> dict[str, Any]:
        r = self.as_(caller, "GET", f"/v1/health/graphs/{graph}")
        assert r.status_code == 200, show(r)
        body: dict[str, Any] = r.json()
        return body

    def snapshot(self) -> dict[str, Any]:
        """What must not change when a request is refused."""
        prices = self.detail("prices")
        alpha = self.detail("alpha", caller="other")
        return {
            "prices": (prices["health"]["state"], prices["worker"]["pid"], prices["package"]),
            "alpha": (alpha["health"]["state"], alpha["worker"]["pid"], alpha["package"]),
            "public_graphs": sorted(g["name"] for g in self.as_("admin", "GET", "/v1/health/graphs").json()["items"]),
            "other_graphs": sorted(g["name"] for g in self.as_("other", "GET", "/v1/health/graphs").json()["items"]),
            "public_keys": sorted(k["id"] for k in self.as_("admin", "GET", "/v1/tenants/public/keys").json()["items"]),
        }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("server-auth")
    data_dir = root / "data"
    other_admin = cli_key(data_dir, "other", "admin", "other-admin")
    server = Server(data_dir)
    failed_before = request.session.testsfailed
    anon = httpx.Client(base_url=server.url, timeout=60.0)
    try:
        server.start()
        server.deploy(package_bytes("prices", PRICES), "prices")
        server.deploy(package_bytes("beta", BETA), "beta")
        server.deploy(package_bytes("alpha", ALPHA), "alpha", tenant="other", key=other_admin)
        e = Env(server, anon, keys={"admin": server.key, "other": other_admin})
        for name, role, graphs in [
            ("read", "read", []),
            ("write", "write", []),
            ("admin2", "admin", []),
            ("scoped", "read", ["prices"]),
            ("scoped_write", "write", ["prices"]),
            ("scoped_admin", "admin", ["prices"]),
            # The target of the revoke rows of the matrix (which must all be refused).
            ("victim", "read", []),
        ]:
            e.keys[name], e.ids[name] = e.create_key(role, graphs, label=f"test-{name}")
        yield e
    finally:
        anon.close()
        server.close()
        if request.session.testsfailed > failed_before:
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print(f"\n--- server log (tail) ---\n{server.log()}\n--- end of server log ---")


# --- the matrix: every endpoint x every kind of caller -------------------------

UPLOAD = "upload"  # marker: the body is a (valid) package for graph 'intruder'

# (method, path, body, role needed, destructive). Paths name public's
# objects; "{victim}" is the id of a key the revoke rows try to revoke.
ENDPOINTS: list[tuple[str, str, Any, str, bool]] = [
    ("GET", "/metrics", None, "read", False),
    *[
        row
        for prefix in ("", "/v1")
        for row in [
            ("POST", f"{prefix}/tenants/public/workflows", UPLOAD, "admin", True),
            ("GET", f"{prefix}/tenants/public/workflows", None, "read", False),
            ("GET", f"{prefix}/tenants/public/workflows/prices", None, "read", False),
            ("DELETE", f"{prefix}/tenants/public/workflows/prices", None, "admin", True),
            ("POST", f"{prefix}/tenants/public/workflows/prices/restart", None, "admin", True),
        ]
    ],
    ("GET", "/v1/tenants/public/keys", None, "admin", False),
    ("POST", "/v1/tenants/public/keys", {"role": "read", "label": "matrix-throwaway"}, "admin", False),
    ("DELETE", "/v1/tenants/public/keys/{victim}", None, "admin", True),
    ("GET", "/v1/health/graphs", None, "read", False),
    ("GET", "/v1/health/graphs/prices", None, "read", False),
    ("GET", "/v1/health/accumulators", None, "read", False),
    ("GET", "/v1/health/accumulators/price", None, "read", False),
    ("POST", "/v1/health/accumulators/price/inject", {"event": {"p": 1}}, "write", False),
    ("GET", "/v1/health/reactors", None, "read", False),
    ("GET", "/v1/health/reactors/prices", None, "read", False),
    ("POST", "/v1/health/reactors/prices/fire", {}, "write", False),
    ("POST", "/v1/health/reactors/prices/pause", None, "write", False),
    ("POST", "/v1/health/reactors/prices/resume", None, "write", False),
    ("GET", "/v1/health/reactors/prices/fires", None, "read", False),
]

#: Endpoints that list the caller's own tenant (no tenant or graph in the path).
OWN_TENANT_LISTS = {"/metrics", "/v1/health/graphs", "/v1/health/accumulators", "/v1/health/reactors"}

RANK = {"read": 0, "write": 1, "admin": 2}

#: Caller -> how it authenticates. Bad credentials first, then real keys.
BAD_CREDENTIALS: dict[str, dict[str, str]] = {
    "no_key": {},
    "unknown_clk_key": {"Authorization": "Bearer " + new_key()},
    "bearer_garbage": {"Authorization": "Bearer garbage"},
    "empty_bearer": {"Authorization": "Bearer"},
    "basic_scheme": {"Authorization": "Basic xyz"},
    "unknown_x_api_key": {"X-Api-Key": new_key()},
}


def matrix() -> Iterator[Any]:
    for method, path, body, role, destructive in ENDPOINTS:
        rid = f"{method} {path}"
        for caller in BAD_CREDENTIALS:
            yield pytest.param(method, path, body, destructive, caller, 401, id=f"{rid} [{caller}]")
        own_list = path in OWN_TENANT_LISTS
        yield pytest.param(
            method, path, body, destructive, "other", 200 if own_list else 404, id=f"{rid} [other_tenant_admin]"
        )
        for caller in ("read", "write", "admin"):
            allowed = RANK[caller] >= RANK[role]
            if allowed and destructive:
                continue  # covered with throwaway objects in test_admin_lifecycle_on_throwaway_objects
            yield pytest.param(method, path, body, destructive, caller, 200 if allowed else 403, id=f"{rid} [{caller}]")


@pytest.mark.parametrize(("method", "path", "body", "destructive", "caller", "expected"), list(matrix()))
def test_endpoint_matrix(
    env: Env, method: str, path: str, body: Any, destructive: bool, caller: str, expected: int
) -> None:
    path = path.replace("{victim}", env.ids["victim"])
    before = env.snapshot() if destructive else None
    kwargs: dict[str, Any] = {}
    if body == UPLOAD:
        kwargs["files"] = {"file": ("pkg.tar.gz", package_bytes("intruder", graph_source("intruder", "sneak")))}
    elif body is not None:
        kwargs["json"] = body
    if caller in BAD_CREDENTIALS:
        r = env.call(method, path, headers=BAD_CREDENTIALS[caller], **kwargs)
    else:
        r = env.as_(caller, method, path, **kwargs)
    try:
        if expected == 200:
            assert 200 <= r.status_code < 300, show(r)
            if caller == "other":
                # The other tenant's own view: alpha, never public's graphs.
                assert "alpha" in r.text, show(r)
                for name in ("prices", "beta", '"price"', '"tick"'):
                    assert name not in r.text, show(r)
            if method == "GET" and path == "/v1/tenants/public/keys":
                assert "clk_" not in r.text, show(r)
        else:
            code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}[expected]
            assert_error(r, expected, code)
    finally:
        if path.endswith("/pause") and 200 <= r.status_code < 300:
            r2 = env.as_("admin", "POST", "/v1/health/reactors/prices/resume")
            assert r2.status_code == 200, show(r2)
    if before is not None:
        # Nothing was deployed, deleted, restarted or revoked.
        assert env.snapshot() == before
        assert env.call("GET", "/v1/health/graphs", env.keys["victim"]).status_code == 200


def test_health_and_ready_need_no_key(env: Env) -> None:
    for path in ("/health", "/ready"):
        r = env.call("GET", path)
        assert r.status_code == 200, show(r)
    assert env.call("GET", "/ready").json()["ready"] is True


def test_unknown_route_is_a_json_404(env: Env) -> None:
    assert_error(env.call("GET", "/v1/nothing/here"), 404, "not_found")
    assert_error(env.as_("admin", "PUT", "/v1/health/graphs"), 405, "method_not_allowed")


def test_key_alternatives_x_api_key(env: Env) -> None:
    r = env.call("GET", "/v1/health/graphs", headers={"X-Api-Key": env.keys["read"]})
    assert r.status_code == 200, show(r)
    r = env.call("GET", "/v1/health/graphs", headers={"Authorization": f"bearer {env.keys['read']}"})
    assert r.status_code == 200, show(r)
    # The alternative carries the key's role like the header does.
    r = env.call("POST", "/v1/health/reactors/prices/pause", headers={"X-Api-Key": env.keys["read"]})
    assert_error(r, 403, "forbidden")


def test_token_query_is_refused_on_http_routes(env: Env) -> None:
    """A key in a URL leaks into logs and proxies: HTTP routes refuse it, even
    beside a valid header, naming the reason."""
    for headers in ({}, env.server.auth(env.keys["read"])):
        for key in (env.keys["read"], new_key()):
            body = assert_error(env.call("GET", "/v1/health/graphs", params={"token": key}, headers=headers),
                                401, "token_in_query")
            assert "Authorization header" in body["error"], body


def test_other_tenant_objects_look_like_missing_ones(env: Env) -> None:
    """public's admin asking for other's graph gets the same 404 as for a graph
    that exists nowhere; nothing of alpha leaks."""
    pairs = [
        ("GET", "/v1/health/graphs/{}"),
        ("GET", "/v1/health/reactors/{}"),
        ("GET", "/v1/health/reactors/{}/fires"),
        ("POST", "/v1/health/reactors/{}/fire"),
        ("POST", "/v1/health/reactors/{}/pause"),
    ]
    for method, template in pairs:
        existing = env.as_("admin", method, template.format("alpha"))
        missing = env.as_("admin", method, template.format("no_such_graph"))
        assert_error(existing, 404, "not_found")
        assert_error(missing, 404, "not_found")
        assert existing.json()["error"] == missing.json()["error"].replace("no_such_graph", "alpha"), show(existing)
    for method, template in [("GET", "/v1/health/accumulators/{}"), ("POST", "/v1/health/accumulators/{}/inject")]:
        existing = env.as_("admin", method, template.format("quote"), json={"event": 1})
        missing = env.as_("admin", method, template.format("no_such_acc"), json={"event": 1})
        assert_error(existing, 404, "not_found")
        assert_error(missing, 404, "not_found")
        assert existing.json()["error"] == missing.json()["error"].replace("no_such_acc", "quote"), show(existing)
    # Another tenant's paths answer exactly like a tenant that does not exist.
    for method, template in [
        ("GET", "/v1/tenants/{}/workflows"),
        ("GET", "/v1/tenants/{}/workflows/alpha"),
        ("DELETE", "/v1/tenants/{}/workflows/alpha"),
        ("POST", "/v1/tenants/{}/workflows/alpha/restart"),
        ("GET", "/v1/tenants/{}/keys"),
        ("POST", "/v1/tenants/{}/keys"),
    ]:
        existing = env.as_("admin", method, template.format("other"), json={"role": "admin"} if method == "POST" else None)
        missing = env.as_("admin", method, template.format("nobody"), json={"role": "admin"} if method == "POST" else None)
        assert_error(existing, 404, "not_found")
        assert (existing.status_code, existing.json()) == (missing.status_code, missing.json()), show(existing)
    # Nothing happened to alpha, and other's key still sees it.
    alpha = env.detail("alpha", caller="other")
    assert alpha["health"]["state"] == "running", alpha


def test_other_tenant_cannot_revoke_public_keys_by_id(env: Env) -> None:
    key, key_id = env.create_key("read", label="cross-tenant-target")
    r = env.as_("other", "DELETE", f"/v1/tenants/other/keys/{key_id}")
    assert_error(r, 404, "not_found")
    r = env.as_("other", "DELETE", f"/v1/tenants/public/keys/{key_id}")
    assert_error(r, 404, "not_found")
    assert env.call("GET", "/v1/health/graphs", key).status_code == 200
    # And other's key listing does not show public's keys.
    r = env.as_("other", "GET", "/v1/tenants/other/keys")
    assert r.status_code == 200, show(r)
    ids = {k["id"] for k in r.json()["items"]}
    assert key_id not in ids and env.ids["read"] not in ids, show(r)
    assert {k["tenant"] for k in r.json()["items"]} == {"other"}, show(r)


def test_scoped_key_sees_only_its_graphs(env: Env) -> None:
    scoped = "scoped"
    for path in ("/v1/health/graphs", "/v1/health/reactors"):
        r = env.as_(scoped, "GET", path)
        assert r.status_code == 200, show(r)
        assert [g["name"] for g in r.json()["items"]] == ["prices"], show(r)
    r = env.as_(scoped, "GET", "/v1/health/accumulators")
    assert r.status_code == 200, show(r)
    assert [(a["graph"], a["name"]) for a in r.json()["items"]] == [("prices", "price")], show(r)
    r = env.as_(scoped, "GET", "/metrics")
    assert r.status_code == 200, show(r)
    assert 'graph="prices"' in r.text and 'graph="beta"' not in r.text, r.text[:2000]
    # In scope: fine.
    for path in ("/v1/health/graphs/prices", "/v1/health/reactors/prices", "/v1/health/accumulators/price",
                 "/v1/tenants/public/workflows/prices", "/tenants/public/workflows/prices"):
        r = env.as_(scoped, "GET", path)
        assert r.status_code == 200, show(r)
    # Out of scope: 404 exactly like a graph that does not exist.
    for path in ("/v1/health/graphs/beta", "/v1/health/reactors/beta", "/v1/health/reactors/beta/fires",
                 "/v1/health/accumulators/tick", "/v1/tenants/public/workflows/beta", "/tenants/public/workflows/beta"):
        assert_error(env.as_(scoped, "GET", path), 404, "not_found")
    # A scoped write key: writes to its graph work, to another graph are 404.
    r = env.as_("scoped_write", "POST", "/v1/health/accumulators/price/inject", json={"event": {"p": 2}})
    assert r.status_code == 200, show(r)
    for path, body in [
        ("/v1/health/accumulators/tick/inject", {"event": 1}),
        ("/v1/health/reactors/beta/fire", {}),
        ("/v1/health/reactors/beta/pause", None),
    ]:
        assert_error(env.as_("scoped_write", "POST", path, json=body), 404, "not_found")
    # A scoped admin cannot delete or restart a graph outside its scope.
    for method, path in [("DELETE", "/v1/tenants/public/workflows/beta"), ("POST", "/v1/tenants/public/workflows/beta/restart")]:
        assert_error(env.as_("scoped_admin", method, path), 404, "not_found")
    assert env.detail("beta")["health"]["state"] == "running"


def test_scoped_key_package_listing_hides_other_graphs(env: Env) -> None:
    for path in ("/tenants/public/workflows", "/v1/tenants/public/workflows"):
        r = env.as_("scoped", "GET", path)
        assert r.status_code == 200, show(r)
        assert [p["graph"] for p in r.json()["items"]] == ["prices"], show(r)


def test_scoped_admin_cannot_mint_a_wider_key(env: Env) -> None:
    r = env.as_("scoped_admin", "POST", "/v1/tenants/public/keys", json={"role": "admin", "label": "escalation"})
    if 200 <= r.status_code < 300:
        minted = r.json()
        env.as_("admin", "DELETE", f"/v1/tenants/public/keys/{minted['id']}")
        assert minted["graphs"] and set(minted["graphs"]) <= {"prices"}, show(r)
    else:
        assert r.status_code in (403, 404), show(r)


def test_scoped_admin_cannot_upload_a_graph_outside_its_scope(env: Env) -> None:
    archive = package_bytes("gamma", graph_source("gamma", "gamma_in"))
    r = env.call("POST", "/v1/tenants/public/workflows", env.keys["scoped_admin"],
                 files={"file": ("pkg.tar.gz", archive)})
    if 200 <= r.status_code < 300:
        env.server.wait_state("gamma", "running")
        d = env.as_("admin", "DELETE", "/v1/tenants/public/workflows/gamma")
        assert d.status_code == 200, show(d)
    assert_error(r, 404, "not_found")


def test_admin_lifecycle_on_throwaway_objects(env: Env) -> None:
    """The admin success cases of the destructive rows: upload, restart and
    delete a throwaway graph; create and revoke a throwaway key."""
    for prefix, graph in [("", "scratch_a"), ("/v1", "scratch_b")]:
        archive = package_bytes(graph, graph_source(graph, f"{graph}_in"))
        r = env.as_("admin2", "POST", f"{prefix}/tenants/public/workflows", files={"file": ("pkg.tar.gz", archive)})
        assert r.status_code == 201, show(r)
        first = env.server.wait_state(graph, "running")
        r = env.as_("admin2", "GET", f"{prefix}/tenants/public/workflows/{graph}")
        assert r.status_code == 200, show(r)
        r = env.as_("admin2", "POST", f"{prefix}/tenants/public/workflows/{graph}/restart")
        assert r.status_code == 200 and r.json() == {"restarting": graph}, show(r)
        env.server.wait_for(
            lambda: (d := env.detail(graph))["health"]["state"] == "running" and d["worker"]["pid"] != first["worker"]["pid"],
            what=f"{graph} restarted",
        )
        r = env.as_("admin2", "DELETE", f"{prefix}/tenants/public/workflows/{graph}")
        assert r.status_code == 200 and r.json()["deleted"] == graph, show(r)
        assert_error(env.as_("admin2", "GET", f"{prefix}/tenants/public/workflows/{graph}"), 404, "not_found")
        assert_error(env.as_("admin2", "GET", f"/v1/health/graphs/{graph}"), 404, "not_found")
        assert_error(env.as_("admin2", "DELETE", f"{prefix}/tenants/public/workflows/{graph}"), 404, "not_found")
        assert_error(env.as_("admin2", "POST", f"{prefix}/tenants/public/workflows/{graph}/restart"), 404, "not_found")
    # Keys.
    key, key_id = env.create_key("write", label="throwaway", key=env.keys["admin2"])
    assert env.call("POST", "/v1/health/reactors/prices/fire", key, json={}).status_code == 200
    r = env.as_("admin2", "DELETE", f"/v1/tenants/public/keys/{key_id}")
    assert r.status_code == 200 and r.json() == {"revoked": key_id}, show(r)
    assert_error(env.call("GET", "/v1/health/graphs", key), 401, "unauthorized")
    assert_error(env.as_("admin2", "DELETE", f"/v1/tenants/public/keys/{key_id}"), 404, "not_found")
    # The module's graphs are untouched.
    assert sorted(g["name"] for g in env.as_("admin", "GET", "/v1/health/graphs").json()["items"]) == ["beta", "prices"]


def test_revoked_key_is_refused_everywhere(env: Env) -> None:
    key, key_id = env.create_key("write", label="to-revoke")
    assert env.call("GET", "/v1/health/graphs", key).status_code == 200
    r = env.as_("admin", "DELETE", f"/v1/tenants/public/keys/{key_id}")
    assert r.status_code == 200, show(r)
    assert_error(env.call("GET", "/v1/health/graphs", key), 401, "unauthorized")
    assert_error(env.call("POST", "/v1/health/accumulators/price/inject", key, json={"event": {"p": 1}}), 401, "unauthorized")
    assert_error(env.call("GET", "/v1/health/graphs", headers={"X-Api-Key": key}), 401, "unauthorized")
    status, _ = ws_refusal(env, "/v1/ws/accumulator/price", key)
    assert status == 401
    status, _ = ws_refusal(env, f"/v1/ws/reactor/prices?token={key}")
    assert status == 401
    r = env.as_("admin", "GET", "/v1/tenants/public/keys")
    assert key_id not in {k["id"] for k in r.json()["items"]}, show(r)


def test_server_restarts_after_its_env_admin_key_was_revoked(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    try:
        server.start()
        r = server.http.post("/v1/tenants/public/keys", json={"role": "admin", "label": "second-admin"})
        assert r.status_code == 201, show(r)
        second = r.json()["key"]
        r = server.http.get("/v1/tenants/public/keys")
        env_id = next(k["id"] for k in r.json()["items"] if k["label"] == "HEADRACE_ADMIN_KEY")
        r = server.http.delete(f"/v1/tenants/public/keys/{env_id}", headers=server.auth(second))
        assert r.status_code == 200, show(r)
        assert_error(server.http.get("/v1/health/graphs"), 401, "unauthorized")
        server.stop()
        server.start(timeout=30)  # same HEADRACE_ADMIN_KEY in the environment
        r = server.http.get("/v1/health/graphs", headers=server.auth(second))
        assert r.status_code == 200, show(r)
        # The revoked key stays revoked, and the log says why.
        assert_error(server.http.get("/v1/health/graphs"), 401, "unauthorized")
        assert "HEADRACE_ADMIN_KEY was revoked; it stays revoked" in server.log()
    finally:
        server.close()


def test_key_listing_never_shows_key_material(env: Env) -> None:
    r = env.as_("admin", "GET", "/v1/tenants/public/keys")
    assert r.status_code == 200, show(r)
    assert "clk_" not in r.text, show(r)
    for key in env.keys.values():
        assert key not in r.text and key[4:] not in r.text, show(r)
    items = {k["id"]: k for k in r.json()["items"]}
    for name in ("read", "write", "scoped", "scoped_admin", "victim"):
        item = items[env.ids[name]]
        assert item["label"] == f"test-{name}" and item["tenant"] == "public", item
        assert set(item) == {"id", "tenant", "role", "graphs", "label", "created_at"}, item
    assert items[env.ids["scoped"]]["role"] == "read" and items[env.ids["scoped"]]["graphs"] == ["prices"]
    assert items[env.ids["write"]]["role"] == "write" and items[env.ids["write"]]["graphs"] == []


def test_key_creation_checks_its_input(env: Env) -> None:
    for body, fragment in [
        ({"role": "root"}, "role"),
        ({"role": "read", "graphs": "prices"}, "graphs"),
        ({"role": "read", "graphs": [1]}, "graphs"),
    ]:
        body_ = assert_error(env.as_("admin", "POST", "/v1/tenants/public/keys", json=body), 400, "bad_request")
        assert fragment in body_["error"], body_
    assert_error(env.as_("admin", "POST", "/v1/tenants/public/keys", content=b"{nope"), 400, "bad_json")


#: Hostile names as they appear in a URL path (percent-encoded where needed).
HOSTILE_PATH_NAMES = ["%2e%2e", "%2E%2E", "%2e", "pr%D1%96ces", "with%20space", "new%0Aline", "a%00b", "x" * 65, "a,b"]


@pytest.mark.parametrize("name", HOSTILE_PATH_NAMES)
@pytest.mark.parametrize("template", [
    "GET /v1/health/graphs/{}",
    "GET /v1/health/accumulators/{}",
    "POST /v1/health/accumulators/price/inject?graph={}",
    "GET /v1/health/reactors/{}/fires",
    "GET /v1/tenants/{}/workflows",
    "GET /v1/tenants/public/workflows/{}",
    "DELETE /v1/tenants/public/workflows/{}",
    "GET /v1/tenants/{}/keys",
])
def test_hostile_names_in_api_paths_are_a_400_naming_the_rule(env: Env, template: str, name: str) -> None:
    method, path = template.split(" ")
    before = env.snapshot()
    r = env.anon.request(method, path.format(name), headers={"Authorization": f"Bearer {env.keys['admin']}"},
                         **({"json": {"event": {"p": 1}}} if method == "POST" else {}))
    body = assert_error(r, 400, "bad_name")
    assert "pattern" in body["error"] and "name" in body["error"], show(r)
    assert env.snapshot() == before


@pytest.mark.parametrize("graphs", [[""], ["prices,beta"], [".."], ["pr\u0456ces"], ["prices", "a b"]], ids=repr)
def test_key_scopes_are_parsed_strictly(env: Env, graphs: list[str]) -> None:
    """A scope that is not a graph name is refused, never widened to every graph."""
    before = env.snapshot()
    body = assert_error(env.as_("admin", "POST", "/v1/tenants/public/keys", json={"role": "read", "graphs": graphs}),
                        400, "bad_name")
    assert "graph name" in body["error"], body
    assert env.snapshot() == before


def test_key_scopes_that_are_not_lists_are_refused(env: Env) -> None:
    for graphs in ("", "prices", {}, 0, False):
        body = assert_error(env.as_("admin", "POST", "/v1/tenants/public/keys", json={"role": "read", "graphs": graphs}),
                            400, "bad_request")
        assert "graphs must be a list" in body["error"], body


# --- WebSockets -------------------------------------------------------------------


def ws_open(env: Env, path: str, key: str | None = None, headers: dict[str, str] | None = None) -> ClientConnection:
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    return connect(env.server.ws_url + path, additional_headers=h, proxy=None, open_timeout=30)


def ws_refusal(env: Env, path: str, key: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body a refused handshake answered with."""
    with pytest.raises(InvalidStatus) as info:
        with ws_open(env, path, key, headers):
            pass
    response = info.value.response
    body: dict[str, Any] = orjson.loads(response.body or b"{}")
    return response.status_code, body


def ws_command(ws: ClientConnection, command: dict[str, Any]) -> dict[str, Any]:
    ws.send(orjson.dumps(command).decode())
    reply: dict[str, Any] = orjson.loads(ws.recv(timeout=60))
    assert reply.get("id") == command.get("id"), reply
    return reply


WS_DENIALS = [
    ("no_key", 401, "unauthorized"),
    ("unknown_clk_key", 401, "unauthorized"),
    ("bearer_garbage", 401, "unauthorized"),
    ("basic_scheme", 401, "unauthorized"),
    ("other", 404, "not_found"),
]


@pytest.mark.parametrize(("caller", "status", "code"), [
    *WS_DENIALS,
    ("read", 403, "forbidden"),
    ("scoped", 403, "forbidden"),
], ids=lambda v: str(v))
def test_ws_accumulator_handshake_refused(env: Env, caller: str, status: int, code: str) -> None:
    if caller in BAD_CREDENTIALS:
        got = ws_refusal(env, "/v1/ws/accumulator/price", headers=BAD_CREDENTIALS[caller])
    else:
        got = ws_refusal(env, "/v1/ws/accumulator/price", env.keys[caller])
    assert got[0] == status and got[1].get("code") == code and got[1].get("error"), got


@pytest.mark.parametrize(("caller", "status", "code"), [
    *WS_DENIALS,
    ("scoped", 404, "not_found"),  # beta is outside the scoped key's graphs
], ids=lambda v: str(v))
def test_ws_reactor_handshake_refused(env: Env, caller: str, status: int, code: str) -> None:
    path = "/v1/ws/reactor/beta" if caller == "scoped" else "/v1/ws/reactor/prices"
    if caller in BAD_CREDENTIALS:
        got = ws_refusal(env, path, headers=BAD_CREDENTIALS[caller])
    else:
        got = ws_refusal(env, path, env.keys[caller])
    assert got[0] == status and got[1].get("code") == code and got[1].get("error"), got


@pytest.mark.parametrize("path", ["/v1/ws/accumulator/%2e%2e", "/v1/ws/reactor/%2e%2e", "/v1/ws/accumulator/price?graph=..",
                                  "/v1/ws/reactor/pr%D1%96ces"])
def test_ws_hostile_names_are_refused_at_the_handshake(env: Env, path: str) -> None:
    status, body = ws_refusal(env, path, env.keys["admin"])
    assert (status, body.get("code")) == (400, "bad_name"), body


def test_ws_accumulator_scope_and_success(env: Env) -> None:
    # A write key scoped to prices cannot push to beta's accumulator.
    status, body = ws_refusal(env, "/v1/ws/accumulator/tick", env.keys["scoped_write"])
    assert (status, body.get("code")) == (404, "not_found"), body
    for caller in ("write", "scoped_write", "admin"):
        with ws_open(env, "/v1/ws/accumulator/price", env.keys[caller]) as ws:
            ws.send(orjson.dumps({"p": 3}).decode())
            assert orjson.loads(ws.recv(timeout=60)) == {"ack": 1}, caller


def test_ws_token_query_parameter(env: Env) -> None:
    with ws_open(env, f"/v1/ws/accumulator/price?token={env.keys['write']}") as ws:
        ws.send(orjson.dumps({"p": 4}).decode())
        assert orjson.loads(ws.recv(timeout=60)) == {"ack": 1}
    with ws_open(env, f"/v1/ws/reactor/prices?token={env.keys['read']}") as ws:
        assert ws_command(ws, {"op": "get_state", "id": 1})["ok"] is True
    status, body = ws_refusal(env, f"/v1/ws/accumulator/price?token={env.keys['read']}")
    assert (status, body.get("code")) == (403, "forbidden"), body
    status, body = ws_refusal(env, f"/v1/ws/accumulator/price?token={new_key()}")
    assert (status, body.get("code")) == (401, "unauthorized"), body
    status, body = ws_refusal(env, f"/v1/ws/reactor/prices?token={env.keys['other']}")
    assert (status, body.get("code")) == (404, "not_found"), body


def test_ws_reactor_commands_check_the_role(env: Env) -> None:
    with ws_open(env, "/v1/ws/reactor/prices", env.keys["read"]) as ws:
        state = ws_command(ws, {"op": "get_state", "id": "s1"})
        assert state["ok"] is True and "fire_count" in state["result"], state
        for i, op in enumerate(("force_fire", "pause", "resume")):
            reply = ws_command(ws, {"op": op, "id": i})
            assert reply["ok"] is False and reply["code"] == "forbidden" and reply["error"], reply
        reply = ws_command(ws, {"op": "fire_with", "id": "fw", "inputs": {"price": {"p": 1}}})
        assert reply["ok"] is False and reply["code"] == "forbidden", reply
        # The connection stays usable after refusals.
        assert ws_command(ws, {"op": "get_state", "id": "s2"})["ok"] is True
    before = env.detail()["health"]["fire_count"]
    with ws_open(env, "/v1/ws/reactor/prices", env.keys["write"]) as ws:
        reply = ws_command(ws, {"op": "force_fire", "id": 7})
        assert reply["ok"] is True, reply
    assert env.detail()["health"]["fire_count"] > before


# --- uploads that must be refused ----------------------------------------------


class Zeros(io.RawIOBase):
    """A file of ``size`` zero bytes, without holding them in memory."""

    def readinto(self, b: Any) -> int:
        n = len(b)
        b[:n] = bytes(n)
        return n


def tarball(*entries: tarfile.TarInfo | tuple[str, bytes | str], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e, Zeros() if e.isfile() and e.size else None)
                continue
            name, data = e
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def manifest(graph: str = "prices", entry: str | None = "graph_module:graph", extra: str = "") -> str:
    text = f'[package]\nname = "{graph}"\nversion = "0.1.0"\n\n[metadata]\ngraph_name = "{graph}"\nlanguage = "python"\n'
    if entry is not None:
        text += f'entry = "{entry}"\n'
    return text + textwrap.dedent(extra)


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = linkname
    info.mode = 0o644
    return info


def good(path: str = "") -> list[tuple[str, str]]:
    """A valid package's members (graph prices) under folder ``pkg/``."""
    return [("pkg/package.toml", manifest()), ("pkg/graph_module.py", PRICES), *([(path, "x = 1\n")] if path else [])]


def _bad_uploads() -> Iterator[Any]:
    P = pytest.param
    yield P(lambda: tarball(*good("../evil.py")), "path_traversal", "'../evil.py'", id="dotdot")
    yield P(lambda: tarball(*good("pkg/../../evil.py")), "path_traversal", "'pkg/../../evil.py'", id="dotdot-inside")
    yield P(lambda: tarball(*good("/tmp/evil.py")), "absolute_path", "'/tmp/evil.py'", id="absolute")
    yield P(lambda: tarball(*good(), member("pkg/link.py", tarfile.SYMTYPE, linkname="/etc/passwd")),
            "link", "'pkg/link.py'", id="symlink-out")
    yield P(lambda: tarball(*good(), member("pkg/hard.py", tarfile.LNKTYPE, linkname="../../etc/passwd")),
            "link", "'pkg/hard.py'", id="hardlink-out")
    yield P(lambda: tarball(*good(), member("pkg/fifo", tarfile.FIFOTYPE)), "special_file", "'pkg/fifo'", id="fifo")
    yield P(lambda: tarball(*good(), *[(f"pkg/f{i}.py", "") for i in range(1001)]),
            "too_many_files", "1000", id="too-many-files")
    # 5 MB of zeros gzip to ~5 KB: over the 100x ratio long before 50 MiB.
    yield P(lambda: tarball(*good(), member("pkg/zeros.bin", size=5 * 1024 * 1024)),
            "compression_ratio", "times its size", id="ratio-bomb")
    # 60 MB of zeros (~60 KB gzipped): one entry over the 10 MiB file limit.
    yield P(lambda: tarball(*good(), member("pkg/huge.bin", size=60 * 1000 * 1000)),
            "too_large", "'pkg/huge.bin'", id="expands-to-60MB")
    yield P(lambda: os.urandom(4096), "bad_archive", "not a tar archive", id="random-bytes")
    yield P(lambda: tarball(*good())[:200], "bad_archive", "archive", id="truncated")
    yield P(lambda: tarball(("pkg/graph_module.py", PRICES)), "no_manifest", "package.toml", id="no-manifest")
    yield P(lambda: tarball(*good(), ("pkg/sub/package.toml", manifest()), ("other/package.toml", manifest())),
            "no_manifest", "package.toml", id="two-manifests")
    yield P(lambda: tarball(*good(), ("elsewhere/x.py", "")), "bad_path", "'elsewhere/x.py'", id="outside-package-folder")
    yield P(lambda: package_bytes("prices", PRICES, extra_manifest="\n[extras]\nfoo = 1\n"),
            "bad_manifest", "package.toml.extras", id="manifest-unknown-table")
    yield P(lambda: package_bytes("prices", PRICES, extra_manifest="bogus = 1\n"),
            "bad_manifest", "metadata.bogus", id="manifest-unknown-key")
    yield P(lambda: tarball(("pkg/package.toml", "[package\nname="), ("pkg/graph_module.py", PRICES)),
            "bad_manifest", "not valid TOML", id="manifest-not-toml")
    yield P(lambda: tarball(("pkg/package.toml", manifest(entry=None)), ("pkg/graph_module.py", PRICES)),
            "bad_manifest", "metadata.entry: required", id="no-entry")
    yield P(lambda: tarball(("pkg/package.toml", manifest(entry="not an entry")), ("pkg/graph_module.py", PRICES)),
            "bad_manifest", "metadata.entry", id="entry-malformed")
    yield P(lambda: tarball(("pkg/package.toml", manifest(entry="missing_module:graph")), ("pkg/graph_module.py", PRICES)),
            "bad_manifest", "metadata.entry", id="entry-module-absent")
    yield P(lambda: package_bytes("prices", "raise RuntimeError('boom at import')\n"),
            "bad_manifest", "metadata.entry", id="entry-import-fails")
    yield P(lambda: tarball(("pkg/package.toml", manifest(entry="graph_module:nope")), ("pkg/graph_module.py", PRICES)),
            "bad_manifest", "metadata.entry", id="entry-attribute-absent")
    yield P(lambda: package_bytes("prices", PRICES, extra_manifest="""
            [[metadata.accumulators]]
            name = "volume"
            accumulator_type = "passthrough"
            """), "bad_manifest", "metadata.accumulators[0].name", id="manifest-unknown-accumulator")
    yield P(lambda: package_bytes("prices", PRICES.replace('ComputationGraph("prices"', 'ComputationGraph("renamed"')),
            "bad_manifest", "metadata.graph_name", id="graph-name-mismatch")
    # Names become folder and file names on the server (headrace.names).
    for graph in ("../public/prices", "/", "..", "pr\u0456ces", "a b"):
        yield P(lambda graph=graph: tarball(("pkg/package.toml", manifest().replace('graph_name = "prices"', f'graph_name = "{graph}"')),
                                            ("pkg/graph_module.py", PRICES)),
                "bad_manifest", "metadata.graph_name", id=f"graph-name-{graph!r}")
    yield P(lambda: tarball(("pkg/package.toml", manifest().replace('version = "0.1.0"', 'version = "../../x"')),
                            ("pkg/graph_module.py", PRICES)),
            "bad_manifest", "package.version", id="version-dotdot")


def assert_nothing_lost(env: Env, before: dict[str, Any]) -> None:
    after = env.detail("prices")
    assert after["health"]["state"] == "running", after
    assert after["health"]["fire_count"] == before["health"]["fire_count"], (before["health"], after["health"])
    assert after["worker"] == before["worker"] and after["package"] == before["package"], (before, after)
    r = env.as_("admin", "GET", "/v1/tenants/public/workflows")
    assert sorted(p["graph"] for p in r.json()["items"]) == ["beta", "prices"], show(r)


@pytest.mark.parametrize(("build", "code", "fragment"), list(_bad_uploads()))
def test_bad_upload_is_refused_and_nothing_is_lost(env: Env, build: Any, code: str, fragment: str) -> None:
    before = env.detail("prices")
    r = env.server.upload(build())
    body = assert_error(r, 400, code)
    assert fragment in body["error"], show(r)
    assert isinstance(body.get("problems"), list) and body["problems"], show(r)
    assert_nothing_lost(env, before)


def test_upload_request_shape_errors(env: Env) -> None:
    before = env.detail("prices")
    archive = package_bytes("prices", PRICES, version="9.9.9")
    # Multipart without a 'file' field.
    r = env.as_("admin", "POST", "/v1/tenants/public/workflows", files={"archive": ("pkg.tar.gz", archive)})
    body = assert_error(r, 400, "missing_file")
    assert "'file'" in body["error"], show(r)
    # A text field named 'file' is not a file either.
    r = env.as_("admin", "POST", "/v1/tenants/public/workflows", files={"file": (None, "hello")})
    assert_error(r, 400, "missing_file")
    # An empty body.
    r = env.as_("admin", "POST", "/v1/tenants/public/workflows", content=b"",
                headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 400, "missing_file")
    assert_nothing_lost(env, before)


# --- size limits ------------------------------------------------------------------


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed
    (``time.monotonic()``); fails if it does not close within ``timeout``."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"connection still open after {timeout} s; got {data!r}"
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, time.monotonic()
        if not chunk:
            return data, time.monotonic()
        data += chunk


def raw_request(env: Env, head: str, body: bytes = b"", timeout: float = 30.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=timeout) as s:
        s.sendall(head.encode() + body)
        data, _ = read_until_closed(s, timeout)
    assert data.startswith(b"HTTP/1.1 "), data[:500]
    status = int(data.split(b" ", 2)[1])
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head_bytes.lower():
        body = dechunk(body)
    return status, body


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        assert rest[size : size + 2] == b"\r\n", data
        data = rest[size + 2 :]


def test_upload_over_the_size_limit_is_refused_on_content_length(env: Env) -> None:
    """Declaring limit+1 bytes is enough: the server answers 413 without
    reading (or waiting for) the body."""
    limit = LIMITS.max_upload_bytes
    before = env.detail("prices")
    for path in ("/tenants/public/workflows", "/v1/tenants/public/workflows"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {env.keys['admin']}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {limit + 1}\r\n\r\n"
        )
        status, body = raw_request(env, head, timeout=10.0)
        assert status == 413, body
        assert orjson.loads(body)["code"] == "too_large", body
        assert str(limit).encode() in body, body
    assert_nothing_lost(env, before)


def test_upload_at_the_limit_is_read(env: Env) -> None:
    """Just under the limit the body is read and judged as an archive (400, not 413)."""
    limit = LIMITS.max_upload_bytes
    blob = os.urandom(LIMITS.package.max_archive_bytes)
    assert len(blob) + 1024 < limit
    r = env.as_("admin", "POST", "/v1/tenants/public/workflows", files={"file": ("pkg.tar.gz", blob)})
    assert_error(r, 400, "bad_archive")


def test_json_body_limits_and_bad_json(env: Env) -> None:
    limit = LIMITS.max_body_bytes
    key = env.keys["write"]
    # Declared over the limit: refused before the body is read.
    head = (
        f"POST /v1/health/accumulators/price/inject HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n"
    )
    status, body = raw_request(env, head, timeout=10.0)
    assert status == 413 and orjson.loads(body)["code"] == "too_large", body
    # Chunked: counted as it streams, refused once past the limit.
    payload = b'{"event": "' + b"x" * limit + b'"}'
    head = (
        "POST /v1/health/accumulators/price/inject HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n"
    status, body = raw_request(env, head, chunk)
    assert status == 413 and orjson.loads(body)["code"] == "too_large", body
    # Small but broken bodies.
    for content in (b'{"event": ', b"\xff\xfe", b"[1, 2]", b'"event"'):
        r = env.call("POST", "/v1/health/accumulators/price/inject", key, content=content,
                     headers={"Content-Type": "application/json"})
        assert_error(r, 400, "bad_json")
    r = env.call("POST", "/v1/health/accumulators/price/inject", key, json={"value": 1})
    assert_error(r, 400, "bad_request")
    # The graph took none of it.
    assert env.detail()["health"]["state"] == "running"


# --- header deadline ----------------------------------------------------------------


def test_trickled_headers_get_408_within_the_deadline(env: Env) -> None:
    deadline = LIMITS.header_deadline
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=30) as s:
        start = time.monotonic()
        s.sendall(b"GET /health HTTP/1.1\r\n")
        # One header line every 2 s (first at 1 s, so no send lands on the deadline itself).
        next_send, n = start + 1.0, 0
        data = b""
        while time.monotonic() - start < deadline + 5:
            readable, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
            if readable:
                data, closed_at = read_until_closed(s, 5.0)
                break
            n += 1
            s.sendall(f"X-Trickle-{n}: y\r\n".encode())
            next_send += 2.0
        else:
            pytest.fail(f"still open {deadline + 5} s after the first byte, {n} header lines sent")
    elapsed = closed_at - start
    assert data.startswith(b"HTTP/1.1 408"), data
    assert deadline - 1 <= elapsed < deadline + 5, elapsed


def test_silent_connection_is_closed_within_the_deadline(env: Env) -> None:
    deadline = LIMITS.header_deadline
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=30) as s:
        start = time.monotonic()
        data, closed_at = read_until_closed(s, deadline + 5)
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    assert closed_at - start < deadline + 5


def test_slow_but_timely_headers_are_served(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=30) as s:
        for line in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n", b"\r\n"):
            s.sendall(line)
            time.sleep(1.0)  # the point of the test: slow, but within the deadline
        data, _ = read_until_closed(s, 10.0)
    assert data.startswith(b"HTTP/1.1 200"), data
