"""The server's own failure modes and limits, against real `headrace serve`
processes. (Readiness with one graph crash-looping: tests/test_server_crash.py.)"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from server_util import PRICES, Server, free_port, package_bytes
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def test_an_unexpected_error_answers_json_with_a_code_and_logs_a_traceback(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    try:
        server.start()
        server.deploy(package_bytes("prices", PRICES), "prices")
        # A fault no request can cause: the key store loses its table under the running server.
        with sqlite3.connect(server.data_dir / "keys.db") as db:
            db.execute("DROP TABLE headrace_api_key")
        for method, path, kwargs in [
            ("GET", "/v1/health/graphs", {}),
            ("GET", "/v1/health/graphs/prices", {}),
            ("GET", "/v1/tenants/public/keys", {}),
            ("POST", "/v1/health/accumulators/price/inject", {"json": {"event": {"p": 1}}}),
            ("GET", "/metrics", {}),
        ]:
            r = server.http.request(method, path, **kwargs)
            assert r.status_code == 500, (path, r.text)
            assert r.headers["content-type"] == "application/json", (path, r.text)
            body = r.json()
            assert body["code"] == "internal" and "OperationalError" in body["error"], (path, body)
        log = server.log()
        assert "Traceback" in log and "no such table: headrace_api_key" in log, log
        # The server itself is fine.
        assert server.http.get("/health").status_code == 200
    finally:
        server.close()


def test_a_second_server_on_the_same_data_dir_exits_naming_the_first(tmp_path: Path) -> None:
    first = Server(tmp_path / "data")
    try:
        first.start()
        first.deploy(package_bytes("prices", PRICES), "prices")
        assert first.proc is not None
        env = {**first.env, "HEADRACE_PORT": str(free_port())}
        second = subprocess.run([sys.executable, "-m", "headrace", "serve"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1, second.stderr
        assert f"in use by another headrace server (pid {first.proc.pid})" in second.stderr, second.stderr
        # The first is untouched, and still the only one running the graph.
        assert first.graph("prices")["health"]["state"] == "running"
        # The lock dies with its holder, however it ends.
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
        again = Server(tmp_path / "data", key=first.key)
        try:
            again.start()
            again.wait_state("prices", "running")
            assert (again.data_dir / "server.lock").read_text().strip() == str(again.proc.pid if again.proc else "")
        finally:
            again.close()
    finally:
        first.close()


def test_fires_are_read_in_pages_bounded_by_bytes(tmp_path: Path) -> None:
    budget = 8 * 1024
    server = Server(tmp_path / "data", env={"HEADRACE_FIRES_PAGE_BYTES": str(budget)})
    try:
        server.start()
        server.deploy(package_bytes("prices", PRICES.replace('accumulators=[price]', 'accumulators=[price], input_strategy="sequential"')), "prices")
        # ~1 KiB in, ~2 KiB out: about 3 KiB a fire, so a page holds two; the last is 12 KiB alone.
        sizes = [1000] * 20 + [4000]
        for i, n in enumerate(sizes):
            r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": f"{i:04d}" + "x" * (n - 4)}})
            assert r.status_code == 200, r.text
        server.wait_for(lambda: server.graph("prices")["health"]["fire_count"] == len(sizes), what="every fire")
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            r = server.http.get("/v1/health/reactors/prices/fires", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            pages += 1
            encoded = sum(len(orjson.dumps(f)) for f in body["items"])
            assert body["items"] and (encoded <= budget or len(body["items"]) == 1), (encoded, len(body["items"]))
            seen += [f["id"] for f in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert pages < 50, "the cursor does not advance"
        assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == len(sizes), seen
        assert pages >= 10, pages  # two fires a page at most
        # The count still bounds a page, and the cursor resumes after the last fire.
        first = server.http.get("/v1/health/reactors/prices/fires", params={"limit": "1"}).json()
        assert [f["id"] for f in first["items"]] == seen[:1] and first["next_cursor"] == str(seen[0])
        after = server.http.get("/v1/health/reactors/prices/fires", params={"limit": "1", "cursor": first["next_cursor"]})
        assert [f["id"] for f in after.json()["items"]] == seen[1:2]
        for bad in ("x", "-1", "1.5"):
            r = server.http.get("/v1/health/reactors/prices/fires", params={"cursor": bad})
            assert r.status_code == 400 and r.json()["code"] == "bad_request" and "cursor" in r.json()["error"], r.text
    finally:
        server.close()


# --- connections, slow bodies, floods ----------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with small connection and body-time limits."""
    server = Server(tmp_path_factory.mktemp("small") / "data",
                    env={"HEADRACE_MAX_CONNECTIONS": "4", "HEADRACE_BODY_DEADLINE": "1"})
    try:
        server.start()
        server.deploy(package_bytes("prices", PRICES), "prices")
        yield server
    finally:
        server.close()


def test_a_slow_request_body_gets_408(small: Server) -> None:
    head = (f"POST /v1/health/accumulators/price/inject HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {small.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    with socket.create_connection(("127.0.0.1", small.port), timeout=30) as s:
        start = time.monotonic()
        s.sendall(head.encode() + b'{"event": ')
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        took = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b'"code":"body_timeout"' in data and took < 10, (took, data)
    # A body that arrives in time is served.
    r = small.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 1}})
    assert r.status_code == 200, r.text


def test_connections_past_the_limit_are_refused_with_a_clear_503(small: Server) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(4):
            stack.enter_context(connect(f"{small.ws_url}/v1/ws/accumulator/price", additional_headers=small.auth(),
                                        proxy=None, open_timeout=30))
        r = small.http.get("/v1/health/graphs")
        assert r.status_code == 503 and r.json()["code"] == "too_many_connections", r.text
        assert "4 connections" in r.json()["error"]
        with pytest.raises(InvalidStatus) as info:
            with connect(f"{small.ws_url}/v1/ws/reactor/prices", additional_headers=small.auth(), proxy=None,
                         open_timeout=30):
                pass
        assert info.value.response.status_code == 503
        assert orjson.loads(info.value.response.body or b"{}")["code"] == "too_many_connections"
    # Closed connections free their places.
    small.wait_for(lambda: small.http.get("/v1/health/graphs").status_code == 200, what="room again")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_flood_of_large_frames_keeps_the_server_memory_bounded(tmp_path: Path) -> None:
    """Eight producers send 1 MiB frames to a graph whose worker is stopped
    (SIGSTOP: nothing is acknowledged). The server reads only what its byte
    budgets allow, so its memory stays flat; without them it read them all.
    The frames compress well: with permessage-deflate, one read of compressed
    frames inflated to over 100 MiB of messages before reading could pause."""
    mib = 1024 * 1024
    server = Server(tmp_path / "data", env={
        "HEADRACE_MAX_UNACKED_BYTES": str(4 * mib),
        "HEADRACE_MAX_INFLIGHT_BYTES": str(16 * mib),
        "HEADRACE_HEARTBEAT_TIMEOUT": "120",
    })
    producers, frames_each = 8, 48  # at most 384 MiB sent in all
    frame = orjson.dumps({"p": "x" * (mib - 1024)})
    worker_pid = None
    try:
        server.start()
        server.deploy(package_bytes("prices", PRICES), "prices")
        assert server.proc is not None
        worker_pid = server.graph("prices")["worker"]["pid"]
        baseline = rss_bytes(server.proc.pid)
        os.kill(worker_pid, signal.SIGSTOP)
        sent = [0] * producers

        def flood(i: int) -> None:
            with contextlib.suppress(Exception), connect(
                f"{server.ws_url}/v1/ws/accumulator/price", additional_headers=server.auth(), proxy=None,
                open_timeout=30, max_size=None,
            ) as ws:
                for _ in range(frames_each):
                    ws.send(frame)
                    sent[i] += 1
                time.sleep(60)

        threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(producers)]
        for t in threads:
            t.start()
        peak = baseline
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            peak = max(peak, rss_bytes(server.proc.pid))
            time.sleep(0.1)
        growth = peak - baseline
        print(f"server RSS {baseline / mib:.0f} MiB -> peak {peak / mib:.0f} MiB; frames sent {sum(sent)}")
        # 16 MiB in flight, plus per connection what uvicorn buffers (a frame being read, one queued).
        assert growth < 100 * mib, f"server RSS grew by {growth / mib:.0f} MiB under the flood"
    finally:
        if worker_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker_pid, signal.SIGCONT)
        server.close()
