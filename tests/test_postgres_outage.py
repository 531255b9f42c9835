"""A real PostgreSQL restart while a graph runs: health shows the outage while
it lasts, checkpoints resume afterwards, and no acknowledged state is lost."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import headrace as hr
from headrace.checkpoint import inspect

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"


def graph() -> hr.ComputationGraph:
    @hr.stream_accumulator(topic="t", state=0)
    def counted(e, state):
        state.value += 1
        return state.value

    g = hr.ComputationGraph("outage", accumulators=[counted], input_strategy="sequential")
    g.node(name="n")(lambda counted: counted)
    return g


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_postgres_restart_while_running(postgres_url, tenant) -> None:
    with hr.Runtime(graph(), mode="thread", store=postgres_url, tenant=tenant, checkpoint_interval="50ms", sources=False) as rt:
        for i in range(100):
            rt.push("counted", i)
        rt.checkpoint(timeout=30)
        subprocess.run([str(SCRIPT), "stop"], check=True)
        try:
            for i in range(100, 200):
                rt.push("counted", i)
            wait_for(lambda: rt.stats()["checkpoint"]["health"] == "failing", 30, "the outage to show")
            stats = rt.stats()
            assert stats["health"] == "degraded" and stats["checkpoint"]["last_error"]
            assert stats["fire_count"] == 200  # the graph keeps running meanwhile
        finally:
            subprocess.run([str(SCRIPT), "start"], check=True, capture_output=True)
        wait_for(lambda: rt.stats()["checkpoint"]["health"] == "ok", 60, "checkpoints to resume")
        rt.checkpoint(timeout=30)
        assert rt.stats()["health"] == "live"
    assert inspect(postgres_url, "outage", tenant)["accumulator:counted"]["user_state"] == 200
