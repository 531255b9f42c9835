"""A node or accumulator that raises: recorded, reported, inputs not lost."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

import headrace as hr


class Flaky:
    """Raises for the first `failures` calls (or for values in `bad`)."""

    def __init__(self, failures: int = 0, bad: tuple[int, ...] = ()) -> None:
        self.failures = failures
        self.bad = bad
        self.seen: list[int] = []

    def __call__(self, price: int) -> int:
        self.seen.append(price)
        if self.failures > 0:
            self.failures -= 1
            raise ZeroDivisionError("flaky")
        if price in self.bad:
            raise ValueError(f"bad {price}")
        return price


def graph(strategy: str, node: Flaky) -> hr.ComputationGraph:
    @hr.passthrough_accumulator
    def price(e):
        return e

    g = hr.ComputationGraph("risk", accumulators=[price], input_strategy=strategy)  # type: ignore[arg-type]
    g.node(name="check")(lambda price: node(price))
    return g


def test_inline_raises_node_error_with_the_original_as_cause() -> None:
    node = Flaky(failures=1)
    with hr.Runtime(graph("latest", node)) as rt:
        with pytest.raises(hr.NodeError) as info:
            rt.push("price", 1)
        err = info.value
        assert err.graph == "risk" and err.node == "check"
        assert isinstance(err.__cause__, ZeroDivisionError)
        assert err.fire is not None and not err.fire.ok and err.fire.node == "check"
        assert "node 'check' raised ZeroDivisionError: flaky" in str(err)
        stats = rt.stats()
        assert stats["fires_failed"] == 1 and "flaky" in stats["last_error"]


def test_latest_keeps_dirty_flags_so_the_next_fire_retries_with_newest_values() -> None:
    node = Flaky(failures=1)

    @hr.passthrough_accumulator
    def price(e):
        return e

    @hr.passthrough_accumulator
    def other(e):
        return e

    g = hr.ComputationGraph("g", accumulators=[price, other], criteria=hr.when_any(price))

    @g.node
    def check(price, other):
        return node(price), other

    with hr.Runtime(g) as rt:
        with pytest.raises(hr.NodeError):
            rt.push("price", 1)
        # A non-member update alone would not fire; but price is still dirty.
        result = rt.push("other", "o")
        assert result is None
        rt.drain()  # inline: retries pending inputs
        assert node.seen == [1, 1]


def test_latest_thread_mode_retries_after_backoff() -> None:
    node = Flaky(failures=2)
    fires: list[hr.FireResult] = []
    with hr.Runtime(graph("latest", node), mode="thread", on_fire=fires.append, retry_backoff=0.01) as rt:
        rt.push("price", 7)
        deadline = time.monotonic() + 5
        while not any(f.ok for f in fires) and time.monotonic() < deadline:
            time.sleep(0.005)
    assert [(f.ok, f.attempt) for f in fires] == [(False, 1), (False, 2), (True, 1)] or [
        (f.ok, f.attempt) for f in fires
    ][:3] == [(False, 1), (False, 2), (True, 1)]
    assert node.seen[:3] == [7, 7, 7]


def test_sequential_keeps_the_item_and_retries_it_before_later_ones(mode) -> None:
    node = Flaky(failures=1)
    fires: list[hr.FireResult] = []
    with hr.Runtime(graph("sequential", node), mode=mode, on_fire=fires.append, retry_backoff=0.01) as rt:
        try:
            rt.push("price", 1)
        except hr.NodeError:
            assert mode == "inline"
        rt.push("price", 2)
        rt.drain(timeout=5)
    ok = [f.outputs["check"] for f in fires if f.ok]
    assert ok == [1, 2]
    assert fires[0].ok is False and fires[0].attempt == 1


def test_sequential_dead_letters_after_the_limit_and_moves_on(mode) -> None:
    node = Flaky(bad=(13,))
    fires: list[hr.FireResult] = []
    with hr.Runtime(
        graph("sequential", node), mode=mode, on_fire=fires.append, max_attempts=2, retry_backoff=0.001
    ) as rt:
        for p in (12, 13, 14):
            try:
                rt.push("price", p)
            except hr.NodeError:
                assert mode == "inline"
        rt.drain(timeout=5)
        deadline = time.monotonic() + 5
        while rt.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.005)
        stats = rt.stats()
    assert [f.outputs["check"] for f in fires if f.ok] == [12, 14]
    (letter,) = stats["dead_letters"]
    assert letter["accumulator"] == "price" and letter["value"] == 13 and letter["stage"] == "fire"
    assert letter["attempts"] == 2 and "bad 13" in letter["error"]
    assert [f.dead_lettered for f in fires if not f.ok] == [False, True]


def test_thread_mode_reports_failures_to_on_fire_and_stats() -> None:
    node = Flaky(bad=(5,))
    fires: list[hr.FireResult] = []
    with hr.Runtime(graph("sequential", node), mode="thread", on_fire=fires.append, max_attempts=1) as rt:
        rt.push("price", 5)
        rt.push("price", 6)
        rt.drain(timeout=5)
        stats = rt.stats()
    failed = [f for f in fires if not f.ok]
    assert len(failed) == 1 and isinstance(failed[0].error, ValueError) and failed[0].node == "check"
    assert stats["fires_failed"] == 1 and stats["fire_count"] == 1  # successful fires only


def test_accumulator_that_raises(mode) -> None:
    @hr.passthrough_accumulator
    def parse(e):
        return int(e)

    g = hr.ComputationGraph("g", accumulators=[parse], input_strategy="sequential")
    g.node(name="out")(lambda parse: parse)
    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode=mode, on_fire=fires.append) as rt:
        if mode == "inline":
            with pytest.raises(hr.AccumulatorError) as info:
                rt.push("parse", "x")
            assert isinstance(info.value.__cause__, ValueError) and info.value.accumulator == "parse"
        else:
            rt.push("parse", "x")
        rt.push("parse", "3")
        rt.drain(timeout=5)
        stats = rt.stats()
    assert [f.outputs["out"] for f in fires] == [3]
    assert stats["accumulators"]["parse"]["errors"] == 1
    assert stats["dead_letters"][0]["value"] == "x" and stats["dead_letters"][0]["stage"] == "accumulator"


def test_on_fire_callback_errors_are_logged_not_fatal(mode, caplog) -> None:
    def broken(result):
        raise RuntimeError("callback bug")

    with hr.Runtime(graph("sequential", Flaky()), mode=mode, on_fire=broken) as rt:
        rt.push("price", 1)
        rt.push("price", 2)
        rt.drain(timeout=5)
        assert rt.stats()["fire_count"] == 2
    assert "callback bug" in caplog.text


def test_push_from_inside_an_inline_fire_is_refused_clearly() -> None:
    holder: list[hr.Runtime] = []

    @hr.passthrough_accumulator
    def a(e):
        return e

    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node
    def loop(a):
        holder[0].push("a", a + 1)

    with hr.Runtime(g) as rt:
        holder.append(rt)
        with pytest.raises(hr.NodeError) as info:
            rt.push("a", 1)
        assert "cannot start another" in str(info.value.__cause__)
    holder.clear()


def test_inline_runtime_is_usable_from_several_threads() -> None:
    total = []

    @hr.passthrough_accumulator
    def a(e):
        return e

    g = hr.ComputationGraph("g", accumulators=[a], input_strategy="sequential")

    @g.node
    def add(a):
        total.append(a)
        return a

    with hr.Runtime(g) as rt:
        threads = [threading.Thread(target=lambda k=k: [rt.push("a", k * 1000 + i) for i in range(500)]) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(total) == sorted(k * 1000 + i for k in range(4) for i in range(500))


def test_fire_count_counts_successful_fires_only(mode) -> None:
    """A bad message retried three times adds three failed fires, no successful one."""
    node = Flaky(bad=(13,))
    with hr.Runtime(graph("sequential", node), mode=mode, max_attempts=3, retry_backoff="1ms") as rt:
        for price in (1, 2, 3):
            rt.push("price", price)
        with contextlib.suppress(hr.NodeError):
            rt.push("price", 13)
        deadline = time.monotonic() + 30
        while rt.stats()["fires_failed"] < 3 and time.monotonic() < deadline:
            time.sleep(0.005)  # past the backoff: drain retries (inline), or the timer did
            with contextlib.suppress(hr.NodeError):
                rt.drain(timeout=30)
        stats = rt.stats()
    assert (stats["fire_count"], stats["fires_failed"]) == (3, 3)
    assert stats["dead_letters"][0]["value"] == 13
