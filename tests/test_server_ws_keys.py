"""WebSockets and keys, against a real `headrace serve`: a revoked key's open
sockets close within a second; keys passed as ``?token=`` never reach the log;
browser handshakes come from allowed origins only; key scopes survive the
move from comma-joined text to JSON."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from server_util import PRICES, Server, package_bytes
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from headrace.server.auth import KeyStore

ALLOWED_ORIGIN = "https://dashboard.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ws-keys")
    s = Server(root / "data", env={"HEADRACE_ALLOWED_ORIGINS": f"{ALLOWED_ORIGIN}, https://other.example"})
    try:
        s.start()
        s.deploy(package_bytes("prices", PRICES), "prices")
        yield s
    finally:
        s.close()


def new_api_key(server: Server, role: str = "write") -> tuple[str, str]:
    r = server.http.post("/v1/tenants/public/keys", json={"role": role, "label": "ws-keys"})
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def open_ws(server: Server, path: str, key: str | None, origin: str | None = None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(server.ws_url + path, additional_headers=headers, origin=origin, proxy=None,  # type: ignore[arg-type]
                   open_timeout=30)


def closed_within(ws: ClientConnection, timeout: float) -> tuple[float, int | None, str | None]:
    """Waits for the server to close ``ws``: (seconds it took, code, reason)."""
    start = time.monotonic()
    with pytest.raises(ConnectionClosed) as info:
        while time.monotonic() - start < timeout + 5:
            ws.recv(timeout=timeout + 5)
    rcvd = info.value.rcvd
    return time.monotonic() - start, rcvd.code if rcvd else None, rcvd.reason if rcvd else None


def test_revoking_a_key_through_the_api_closes_its_open_sockets(server: Server) -> None:
    key, key_id = new_api_key(server)
    other_key, _ = new_api_key(server)
    with open_ws(server, "/v1/ws/accumulator/price", key) as acc, \
            open_ws(server, "/v1/ws/reactor/prices", key) as reactor, \
            open_ws(server, "/v1/ws/accumulator/price", other_key) as bystander:
        acc.send(orjson.dumps({"p": 1}).decode())
        assert orjson.loads(acc.recv(timeout=60)) == {"ack": 1}
        assert server.http.delete(f"/v1/tenants/public/keys/{key_id}").status_code == 200
        for ws in (acc, reactor):
            took, code, reason = closed_within(ws, 1.0)
            assert (code, reason) == (1008, "API key revoked") and took <= 1.0, (took, code, reason)
        # Another key's socket is untouched.
        bystander.send(orjson.dumps({"p": 2}).decode())
        assert orjson.loads(bystander.recv(timeout=60)) == {"ack": 1}


def test_revoking_a_key_with_the_cli_closes_its_open_sockets(server: Server) -> None:
    key, key_id = new_api_key(server)
    with open_ws(server, "/v1/ws/accumulator/price", key) as acc, open_ws(server, "/v1/ws/reactor/prices", key) as reactor:
        p = subprocess.run([sys.executable, "-m", "headrace", "keys", "revoke", key_id, "--data-dir", str(server.data_dir)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        for ws in (acc, reactor):
            took, code, reason = closed_within(ws, 1.0)
            assert (code, reason) == (1008, "API key revoked") and took <= 1.0, (took, code, reason)


def test_a_token_in_a_websocket_url_never_reaches_the_log(server: Server) -> None:
    key, _ = new_api_key(server)
    with connect(f"{server.ws_url}/v1/ws/accumulator/price?token={key}", proxy=None, open_timeout=30) as ws:
        ws.send(orjson.dumps({"p": 3}).decode())
        assert orjson.loads(ws.recv(timeout=60)) == {"ack": 1}
    with pytest.raises(InvalidStatus):  # a refused handshake is logged too
        with connect(f"{server.ws_url}/v1/ws/accumulator/nothing?token={key}", proxy=None, open_timeout=30):
            pass
    assert server.http.get("/v1/health/graphs", params={"token": key}).status_code == 401
    log = server.log_path.read_text(errors="replace")
    assert "token=[redacted]" in log, log[-3000:]
    assert key not in log and key[4:20] not in log, "a key reached the server log"


@pytest.mark.parametrize("origin", [None, ALLOWED_ORIGIN, "https://other.example"])
def test_handshakes_without_origin_or_from_an_allowed_one_are_accepted(server: Server, origin: str | None) -> None:
    key, _ = new_api_key(server)
    with open_ws(server, "/v1/ws/accumulator/price", key, origin) as ws:
        ws.send(orjson.dumps({"p": 4}).decode())
        assert orjson.loads(ws.recv(timeout=60)) == {"ack": 1}


@pytest.mark.parametrize("path", ["/v1/ws/accumulator/price", "/v1/ws/reactor/prices"])
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://dashboard.example.evil.example"])
def test_handshakes_from_other_origins_are_refused(server: Server, path: str, origin: str) -> None:
    key, _ = new_api_key(server)
    with pytest.raises(InvalidStatus) as info:
        with open_ws(server, path, key, origin):
            pass
    response = info.value.response
    body = orjson.loads(response.body or b"{}")
    assert (response.status_code, body.get("code")) == (403, "origin_not_allowed"), body
    assert origin in body["error"], body


def test_comma_joined_scopes_of_an_old_key_store_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    old = sqlite3.connect(path)
    old.execute(
        """CREATE TABLE headrace_api_key (
            key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
            role TEXT NOT NULL, graphs TEXT NOT NULL, label TEXT NOT NULL,
            created_at REAL NOT NULL, revoked_at REAL)"""
    )
    old.executemany(
        "INSERT INTO headrace_api_key VALUES (?, ?, 'public', 'read', ?, '', 1.0, NULL)",
        [("a", "h1", "prices,beta"), ("b", "h2", ""), ("c", "h3", "prices")],
    )
    old.commit()
    old.close()
    store = KeyStore(path)
    try:
        assert {g.key_id: g.graphs for g in store.list()} == {"a": ("prices", "beta"), "b": (), "c": ("prices",)}
    finally:
        store.close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (1,)
        stored = dict(raw.execute("SELECT key_id, graphs FROM headrace_api_key").fetchall())
        assert {k: json.loads(v) for k, v in stored.items()} == {"a": ["prices", "beta"], "b": [], "c": ["prices"]}
    finally:
        raw.close()
    # Opening again changes nothing.
    store = KeyStore(path)
    try:
        assert {g.key_id: g.graphs for g in store.list()}["a"] == ("prices", "beta")
    finally:
        store.close()
