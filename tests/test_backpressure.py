"""The bounded queue: full means push back, never drop."""

from __future__ import annotations

import threading
import time

import pytest

import headrace as hr


def blocked_runtime(capacity: int, seen: list[int], gate: threading.Event, entered: threading.Event) -> hr.Runtime:
    @hr.passthrough_accumulator
    def a(e):
        return e

    g = hr.ComputationGraph("g", accumulators=[a], input_strategy="sequential")

    @g.node
    def slow(a):
        if a == 0:
            entered.set()
            gate.wait(10)
        seen.append(a)

    return hr.Runtime(g, mode="thread", capacity=capacity)


def test_try_push_raises_when_full_and_nothing_accepted_is_lost() -> None:
    seen: list[int] = []
    gate, entered = threading.Event(), threading.Event()
    rt = blocked_runtime(4, seen, gate, entered)
    try:
        rt.push("a", 0)
        assert entered.wait(10)
        for i in range(1, 5):
            rt.try_push("a", i)
        with pytest.raises(hr.BackpressureError, match=r"queue full \(4 items\)") as info:
            rt.try_push("a", 99)
        assert info.value.capacity == 4
        assert rt.stats()["queue_depth"] == 4 and rt.stats()["queue_capacity"] == 4
        gate.set()
        rt.drain(timeout=10)
    finally:
        gate.set()
        rt.close()
    assert seen == [0, 1, 2, 3, 4]


def test_push_waits_up_to_its_timeout() -> None:
    seen: list[int] = []
    gate, entered = threading.Event(), threading.Event()
    rt = blocked_runtime(1, seen, gate, entered)
    try:
        rt.push("a", 0)
        assert entered.wait(10)
        rt.push("a", 1)
        started = time.monotonic()
        with pytest.raises(hr.BackpressureError, match="after waiting"):
            rt.push("a", 2, timeout=0.05)
        assert time.monotonic() - started >= 0.04
        # A blocked push succeeds once there is room.
        threading.Timer(0.05, gate.set).start()
        rt.push("a", 3, timeout=10)
        rt.drain(timeout=10)
    finally:
        gate.set()
        rt.close()
    assert seen == [0, 1, 3]


def test_drain_times_out_clearly() -> None:
    seen: list[int] = []
    gate, entered = threading.Event(), threading.Event()
    rt = blocked_runtime(8, seen, gate, entered)
    try:
        rt.push("a", 0)
        assert entered.wait(10)
        with pytest.raises(TimeoutError, match="unprocessed"):
            rt.drain(timeout=0.05)
    finally:
        gate.set()
        rt.close()


def test_closed_runtime_refuses_pushes(mode) -> None:
    @hr.passthrough_accumulator
    def a(e):
        return e

    g = hr.ComputationGraph("g", accumulators=[a])
    g.node(name="n")(lambda a: a)
    rt = hr.Runtime(g, mode=mode)
    rt.close()
    rt.close()  # idempotent
    with pytest.raises(hr.HeadraceError, match="is closed"):
        rt.push("a", 1)


@pytest.mark.parametrize("idle_spin", [0, "1ms"])
def test_idle_spin_setting(idle_spin) -> None:
    fires: list[hr.FireResult] = []

    @hr.passthrough_accumulator
    def a(e):
        return e

    g = hr.ComputationGraph("g", accumulators=[a], input_strategy="sequential")
    g.node(name="n")(lambda a: a)
    with hr.Runtime(g, mode="thread", idle_spin=idle_spin, on_fire=fires.append) as rt:
        for i in range(3):
            rt.push("a", i)
            time.sleep(0.002)  # let the processor go idle between events
        rt.drain(timeout=5)
    assert [f.outputs["n"] for f in fires] == [0, 1, 2]
    with pytest.raises(ValueError, match="idle_spin"):
        hr.Runtime(g, mode="thread", idle_spin="-1ms")
