"""The server's own failure modes and limits, against real `headrace serve`
processes. (Readiness with one graph crash-looping: tests/test_server_crash.py.)"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

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
