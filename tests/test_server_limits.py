"""The server's own failure modes and limits, against real `headrace serve`
processes. (Readiness with one graph crash-looping: tests/test_server_crash.py.)"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
from server_util import PRICES, Server, free_port, package_bytes


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
