"""Faults around a worker: a locked or full fire log, a full store disk, a
dead thread, a broken IPC connection, no file descriptors to spawn with, a
corrupted checkpoint, a slow shutdown. None may leave a graph silently cut
off: it refuses with a clear code, health says so, and it recovers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace._logging import RepeatFilter
from server_util import PRICES, ROOT, Server, alive, package_bytes, send_acked


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fills the file system of ``directory``; returns the filler to delete."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    with contextlib.suppress(OSError), filler.open("ab") as f:
        while True:
            f.write(b"\0" * 512)
            f.flush()
    return filler


def push(server: Server, events: list[Any], accumulator: str = "price") -> list[dict[str, Any]]:
    return asyncio.run(send_acked(server, accumulator, events))


def wait_acked(server: Server, event: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    """Pushes ``event`` until it is acknowledged durably; returns that ack."""
    def attempt() -> dict[str, Any] | None:
        reply = push(server, [event])[0]
        return reply if "ack" in reply and reply.get("durable", True) else None

    result: dict[str, Any] = server.wait_for(attempt, timeout=timeout, what=what)
    return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", env={"HEADRACE_CRASH_LIMIT": "1000", "HEADRACE_RESTART_MAX": "0.5"}).start()
    try:
        yield s
    finally:
        s.close()


# --- the fire log --------------------------------------------------------------


def test_a_locked_fire_log_refuses_pushes_shows_in_health_and_recovers(server: Server, tmp_path: Path) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")
    assert "ack" in push(server, [{"p": 1}])[0]
    lock = sqlite3.connect(tmp_path / "data" / "tenants" / "public" / "fires" / "prices.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        first = push(server, [{"p": 2}])[0]
        # Accepted and checkpointed, but its fire could not be logged: said so.
        assert first.get("durable") is False and "fire log" in first["error"] and "locked" in first["error"], first
        refused = push(server, [{"p": 3}])[0]
        assert refused.get("code") == "fire_log_unavailable" and "locked" in refused["error"], refused
        detail = server.wait_for(
            lambda: (d := server.graph("prices"))["health"]["engine"] == "degraded" and d, what="degraded health"
        )
        assert "fire log" in detail["last_error"]
        assert server.graph("prices")["health"]["state"] == "running"
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_acked(server, {"p": 4}, "acks after the lock is released")
    assert server.graph("prices")["health"]["engine"] == "live"
    outputs = [f["outputs"]["double"] for f in server.fires("prices")]
    assert outputs[0] == 8 and 4 in outputs  # the fire of event 2 was logged once the file was back


BIG = PRICES.replace('return price["p"] * 2', 'return len(price["p"])')


def test_a_full_disk_under_the_fire_log_refuses_pushes_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "data" / "tenants" / "public" / "fires", "2m") as fires:
        server = Server(tmp_path / "data").start()
        try:
            server.deploy(package_bytes("prices", BIG), "prices")
            assert "ack" in push(server, [{"p": "x" * 1000}])[0]
            filler = fill(fires)
            replies = push(server, [{"p": "y" * 200_000}, {"p": "z" * 200_000}])
            assert replies[0].get("durable") is False or replies[0].get("code") == "fire_log_unavailable", replies
            assert "full" in str(replies), replies
            refused = push(server, [{"p": "w"}])[0]
            assert refused.get("code") == "fire_log_unavailable", refused
            filler.unlink()
            wait_acked(server, {"p": "v" * 10}, "acks once the disk has room")
        finally:
            server.close()


def test_a_full_disk_under_the_store_is_named_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "store", "4m") as disk:
        env = {"HEADRACE_STORE": f"sqlite:///{disk}/state.db"}
        server = Server(tmp_path / "data", env=env).start()
        try:
            server.deploy(package_bytes("prices", BIG), "prices")
            assert "ack" in push(server, [{"p": "a"}])[0]
            filler = fill(disk)
            pending: list[dict[str, Any]] = []
            sender = threading.Thread(target=lambda: pending.extend(push(server, [{"p": "b" * 300_000}])))
            sender.start()
            detail = server.wait_for(
                lambda: (d := server.graph("prices"))["last_error"] and "full" in d["last_error"] and d,
                what="the store failure in health",
            )
            assert "cannot rollback" not in detail["last_error"]
            assert "state.db" in detail["last_error"] and detail["health"]["engine"] == "degraded"
            refused = server.wait_for(
                lambda: (r := push(server, [{"p": "c"}])[0]).get("code") == "store_unavailable" and r,
                what="refusal while the store is full",
            )
            assert "full" in refused["error"]
            assert sender.is_alive()  # the accepted event's ack waits for the store
            filler.unlink()
            sender.join(60)
            assert pending and "ack" in pending[0] and pending[0].get("durable", True), pending
            assert "cannot rollback" not in server.log()
        finally:
            server.close()


# --- threads, connections, spawning -----------------------------------------------


def test_a_dead_worker_thread_ends_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: the fire log's thread dies of an unexpected error; the
    serving loop notices and ends the worker with EXIT_THREAD (the supervisor
    restarts it), after a final checkpoint."""
    from headrace.packages import extract_package
    from headrace.supervisor import worker as worker_main
    from headrace.supervisor.protocol import EXIT_THREAD
    from headrace.supervisor.worker_ops import WorkerOps

    root = extract_package(package_bytes("prices", PRICES), tmp_path / "pkg")
    ops = WorkerOps({
        "package_dir": str(root), "tenant": "public", "store": f"sqlite:///{tmp_path}/s.db",
        "socket": str(tmp_path / "w.sock"), "fire_log": str(tmp_path / "fires.db"),
    })
    ops.start()

    flush = ops.fires.flush

    def broken_once(*, retry_now: bool = True) -> bool:
        ops.fires.flush = flush  # type: ignore[method-assign]
        raise RuntimeError("a bug")

    ops.fires.flush = broken_once  # type: ignore[method-assign]
    monkeypatch.setattr(worker_main, "_watch_parent", lambda stopping: threading.Event().wait())  # no supervisor here
    r, w = os.pipe()
    code = worker_main.serve(ops, str(tmp_path / "w.sock"), worker_main._Status(w), threading.Event())
    os.close(w)
    with os.fdopen(r, "rb") as f:
        status = f.read()
    assert code == EXIT_THREAD
    assert b'"worker_thread"' in status and b"fire log" in status


BREAKER = PRICES.replace(
    'return price["p"] * 2',
    """import os, socket, stat
    if price["p"] == "break":
        # A hostile node: a frame header of 4 GiB on every connected socket.
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    s = socket.socket(fileno=fd)
                    try:
                        if s.getpeername() is not None and s.type == socket.SOCK_STREAM and s.family == socket.AF_UNIX:
                            os.write(fd, b"\\xff\\xff\\xff\\xff")
                    finally:
                        s.detach()
            except OSError:
                pass
        return 0
    return price["p"] * 2""",
)


def test_a_broken_ipc_connection_is_reconnected_and_the_graph_serves_again(server: Server) -> None:
    server.deploy(package_bytes("prices", BREAKER), "prices")
    reply = push(server, [{"p": "break"}])[0]
    assert reply.get("code") == "unavailable" or "ack" in reply, reply
    wait_acked(server, {"p": 21}, "the graph serving again", timeout=30)
    assert server.graph("prices")["health"]["state"] == "running"
    assert "connection to the worker lost" in server.log() and "exceeds the" in server.log()


def test_a_worker_is_restarted_once_file_descriptors_are_available_again(server: Server) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")
    assert server.proc is not None
    pid = server.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir(f"/proc/{pid}/fd"))
    worker = server.graph("prices")["worker"]["pid"]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 2, hard))  # no room for a worker's pipes
    try:
        os.kill(worker, signal.SIGKILL)
        server.wait_for(lambda: "could not start the worker" in server.log(), what="a failed spawn")
        time.sleep(3)  # several retries with backoff
        assert server.graph("prices")["health"]["state"] in ("restarting", "starting")
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    server.wait_state("prices", "running", timeout=60)
    wait_acked(server, {"p": 1}, "acks after the restart")
    # The failures were retried, not counted as crashes, and logged without a flood.
    assert server.log().count("could not start the worker") < 20


def test_repeated_log_lines_are_collapsed() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    handler.addFilter(RepeatFilter(window=0.3))
    logger = logging.getLogger("test.repeat")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for _ in range(10_000):
            logger.error("spawn failed: %s", "EMFILE")
        logger.error("another line")
        time.sleep(0.35)
        logger.error("spawn failed: %s", "EMFILE")
    finally:
        logger.removeHandler(handler)
    assert records[:2] == ["spawn failed: EMFILE", "another line"]
    assert len(records) == 3 and records[2].startswith("spawn failed: EMFILE (repeated 9999 more times in ")


# --- checkpoints and shutdown ------------------------------------------------------------


@pytest.mark.parametrize("way_out", ["discard", "on-corrupt"])
def test_a_corrupted_checkpoint_has_a_way_out_from_the_command_line(
    server: Server, tmp_path: Path, way_out: str
) -> None:
    graph = PRICES.replace("@hr.passthrough_accumulator", "@hr.state_accumulator(capacity=5)").replace(
        'return price["p"] * 2', 'return len(price)'
    )
    server.deploy(package_bytes("prices", graph), "prices")
    assert all("ack" in r for r in push(server, [{"p": 1}, {"p": 2}]))
    server.stop()
    db = sqlite3.connect(tmp_path / "data" / "tenants" / "public" / "state.db")
    with db:
        db.execute("UPDATE headrace_checkpoint SET data = x'00ff00ff'")
    db.close()
    server.start()
    detail = server.wait_for(
        lambda: (d := server.graph("prices"))["health"]["state"] in ("crash_loop", "restarting") and d["last_error"]
        and "corrupt" in d["last_error"] and d,
        what="the corrupt checkpoint reported",
    )
    assert "prices" in detail["last_error"]
    command = {
        "discard": ["discard", "--yes"],
        "on-corrupt": ["on-corrupt", "start_empty"],
    }[way_out]
    out = subprocess.run(
        [sys.executable, "-m", "headrace", "checkpoint", *command, "--tenant", "public", "--graph", "prices",
         "-d", str(tmp_path / "data")],
        capture_output=True, text=True, env=server.env, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert ("component(s) in" if way_out == "discard" else "on_corrupt = start_empty") in out.stdout, out.stdout
    r = server.http.post("/tenants/public/workflows/prices/restart")
    assert r.status_code == 200, r.text
    server.wait_state("prices", "running")
    r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 3}})
    assert r.status_code == 200, r.text
    fire = server.wait_for(lambda: server.fires("prices", 1), what="a fire")[0]
    assert fire["outputs"]["double"] == 1  # one value in the window: started empty


FORKING = PRICES.replace(
    'return price["p"] * 2',
    'import subprocess\n    subprocess.Popen(["sleep", "600"])  # holds the worker\'s stdout\n    return price["p"] * 2',
)


def test_shutdown_does_not_wait_for_what_nodes_forked(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        server.deploy(package_bytes("prices", FORKING), "prices")
        assert "ack" in push(server, [{"p": 1}])[0]
        children = subprocess.check_output(["pgrep", "-x", "sleep", "-g", str(server.graph("prices")["worker"]["pid"])])
        started = time.monotonic()
        server.stop(signal.SIGTERM)
        took = time.monotonic() - started
        assert took < 15, f"shutdown took {took:.1f} s"  # the stop timeout is 30 s
        assert not any(alive(int(p)) for p in children.split())
    finally:
        server.close()


# --- frames bounded by bytes -------------------------------------------------------


def test_hundreds_of_megabytes_at_once_neither_cut_the_graph_off_nor_its_fire_reads(
    server: Server, tmp_path: Path
) -> None:
    """300 WebSocket frames of ~1 MiB sent at once (over the old 256 MiB frame
    limit in one batch), then a read of 150 large fires: both answered, and
    the graph serves on."""
    server.deploy(package_bytes("prices", BIG), "prices")
    payload = "q" * (1024 * 1024 - 100)
    replies = push(server, [{"p": payload}] * 300)
    assert all("ack" in r for r in replies), [r for r in replies if "ack" not in r][:3]
    r = server.http.get("/v1/health/reactors/prices/fires", params={"limit": 150})
    assert r.status_code == 200, r.text[:500]
    assert 1 <= len(r.json()["items"]) <= 150
    wait_acked(server, {"p": "after"}, "acks after the flood")
    assert server.graph("prices")["worker"]["restarts"] == 0
    # Fire reads page by bytes (the worker's fires op pages itself): every
    # fire exactly once, newest first, no page over the byte budget but by
    # its one fire.
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 150} | ({"cursor": cursor} if cursor else {})
        r = server.http.get("/v1/health/reactors/prices/fires", params=params)
        assert r.status_code == 200, r.text[:500]
        page = r.json()
        assert page["items"], page
        assert len(page["items"]) == 1 or len(r.content) <= 2 * 1024 * 1024
        seen += [f["id"] for f in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 301


# --- resident memory -----------------------------------------------------------

HOARDER = PRICES.replace(
    'return price["p"] * 2',
    'HOARD.append(b"x" * (price["mb"] * 1024 * 1024))  # written, so resident\n    return price["p"] * 2',
).replace("import headrace as hr", "import headrace as hr\n\nHOARD = []")


def test_a_worker_over_its_resident_memory_limit_is_restarted(tmp_path: Path) -> None:
    """The supervisor reads each worker's resident size every second: one that
    holds more than --worker-rss-mb is killed, named, and restarted."""
    server = Server(tmp_path / "data", env={"HEADRACE_WORKER_RSS_MB": "150", "HEADRACE_RESTART_MAX": "0.5"}).start()
    try:
        server.deploy(package_bytes("prices", HOARDER), "prices")
        assert "ack" in push(server, [{"p": 1, "mb": 10}])[0]
        time.sleep(2.5)  # two checks: 10 MiB held is within the limit
        assert server.graph("prices")["worker"]["restarts"] == 0
        push(server, [{"p": 2, "mb": 300}])
        detail = server.wait_for(
            lambda: (d := server.graph("prices"))["worker"]["restarts"] >= 1 and d, what="the restart over the limit"
        )
        assert "resident memory" in detail["last_error"] and "150 MiB" in detail["last_error"], detail["last_error"]
        server.wait_state("prices", "running")
        wait_acked(server, {"p": 3, "mb": 1}, "acks after the restart")
    finally:
        server.close()
