"""The five accumulator kinds."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr


def graph_over(*accs: hr.Accumulator, criteria: hr.Criteria | None = None, strategy: str = "sequential") -> hr.ComputationGraph:
    g = hr.ComputationGraph("g", accumulators=list(accs), criteria=criteria, input_strategy=strategy)  # type: ignore[arg-type]
    params = ", ".join(a.name for a in accs)
    ns: dict[str, Any] = {}
    exec(f"def seen({params}):\n    return ({params},)", ns)
    g.node(ns["seen"])
    return g


def test_returning_none_suppresses_the_boundary(harness) -> None:
    @hr.passthrough_accumulator
    def odd(e):
        return e if e % 2 else None

    h = harness(graph_over(odd))
    for i in range(6):
        h.push("odd", i)
    assert h.outputs("seen") == [(1,), (3,), (5,)]
    assert h.rt.stats()["accumulators"]["odd"]["suppressed"] == 3


def test_state_accumulator_emits_its_bounded_window(harness) -> None:
    @hr.state_accumulator(capacity=3)
    def recent(e):
        return e["price"] if e["price"] > 0 else None

    h = harness(graph_over(recent))
    for p in [1, 2, -1, 3, 4]:
        h.push("recent", {"price": p})
    assert h.outputs("seen") == [([1],), ([1, 2],), ([1, 2, 3],), ([2, 3, 4],)]


def test_stream_accumulator_accepts_pushes_and_keeps_its_state(harness) -> None:
    @hr.stream_accumulator(type="kafka", topic="fills", state=0.0)
    def exposure(event, state):
        state.value += event["qty"] if event["side"] == "buy" else -event["qty"]
        return {"exposure": state.value}

    assert exposure.config["group"] == "exposure_group" and exposure.config["broker"] == "KAFKA_BROKER"
    h = harness(graph_over(exposure), sources=False)
    for e in [{"side": "buy", "qty": 5}, {"side": "sell", "qty": 2}]:
        h.push("exposure", e)
    assert h.outputs("seen") == [({"exposure": 5.0},), ({"exposure": 3.0},)]
    # A second runtime of the same graph starts from the declared state, not the first one's.
    other = hr.Runtime(graph_over(exposure))
    try:
        result = other.push("exposure", {"side": "buy", "qty": 1})
        assert result is not None and result.outputs["seen"] == ({"exposure": 1.0},)
    finally:
        other.close()


# --- batch -------------------------------------------------------------------------------


def batch_graph(max_buffer_size: int | None = None, flush_interval: str | None = None) -> tuple[hr.ComputationGraph, list[list[int]]]:
    flushed: list[list[int]] = []

    @hr.passthrough_accumulator
    def tick(e):
        return e

    @hr.batch_accumulator(max_buffer_size=max_buffer_size, flush_interval=flush_interval)
    def fills(events):
        flushed.append(list(events))
        return sum(events)

    g = graph_over(tick, fills, criteria=hr.when_any(tick))
    return g, flushed


def test_batch_flushes_after_each_successful_fire(harness) -> None:
    g, flushed = batch_graph()
    h = harness(g)
    h.push("fills", 1)
    h.push("fills", 2)
    h.push("tick", "t1")
    h.push("tick", "t2")
    assert h.outputs("seen") == [("t1", None), ("t2", 3)]
    assert flushed == [[1, 2]]


def test_batch_flushes_on_size_and_at_shutdown(harness) -> None:
    g, flushed = batch_graph(max_buffer_size=3)
    h = harness(g)
    for i in range(7):
        h.push("fills", i)
    h.settle()
    assert flushed == [[0, 1, 2], [3, 4, 5]]
    assert h.rt.stats()["accumulators"]["fills"]["buffered"] == 1
    h.close()
    assert flushed == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_flushes_on_interval_in_thread_mode() -> None:
    g, flushed = batch_graph(flush_interval="50ms")
    with hr.Runtime(g, mode="thread") as rt:
        rt.push("fills", 1)
        deadline = time.monotonic() + 5
        while not flushed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flushed == [[1]]


@given(
    size=st.integers(1, 6),
    ops=st.lists(st.one_of(st.integers(0, 10_000), st.just("tick")), max_size=60),
)
def test_batch_never_flushes_an_event_twice_nor_loses_one(size, ops) -> None:
    for mode in ("inline", "thread"):
        g, flushed = batch_graph(max_buffer_size=size)
        events = [op for op in ops if op != "tick"]
        with hr.Runtime(g, mode=mode) as rt:
            for op in ops:
                rt.push("tick" if op == "tick" else "fills", op)
        assert [e for batch in flushed for e in batch] == events
        assert all(0 < len(b) <= size for b in flushed)


# --- polling -----------------------------------------------------------------------------


def poll_until(acc: hr.Accumulator, polls: list[int], n: int) -> tuple[list[hr.FireResult], dict[str, Any]]:
    """Runs `graph_over(acc)` in thread mode until `polls` holds `n` entries
    (or 10 s pass); returns the fires and the accumulator's stats at the end."""
    fires: list[hr.FireResult] = []
    with hr.Runtime(graph_over(acc), mode="thread", on_fire=fires.append) as rt:
        deadline = time.monotonic() + 10
        while len(polls) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        rt.drain(timeout=5)
        stats = rt.stats()["accumulators"][acc.name]
    return fires, stats


def test_polling_runs_on_its_timer_and_suppresses_unchanged_values() -> None:
    values = iter([1, 1, None, 2, 2, 2, 3] + [3] * 1000)
    calls = []

    @hr.polling_accumulator(interval="10ms")
    def config():
        calls.append(1)
        return next(values)

    fires, acc = poll_until(config, calls, 10)
    assert acc["health"] == "live"
    assert [f.outputs["seen"] for f in fires] == [(1,), (2,), (3,)]


def test_async_polling_function_and_raising_polls() -> None:
    attempts = []

    @hr.polling_accumulator(interval=0.01)
    async def quote():
        await asyncio.sleep(0)
        attempts.append(1)
        if len(attempts) == 2:
            raise ConnectionError("feed down")
        return len(attempts)

    fires, acc = poll_until(quote, attempts, 5)
    assert acc["errors"] >= 1 and "feed down" in acc["last_error"]
    got = [f.outputs["seen"][0] for f in fires]
    assert 2 not in got and got[:2] == [1, 3]


def test_manual_poll_in_both_modes(mode) -> None:
    state = {"v": 10}

    @hr.polling_accumulator(interval="1h")
    def ref():
        return state["v"]

    fires: list[hr.FireResult] = []
    with hr.Runtime(graph_over(ref), mode=mode, on_fire=fires.append) as rt:
        # Thread mode polls once at start; a manual poll of the same value emits nothing.
        rt.poll("ref")
        state["v"] = 11
        rt.poll("ref")
        rt.drain(timeout=5)
    assert [f.outputs["seen"] for f in fires] == [(10,), (11,)]


def test_manual_poll_that_raises(mode) -> None:
    @hr.polling_accumulator(interval="1h")
    def broken():
        raise RuntimeError("db gone")

    with hr.Runtime(graph_over(broken), mode=mode) as rt:
        with pytest.raises(hr.AccumulatorError, match="db gone") as info:
            rt.poll("broken")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert rt.stats()["health"] == "degraded"


def test_slow_poll_does_not_block_the_graph() -> None:
    release = threading.Event()

    @hr.polling_accumulator(interval="1h")
    def slow():
        release.wait(10)
        return 1

    @hr.passthrough_accumulator
    def fast(e):
        return e

    fires: list[hr.FireResult] = []
    with hr.Runtime(graph_over(slow, fast, criteria=hr.when_any(fast)), mode="thread", on_fire=fires.append) as rt:
        rt.push("fast", "go")
        rt.drain(timeout=5)
        assert [f.outputs["seen"] for f in fires] == [(None, "go")]
        release.set()


def test_batch_is_not_flushed_by_a_failed_fire(mode) -> None:
    flushed: list[list[int]] = []
    fail = [True]

    @hr.passthrough_accumulator
    def tick(e):
        return e

    @hr.batch_accumulator()
    def fills(events):
        flushed.append(list(events))
        return sum(events)

    g = hr.ComputationGraph("g", accumulators=[tick, fills], criteria=hr.when_any(tick), input_strategy="sequential")

    @g.node
    def n(tick, fills):
        if fail[0]:
            raise RuntimeError("down")
        return (tick, fills)

    with hr.Runtime(g, mode=mode, max_attempts=1) as rt:
        rt.push("fills", 1)
        try:
            rt.push("tick", "t1")
        except hr.NodeError:
            assert mode == "inline"
        rt.drain(timeout=5)
        assert flushed == [] and rt.stats()["accumulators"]["fills"]["buffered"] == 1
        fail[0] = False
        rt.push("tick", "t2")
        rt.drain(timeout=5)
        assert flushed == [[1]]
