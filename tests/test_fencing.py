"""Fencing: two writers of one graph's checkpoint. The newest opener of a
(tenant, graph) wins and the store itself refuses an older one's saves, on
every store; in the server, a stale worker is killed before its replacement
starts, and it dies with its supervisor even inside a slow node."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import headrace as hr
from headrace.checkpoint import MemoryStore, open_store
from headrace.errors import FencedError


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if request.param == "memory":
        name = f"fence-{uuid.uuid4().hex[:8]}"
        MemoryStore.clear(name)
        return f"memory://{name}"
    return str(request.getfixturevalue("postgres_url"))


def test_a_newer_claim_fences_the_older_writer_in_the_store(any_store: str, tenant: str) -> None:
    old, new = open_store(any_store), open_store(any_store)
    try:
        g_old = old.claim(tenant, "g")  # type: ignore[attr-defined]
        old.save(tenant, "g", {"c": b"old-1"})
        g_new = new.claim(tenant, "g")  # type: ignore[attr-defined]
        assert g_new == g_old + 1
        new.save(tenant, "g", {"c": b"new-1"})
        with pytest.raises(FencedError, match=r"graph 'g' \(tenant '.*'\) refused by .*opened this graph after") as e:
            old.save(tenant, "g", {"c": b"old-2"})
        assert (e.value.generation, e.value.current) == (g_old, g_new)
        assert new.load(tenant, "g") == {"c": b"new-1"}
        # Other graphs of the same tenant are not affected.
        old.claim(tenant, "other")  # type: ignore[attr-defined]
        old.save(tenant, "other", {"c": b"x"})
    finally:
        old.close()
        new.close()


def test_discard_deletes_the_checkpoint_and_fences_its_writer(any_store: str, tenant: str) -> None:
    writer, tool = open_store(any_store), open_store(any_store)
    try:
        writer.claim(tenant, "g")  # type: ignore[attr-defined]
        writer.save(tenant, "g", {"c": b"1"})
        tool.discard(tenant, "g")  # type: ignore[attr-defined]
        assert tool.load(tenant, "g") == {}
        with pytest.raises(FencedError):
            writer.save(tenant, "g", {"c": b"2"})
    finally:
        writer.close()
        tool.close()


def _counter() -> hr.ComputationGraph:
    @hr.stream_accumulator(topic="t", state=0)
    def n(event: int, state: Any) -> int:
        state.value += event
        return int(state.value)

    g = hr.ComputationGraph("counter", accumulators=[n])
    g.node(name="out")(lambda n: n)
    return g


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_the_older_of_two_runtimes_on_one_graph_is_refused(any_store: str, tenant: str, mode: str) -> None:
    older = hr.Runtime(_counter(), mode=mode, store=any_store, tenant=tenant, sources=False)  # type: ignore[arg-type]
    try:
        older.push("n", 1)
        older.checkpoint(timeout=10)
        with hr.Runtime(_counter(), mode=mode, store=any_store, tenant=tenant, sources=False) as newer:  # type: ignore[arg-type]
            newer.push("n", 100)
            newer.checkpoint(timeout=10)
            older.push("n", 5)
            with pytest.raises(FencedError, match="another runtime or worker opened this graph"):
                older.checkpoint(timeout=10)
            assert older.stats()["checkpoint"]["health"] == "fenced"
            assert older.stats()["health"] == "degraded"
    finally:
        older.close()  # its final checkpoint is refused too
    with hr.Runtime(_counter(), store=any_store, tenant=tenant) as again:
        assert again.push("n", 0).outputs["out"] == 101  # 1 + 100: the newer runtime's state


def test_fencing_holds_under_concurrent_claims(tmp_path: Path) -> None:
    """Four writers claim and save at once: the generation of the stored
    checkpoint never goes backwards (a stale writer never lands after a
    newer one)."""
    url = f"sqlite:///{tmp_path}/state.db"
    stores = [open_store(url) for _ in range(4)]
    stop = threading.Event()
    refused = [0]

    def writer(i: int) -> None:
        s = stores[i]
        while not stop.is_set():
            generation = s.claim("t", "g")  # type: ignore[attr-defined]
            for k in range(20):
                try:
                    s.save("t", "g", {"who": f"{i}:{generation}:{k}".encode()})
                except FencedError:
                    refused[0] += 1
                    break

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    seen: list[int] = []
    try:
        db = sqlite3.connect(tmp_path / "state.db", timeout=30)
        deadline = time.monotonic() + 30
        while (len(seen) < 300 or refused[0] < 5) and time.monotonic() < deadline:
            row = db.execute("SELECT data FROM headrace_checkpoint").fetchone()
            if row:
                seen.append(int(row[0].decode().split(":")[1]))
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in stores:
            s.close()
    backwards = [(a, b) for a, b in zip(seen, seen[1:]) if b < a]
    assert backwards == [] and refused[0] > 0


# --- the server: kill orders -------------------------------------------------

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import httpx  # noqa: E402

from server_util import SLOW_LEDGER, Server, alive, ledger_report, package_bytes, send_acked  # noqa: E402

SLOW = 5.0


def _marks(tmp_path: Path) -> Path:
    """Where the slow node leaves its pids: a folder its sandbox lets it
    write (its tenant's own ``tmp``), which this test (root) can read."""
    return tmp_path / "data" / "tenants" / "public" / "tmp"


def _server(tmp_path: Path) -> Server:
    env = {
        "MARKS_DIR": str(_marks(tmp_path)),
        "SLOW_SECONDS": str(SLOW),
        "HEADRACE_CRASH_LIMIT": "1000",
        "HEADRACE_RESTART_MAX": "0.3",
    }
    return Server(tmp_path / "data", env=env)


def _acked(server: Server, events: list[int]) -> None:
    replies = asyncio.run(send_acked(server, "ledger", events))
    assert all("ack" in r and r.get("durable", True) for r in replies), replies


def _start_slow_node(server: Server, marks: Path) -> tuple[int, int]:
    """Sends event -2 (not waiting for its ack) and waits until the node runs;
    returns (worker pid, pid of the process the node forked)."""

    def inject() -> None:
        try:
            httpx.post(server.url + "/v1/health/accumulators/ledger/inject", json={"event": -2},
                       headers=server.auth(), timeout=60)
        except httpx.HTTPError:
            pass  # the server is killed under it

    import threading

    threading.Thread(target=inject, daemon=True).start()
    text = server.wait_for(lambda: (marks / "slow").exists() and (marks / "slow").read_text(), what="the slow node")
    worker, child = map(int, text.split())
    (marks / "slow").unlink()
    return worker, child


@pytest.mark.parametrize("order", ["supervisor", "worker", "both"])
def test_no_acknowledged_event_is_lost_whatever_dies_during_a_slow_node(tmp_path: Path, order: str) -> None:
    server = _server(tmp_path)
    marks = _marks(tmp_path)
    try:
        server.start()
        server.deploy(package_bytes("ledger", SLOW_LEDGER), "ledger")
        _acked(server, list(range(100)))
        worker, child = _start_slow_node(server, marks)
        if order in ("worker", "both"):
            os.kill(worker, signal.SIGKILL)
        if order in ("supervisor", "both"):
            server.stop(signal.SIGKILL)
            server.start()  # at once
        else:
            server.wait_for(lambda: server.graph("ledger")["worker"]["restarts"] == 1, what="the restart")
        server.wait_state("ledger", "running")
        # The old worker and what its node forked are gone before the new one runs.
        assert not alive(worker) and not alive(child)
        _acked(server, list(range(100, 200)))
        time.sleep(SLOW + 1)  # a surviving old worker would have written its last checkpoint by now
        server.stop(signal.SIGKILL)  # the second crash
        server.start()
        server.wait_state("ledger", "running")
        seen = int(ledger_report(server)["seen"], 16)
        lost = [e for e in range(200) if not (seen >> e) & 1]
        assert lost == [], f"{len(lost)} acknowledged events lost, first {lost[:10]}"
    finally:
        server.close()


def test_a_killed_supervisor_takes_its_workers_and_their_forks_along(tmp_path: Path) -> None:
    """kill -9 of the server while a node sleeps (holding a forked child):
    the worker and the child end at once, with no server started again."""
    server = _server(tmp_path)
    try:
        server.start()
        server.deploy(package_bytes("ledger", SLOW_LEDGER), "ledger")
        worker, child = _start_slow_node(server, _marks(tmp_path))
        server.stop(signal.SIGKILL)
        deadline = time.monotonic() + 5  # the node sleeps SLOW (5 s); the fork 600 s
        while (alive(worker) or alive(child)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(worker) and not alive(child), "the worker or its fork outlived the server"
    finally:
        server.close()


def test_a_server_restart_kills_a_worker_group_left_running(tmp_path: Path) -> None:
    """A worker that outlived its supervisor (as one would without the
    kernel's parent-death signal) is killed, with its forks, before the
    restarted server starts its replacement."""
    server = _server(tmp_path)
    try:
        server.start()
        server.deploy(package_bytes("ledger", SLOW_LEDGER), "ledger")
        record = next((tmp_path / "data" / "run" / "workers").glob("*.json"))
        server.stop(signal.SIGTERM)
        # A stand-in for a stale worker: a process group recorded as the graph's worker.
        stale = subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600"], start_new_session=True)
        time.sleep(0.2)
        members = [int(p) for p in subprocess.check_output(["pgrep", "-g", str(stale.pid)]).split()]
        assert len(members) >= 2
        from headrace.supervisor.records import WorkerRecord

        WorkerRecord(record).write(stale.pid)
        server.start()
        server.wait_state("ledger", "running")
        assert stale.wait(10) == -signal.SIGKILL
        assert not any(alive(p) for p in members)
        assert "left by an earlier server" in server.log()
    finally:
        server.close()


def _request(path: str, op: str, arg: Any) -> Any:
    from headrace.supervisor.ipc import encode, read_frame

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(encode([1, op, arg]))
        return read_frame(s)


def test_a_stale_worker_is_refused_by_the_store_and_exits(tmp_path: Path) -> None:
    """Fencing by the store alone: a worker started by hand on the graph's
    store, then replaced by the server's, cannot write and exits at once."""
    server = _server(tmp_path)
    stale: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        server.deploy(package_bytes("ledger", SLOW_LEDGER), "ledger")
        package = next((tmp_path / "data" / "packages").rglob("package.toml")).parent
        sock = str(tmp_path / "stale.sock")
        config = {
            "package_dir": str(package),
            "tenant": "public",
            "store": f"sqlite:///{(tmp_path / 'data' / 'tenants' / 'public' / 'state.db').resolve()}",
            "socket": sock,
            "fire_log": str(tmp_path / "stale-fires.db"),
        }
        stale = subprocess.Popen(
            [sys.executable, "-m", "headrace.supervisor.worker", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.env,
        )
        assert stale.stdout is not None
        assert b'"ready"' in stale.stdout.readline()
        r = server.http.post("/tenants/public/workflows/ledger/restart")
        assert r.status_code == 200, r.text
        server.wait_for(lambda: server.graph("ledger")["worker"]["pid"] not in (None,) and
                        server.graph("ledger")["health"]["state"] == "running", what="the new worker")
        _acked(server, list(range(50)))
        try:
            reply = _request(sock, "push", ["ledger", None, [b"60"]])  # its checkpoint is refused: it exits
        except (OSError, ValueError) as e:
            reply = e
        assert stale.wait(10) == 5, reply
        assert reply is None or isinstance(reply, OSError), reply  # never acknowledged
        _, err = stale.communicate()
        assert b"opened this graph after this one" in err
        seen = int(ledger_report(server)["seen"], 16)
        assert [e for e in range(50) if not (seen >> e) & 1] == [] and not (seen >> 60) & 1
    finally:
        if stale is not None and stale.poll() is None:
            stale.kill()
        if stale is not None:
            stale.communicate()
        server.close()
