"""A real `headrace serve` process for end-to-end tests, and package builders."""

from __future__ import annotations

import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def new_key() -> str:
    return "clk_" + secrets.token_urlsafe(32)


def package_bytes(
    graph: str,
    source: str,
    *,
    version: str = "0.1.0",
    package: str | None = None,
    module: str = "graph_module",
    extra_manifest: str = "",
    files: dict[str, str] | None = None,
) -> bytes:
    """A .tar.gz package: package.toml + ``module``.py (entry ``module:graph``)."""
    name = package or graph.replace("_", "-")
    manifest = textwrap.dedent(
        f"""
        [package]
        name = "{name}"
        version = "{version}"

        [metadata]
        graph_name = "{graph}"
        language = "python"
        entry = "{module}:graph"
        """
    ) + textwrap.dedent(extra_manifest)
    contents = {"package.toml": manifest, f"{module}.py": textwrap.dedent(source), **(files or {})}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fname, text in contents.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{fname}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


#: A one-accumulator graph: ``price`` events ``{"p": x}``, node ``double``.
PRICES = """
import headrace as hr

@hr.passthrough_accumulator
def price(event):
    return event

graph = hr.ComputationGraph("prices", accumulators=[price])

@graph.node
def double(price):
    return price["p"] * 2
"""


class Server:
    """``headrace serve`` in a child process, on a free port and a data dir."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, key: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.key = key or new_key()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "HEADRACE_ADMIN_KEY": self.key,
            "HEADRACE_DATA_DIR": str(data_dir),
            "HEADRACE_PORT": str(self.port),
            "HEADRACE_HOST": "127.0.0.1",
            # For test packages with an in-process stream backend.
            "HEADRACE_VAR_IDLE": "none",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, headers=self.auth(), timeout=60.0)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def start(self, timeout: float = 60.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "headrace", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(self.data_dir.parent),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def close(self) -> None:
        self.stop()
        self.http.close()

    # --- API helpers -----------------------------------------------------------

    def upload(self, archive: bytes, tenant: str = "public", key: str | None = None) -> httpx.Response:
        return self.http.post(
            f"/tenants/{tenant}/workflows",
            files={"file": ("pkg.tar.gz", archive, "application/octet-stream")},
            headers=self.auth(key),
        )

    def deploy(self, archive: bytes, graph: str, tenant: str = "public", key: str | None = None) -> dict[str, Any]:
        """Uploads and waits until the graph runs."""
        r = self.upload(archive, tenant, key)
        assert r.status_code in (200, 201), r.text
        self.wait_state(graph, "running", key=key)
        body: dict[str, Any] = r.json()
        return body

    def graph(self, name: str, key: str | None = None) -> dict[str, Any]:
        r = self.http.get(f"/v1/health/graphs/{name}", headers=self.auth(key))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait_state(self, graph: str, state: str, timeout: float = 60.0, key: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        detail: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = self.http.get(f"/v1/health/graphs/{graph}", headers=self.auth(key))
            if r.status_code == 200:
                detail = r.json()
                if detail["health"]["state"] == state:
                    return detail
            time.sleep(0.05)
        raise AssertionError(f"graph '{graph}' not {state} within {timeout} s: {detail}\n{self.log()}")

    def wait_for(self, predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"{what} not reached within {timeout} s\n{self.log()}")

    def fires(self, graph: str, limit: int = 100) -> list[dict[str, Any]]:
        r = self.http.get(f"/v1/health/reactors/{graph}/fires", params={"limit": limit})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


# --- workers' processes (fencing, streams, faults) ---------------------------

#: A stream accumulator whose state records every event it applies (a bit
#: per event number) and how many times it applied one; its stream backend is
#: an idle one registered by the package, so events arrive only by push. A
#: slow node: event -2 makes it sleep SLOW_SECONDS and fork a child that sleeps
#: longer (its pids go to $MARKS_DIR), event -1 reports.
SLOW_LEDGER = """
import os, subprocess, time
import headrace as hr

class Idle:
    def __init__(self, config):
        pass
    def connect(self, assignment):
        pass
    def receive(self, max_messages, timeout):
        time.sleep(min(timeout, 0.05))
        return []
    def commit(self, positions):
        pass
    def connected(self):
        return True
    def close(self):
        pass

hr.register_stream_backend("idle", Idle)

@hr.stream_accumulator(type="idle", topic="none", broker="IDLE", state={"seen": 0, "applied": 0})
def ledger(event, state):
    s = state.value
    if event == -1:
        return {"applied": s["applied"], "seen": format(s["seen"], "x")}
    if event == -2:
        return {"slow": True}
    s["seen"] |= 1 << event
    s["applied"] += 1
    return {"applied": s["applied"]}

graph = hr.ComputationGraph("ledger", accumulators=[ledger], input_strategy="sequential")

@graph.node
def report(ledger):
    if ledger.get("slow"):
        marks = os.environ["MARKS_DIR"]
        child = subprocess.Popen(["sleep", "600"])
        with open(os.path.join(marks, "slow"), "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(float(os.environ.get("SLOW_SECONDS", "8")))
    return ledger
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


async def send_acked(server: Server, accumulator: str, events: list[Any], graph: str | None = None) -> list[dict[str, Any]]:
    """Sends ``events`` over one accumulator WebSocket; returns one reply per event."""
    import asyncio
    import json

    from websockets.asyncio.client import connect

    url = f"{server.ws_url}/v1/ws/accumulator/{accumulator}" + (f"?graph={graph}" if graph else "")
    async with connect(url, additional_headers=server.auth(), max_size=None) as ws:
        for e in events:
            await ws.send(json.dumps(e))
        return [json.loads(await asyncio.wait_for(ws.recv(), 60)) for _ in events]


def ledger_report(server: Server) -> dict[str, Any]:
    """The SLOW_LEDGER's report: every event number applied so far."""
    r = server.http.post("/v1/health/accumulators/ledger/inject", json={"event": -1})
    assert r.status_code == 200, r.text
    fire = server.wait_for(
        lambda: (f := server.fires("ledger", 1)) and "seen" in f[0]["outputs"]["report"] and f[0],
        what="the report fire",
    )
    report: dict[str, Any] = fire["outputs"]["report"]
    return report
