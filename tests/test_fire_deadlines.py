"""Fire deadlines: `fire_timeout` bounds a fire, a node's `timeout` its own run.
Past either, the fire fails with FireTimeoutError naming the node that overran;
a timed-out fire is a failed fire (inputs kept, retried, dead-lettered).

Nodes that overrun sleep well past their deadline, so every assertion holds
however slow the machine is: none of them bounds how fast anything runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import headrace as hr


def price_graph(**kw: Any) -> hr.ComputationGraph:
    @hr.passthrough_accumulator
    def price(e: Any) -> Any:
        return e

    return hr.ComputationGraph("deadlines", accumulators=[price], **kw)


def test_past_the_fire_timeout_the_rest_is_skipped_and_the_node_named(async_harness: Any) -> None:
    g = price_graph(fire_timeout="20ms")
    ran: list[str] = []

    @g.node
    def first(price: int) -> int:
        ran.append("first")
        time.sleep(0.06)
        return price

    @g.node
    def second(first: int) -> int:
        ran.append("second")
        return first

    r = async_harness(g, max_attempts=1)
    r.push("price", 1)
    assert ran == ["first"], "nothing runs once the deadline has passed"
    [fire] = r.fires
    assert not fire.ok and fire.node == "first"
    error = fire.error
    assert isinstance(error, hr.FireTimeoutError) and isinstance(error, hr.NodeError)
    assert error.node == "first" and error.deadline == "fire" and error.graph == "deadlines"
    assert error.limit == pytest.approx(0.02) and error.overrun > 0
    assert "node 'first' overran the fire deadline (fire_timeout 20ms) by" in str(error)
    if r.rt.mode == "inline":
        assert r.errors == [error] and error.fire is not None and error.fire.id == fire.id


def test_a_sync_node_past_its_own_timeout_fails_the_fire(async_harness: Any) -> None:
    g = price_graph()

    @g.node(timeout="10ms")
    def slow(price: int) -> int:
        time.sleep(0.04)
        return price

    r = async_harness(g, max_attempts=1)
    r.push("price", 1)
    error = r.fires[0].error
    assert isinstance(error, hr.FireTimeoutError)
    assert error.node == "slow" and error.deadline == "node" and error.overrun > 0
    assert "its timeout (10ms)" in str(error)


def test_an_async_node_past_its_timeout_is_cancelled(async_harness: Any) -> None:
    g = price_graph()
    cancelled: list[bool] = []

    @g.node(timeout="30ms")
    async def stuck(price: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return price

    @g.node
    async def quick(price: int) -> int:
        return price

    r = async_harness(g, max_attempts=1)
    r.push("price", 1)
    assert cancelled == [True]
    error = r.fires[0].error
    assert isinstance(error, hr.FireTimeoutError) and error.node == "stuck" and error.deadline == "node"
    assert "was cancelled at its timeout (30ms)" in str(error)


def test_an_async_node_is_cancelled_at_what_is_left_of_the_fire(async_harness: Any) -> None:
    g = price_graph(fire_timeout="40ms")

    @g.node
    async def stuck(price: int) -> int:
        await asyncio.sleep(30)
        return price

    r = async_harness(g, max_attempts=1)
    r.push("price", 1)
    error = r.fires[0].error
    assert isinstance(error, hr.FireTimeoutError) and error.deadline == "fire" and error.node == "stuck"


def test_a_node_that_raises_its_own_timeout_error_is_not_a_deadline(async_harness: Any) -> None:
    g = price_graph(fire_timeout="10s")

    @g.node
    async def own(price: int) -> int:
        async with asyncio.timeout(0.001):
            await asyncio.sleep(1)
        return price

    r = async_harness(g, max_attempts=1)
    r.push("price", 1)
    error = r.fires[0].error
    assert isinstance(error, TimeoutError) and not isinstance(error, hr.FireTimeoutError)


class SlowFirst:
    """Overruns any deadline on its first `slow` calls, then is quick."""

    def __init__(self, slow: int) -> None:
        self.slow = slow
        self.seen: list[int] = []

    def __call__(self, price: int) -> int:
        self.seen.append(price)
        if len(self.seen) <= self.slow:
            time.sleep(0.05)
        return price


def retried_once(async_harness: Any, strategy: str, slow: int, max_attempts: int) -> tuple[Any, SlowFirst]:
    """Pushes price 1 through a node `n` that overruns a 10 ms fire deadline on
    its first `slow` calls, and waits for the fire and its one retry."""
    g = price_graph(fire_timeout="10ms", input_strategy=strategy)
    node = SlowFirst(slow=slow)
    g.node(name="n")(lambda price: node(price))
    r = async_harness(g, max_attempts=max_attempts, retry_backoff=0)
    r.push("price", 1)
    r.retry()
    r.wait_for(2)
    return r, node


@pytest.mark.parametrize("strategy", ["latest", "sequential"])
def test_a_timed_out_fire_keeps_its_inputs_and_is_retried(async_harness: Any, strategy: str) -> None:
    r, _ = retried_once(async_harness, strategy, slow=1, max_attempts=3)
    assert [f.ok for f in r.fires[:2]] == [False, True]
    assert r.fires[1].outputs == {"n": 1}, "the same input, retried"
    assert r.rt.stats()["fires_failed"] == 1 and not r.rt.stats()["dead_letters"]


def test_a_sequential_boundary_that_keeps_timing_out_is_dead_lettered(async_harness: Any) -> None:
    r, node = retried_once(async_harness, "sequential", slow=2, max_attempts=2)
    r.push("price", 2)
    assert node.seen == [1, 1, 2]
    [letter] = r.rt.stats()["dead_letters"]
    assert letter["value"] == 1 and letter["attempts"] == 2 and "FireTimeoutError" in letter["error"]
    assert [f.outputs for f in r.fires if f.ok] == [{"n": 2}]


@pytest.mark.parametrize(
    "kwargs",
    [{"fire_timeout": "soon"}, {"fire_timeout": 0}, {"fire_timeout": -1.0}],
)
def test_a_bad_fire_timeout_is_a_definition_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(hr.GraphDefinitionError, match="fire_timeout"):
        price_graph(**kwargs)


def test_a_bad_node_timeout_is_a_definition_error() -> None:
    g = price_graph()
    with pytest.raises(hr.GraphDefinitionError, match="node 'n': timeout"):
        g.node(name="n", timeout="0ms")(lambda price: price)
