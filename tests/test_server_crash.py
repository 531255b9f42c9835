"""Workers that die: kill -9 under load, crash loops, and hung workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server_util import PRICES, SLOW_LEDGER, Server, ledger_report, package_bytes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", env={"HEADRACE_CRASH_LIMIT": "1000", "HEADRACE_RESTART_MAX": "0.3"}).start()
    try:
        yield s
    finally:
        s.close()


class Producer:
    """Sends events 0..n-1 over the accumulator WebSocket, at most ``window``
    unacknowledged; on a refusal or a lost connection it reconnects and
    resends, in order, every event not yet acknowledged."""

    def __init__(self, server: Server, n: int, window: int = 256) -> None:
        self.server = server
        self.n = n
        self.window = window
        self.acked = [False] * n
        self.acked_count = 0
        self.refusals = 0
        self.reconnects = 0

    def first_unacked(self, start: int = 0) -> int:
        i = start
        while i < self.n and self.acked[i]:
            i += 1
        return i

    async def run(self) -> None:
        start = 0
        while self.acked_count < self.n:
            start = self.first_unacked(start)
            try:
                await self._connection(start)
            except (ConnectionClosed, OSError, TimeoutError):
                pass
            if self.acked_count < self.n:
                self.reconnects += 1
                await asyncio.sleep(0.05)

    async def _connection(self, start: int) -> None:
        url = f"{self.server.ws_url}/v1/ws/accumulator/ledger"
        # max_queue=None: when we close after a refusal, the acks still in
        # flight must not fill the client's queue and stall the close handshake.
        async with connect(url, additional_headers=self.server.auth(), max_queue=None) as ws:
            frames: list[int] = []  # frame number - 1 -> event
            sent = 0
            pending = [e for e in range(start, self.n) if not self.acked[e]]
            settled = 0
            while settled < len(pending):
                while sent < len(pending) and sent - settled < self.window:
                    await ws.send(json.dumps(pending[sent]))
                    frames.append(pending[sent])
                    sent += 1
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if "ack" in reply:
                    assert reply.get("durable", True), reply
                    event = frames[reply["ack"] - 1]
                    if not self.acked[event]:
                        self.acked[event] = True
                        self.acked_count += 1
                    settled += 1
                else:
                    # Refused (the worker is restarting): start over from the
                    # first event without an ack.
                    self.refusals += 1
                    return


def test_kill_9_under_load_loses_no_acknowledged_event(server: Server) -> None:
    server.deploy(package_bytes("ledger", SLOW_LEDGER), "ledger")
    n, kills = 20_000, 10
    producer = Producer(server, n)
    killed_at: list[int] = []
    errors: list[BaseException] = []

    def killer() -> None:
        try:
            for k in range(kills):
                server.wait_for(
                    lambda k=k: producer.acked_count >= (k + 1) * n // (kills + 2), timeout=120, what=f"progress {k}"
                )
                detail = server.wait_state("ledger", "running")
                acked = producer.acked_count
                os.kill(detail["worker"]["pid"], signal.SIGKILL)
                killed_at.append(acked)
                server.wait_for(
                    lambda k=k: server.graph("ledger")["worker"]["restarts"] == k + 1, timeout=60, what=f"restart {k}"
                )
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    thread = threading.Thread(target=killer)
    thread.start()
    asyncio.run(asyncio.wait_for(producer.run(), 300))
    thread.join()
    assert not errors, errors
    assert len(killed_at) == kills and all(0 < a < n for a in killed_at), killed_at
    assert producer.refusals >= 1  # the kills were felt by the producer

    detail = server.wait_state("ledger", "running")
    assert detail["worker"]["restarts"] == kills
    report = ledger_report(server)
    seen = int(report["seen"], 16)
    missing = [e for e in range(n) if not (seen >> e) & 1]
    assert missing == [], f"{len(missing)} acknowledged events lost, first {missing[:10]}"
    assert report["applied"] >= n  # at least once; resends after a kill may repeat
    print(f"kills at {killed_at}; applied {report['applied']} for {n} events; refusals {producer.refusals}")


CRASHING_POLL = """
import os
import headrace as hr

@hr.passthrough_accumulator
def price(event):
    return event

@hr.polling_accumulator(interval="20ms")
def feed():
    os._exit(7)  # a poll function that takes the process down

graph = hr.ComputationGraph("crashy", accumulators=[price, feed], criteria=hr.when_any(price))

@graph.node
def out(price, feed=None):
    return price
"""


def test_a_crash_looping_graph_is_stopped_and_reported(tmp_path: Path) -> None:
    env = {"HEADRACE_CRASH_LIMIT": "3", "HEADRACE_CRASH_WINDOW": "60"}
    with _server(tmp_path, env) as server:
        server.deploy(package_bytes("prices", PRICES), "prices")
        r = server.upload(package_bytes("crashy", CRASHING_POLL))
        assert r.status_code == 201, r.text  # it loads fine; it crashes once running
        detail = server.wait_state("crashy", "crash_loop", timeout=60)
        assert "3 crashes within 60 s" in detail["last_error"] and "exited with code 7" in detail["last_error"]
        # One graph's crash loop does not make the server unready for every tenant.
        ready = server.http.get("/ready")
        assert ready.status_code == 200 and ready.json()["graphs"] == {"crash_loop": 1, "running": 1}, ready.text
        # The other graph is untouched.
        r = server.http.post("/v1/health/accumulators/price/inject", params={"graph": "prices"}, json={"event": {"p": 1}})
        assert r.status_code == 200, r.text
        r = server.http.post("/v1/health/accumulators/price/inject", params={"graph": "crashy"}, json={"event": 1})
        assert r.status_code == 503 and r.json()["code"] == "unavailable" and "crash_loop" in r.json()["error"]
        # A fixed version runs.
        fixed = CRASHING_POLL.replace("os._exit(7)", "return 1")
        server.deploy(package_bytes("crashy", fixed, version="0.1.1"), "crashy")
        assert server.http.get("/ready").status_code == 200


def test_a_hung_worker_is_killed_and_restarted(tmp_path: Path) -> None:
    hanging = PRICES.replace(
        'return price["p"] * 2', 'import time\n    if price["p"] == "hang":\n        time.sleep(3600)\n    return price["p"]'
    ).replace('accumulators=[price]', 'accumulators=[price], input_strategy="sequential"')
    with _server(tmp_path, {"HEADRACE_HEARTBEAT_TIMEOUT": "2"}) as server:
        server.deploy(package_bytes("prices", hanging), "prices")

        async def push() -> None:
            url = f"{server.ws_url}/v1/ws/accumulator/price"
            async with connect(url, additional_headers=server.auth()) as ws:
                for event in [{"p": "hang"}, {"p": 1}, {"p": 2}]:
                    await ws.send(json.dumps(event))
                replies = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(3)]
            # The worker died with these events unacknowledged: each is refused.
            assert [r.get("refused") for r in replies] == [1, 2, 3], replies
            assert all(r["code"] == "unavailable" for r in replies), replies

        asyncio.run(push())
        detail = server.wait_for(
            lambda: (d := server.graph("prices"))["worker"]["restarts"] == 1 and d["health"]["state"] == "running" and d,
            what="restart of the hung worker",
        )
        assert "hung" in server.log()
        assert server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 3}}).status_code == 200
        assert detail["health"]["state"] == "running"


class _server:
    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.server = Server(tmp_path / "data", env=env)

    def __enter__(self) -> Server:
        return self.server.start()

    def __exit__(self, *exc: object) -> None:
        self.server.close()
