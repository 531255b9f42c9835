"""Async nodes and accumulators: awaited (never passed on as coroutines), the
ready ones together; inline through apush/afire on the caller's loop, thread
mode on the runtime's loop or one passed in."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from tests.conftest import AsyncHarness


def price_graph(**kw: Any) -> hr.ComputationGraph:
    @hr.passthrough_accumulator
    def price(e: Any) -> Any:
        return e

    return hr.ComputationGraph("aio", accumulators=[price], **kw)


class Overlap:
    """Counts how many calls are in flight at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.now -= 1


def test_async_nodes_are_awaited_and_their_results_passed_on(async_harness: Any) -> None:
    g = price_graph()

    @g.node
    async def double(price: int) -> int:
        await asyncio.sleep(0)
        return price * 2

    @g.node
    def plus_one(double: int) -> int:
        return double + 1

    r = async_harness(g)
    r.push("price", 1, 2, 3)
    assert r.outputs("plus_one") == [3, 5, 7]


def test_a_fan_out_of_two_async_calls_takes_the_slower_not_the_sum(async_harness: Any) -> None:
    g = price_graph()
    overlap = Overlap()

    @g.node
    async def venue_a(price: int) -> int:
        await overlap.hold(0.2)
        return price

    @g.node
    async def venue_b(price: int) -> int:
        await overlap.hold(0.2)
        return -price

    @g.node
    def best(venue_a: int, venue_b: int) -> int:
        return venue_a + venue_b

    r = async_harness(g)
    started = time.perf_counter()
    r.push("price", 5)
    took = time.perf_counter() - started
    assert r.outputs("best") == [0]
    assert overlap.most == 2, "both were in flight at once"
    assert took < 0.4, f"two 0.2 s calls took {took:.3f} s: not less than their sum"


def test_async_accumulators_are_awaited(async_harness: Any) -> None:
    @hr.passthrough_accumulator
    async def price(e: int) -> int:
        await asyncio.sleep(0)
        return e * 10

    @hr.batch_accumulator(max_buffer_size=2)
    async def fills(events: list[int]) -> int:
        await asyncio.sleep(0)
        return sum(events)

    g = hr.ComputationGraph("aio_acc", accumulators=[price, fills], criteria=hr.when_any(price))

    @g.node
    def seen(price: int, fills: int | None) -> tuple[int, int | None]:
        return price, fills

    r = async_harness(g)
    r.push("fills", 1, 2)
    r.push("price", 1)
    assert r.outputs("seen") == [(10, 3)]


def test_an_async_node_that_raises_fails_the_fire_and_is_retried(async_harness: Any) -> None:
    g = price_graph(input_strategy="sequential")
    calls: list[int] = []

    @g.node
    async def check(price: int) -> int:
        calls.append(price)
        if len(calls) == 1:
            raise ZeroDivisionError("flaky")
        return price

    r = async_harness(g)
    r.push("price", 1, 2)
    assert r.outputs("check") == [1, 2]
    failed = [f for f in r.fires if not f.ok]
    assert len(failed) == 1 and failed[0].node == "check"
    assert isinstance(failed[0].error, ZeroDivisionError)
    if r.rt.mode == "inline":
        assert isinstance(r.errors[0], hr.NodeError)
        assert isinstance(r.errors[0].__cause__, ZeroDivisionError)


def test_an_async_node_on_a_branch_not_taken_is_never_called(async_harness: Any) -> None:
    g = price_graph()
    called: list[int] = []

    @g.node(routes=["slow", "fast"])
    def decide(price: int) -> hr.Route:
        return hr.Route("slow" if price > 100 else "fast", price)

    @g.node
    async def slow(decide: int) -> int:
        called.append(decide)
        return decide

    @g.node
    def fast(decide: int) -> int:
        return decide

    r = async_harness(g)
    r.push("price", 1, 2, 500)
    assert r.outputs("fast") == [1, 2]
    assert called == [500]


@settings(max_examples=25)
@given(flags=st.lists(st.booleans(), min_size=5, max_size=5))
def test_any_mix_of_async_nodes_gives_what_the_sync_graph_gives(mode: str, flags: list[bool]) -> None:
    def build(make_async: list[bool]) -> hr.ComputationGraph:
        g = price_graph()
        bodies: dict[str, Any] = {
            "p": lambda price: price + 1,
            "q": lambda price: price * 3,
            "r": lambda p, q: (p, q),
            "s": lambda r, price: [r, price],
            "t": lambda q, s: {"q": q, "s": s},
        }
        for (name, body), is_async in zip(bodies.items(), make_async, strict=True):
            if is_async:

                async def wrapped(*args: Any, _body: Any = body) -> Any:
                    await asyncio.sleep(0)
                    return _body(*args)

                fn: Any = wrapped
            else:
                fn = body
            # Wire by the body's own parameter names.
            fn.__signature__ = inspect.signature(body)
            g.node(name=name)(fn)
        return g

    mixed, plain = AsyncHarness(build(flags), mode), AsyncHarness(build([False] * 5), mode)
    try:
        mixed.push("price", 1, 2)
        plain.push("price", 1, 2)
        assert [f.outputs for f in mixed.fires] == [f.outputs for f in plain.fires]
        assert len(mixed.fires) == 2 and all(f.ok for f in mixed.fires)
    finally:
        mixed.rt.close()
        plain.rt.close()


def test_inline_sync_calls_on_an_async_graph_raise_naming_apush() -> None:
    g = price_graph()

    @g.node
    async def n(price: int) -> int:
        return price

    with hr.Runtime(g, mode="inline") as rt:
        for call in (lambda: rt.push("price", 1), lambda: rt.push_many("price", [1]), rt.fire):
            with pytest.raises(hr.HeadraceError, match="apush"):
                call()
        assert rt.stats()["accumulators"]["price"]["events"] == 0, "the refused calls took nothing in"

        async def go() -> Any:
            return await rt.apush("price", 2), await rt.afire(), await rt.apush_many("price", [3, 4])

        one, manual, many = asyncio.run(go())
        assert one.outputs == {"n": 2} and manual.outputs == {"n": 2}
        assert [f.outputs["n"] for f in many] == [3, 4]
        assert rt.stats()["fire_count"] == 4


def test_apush_on_a_graph_without_async_callables_is_push() -> None:
    g = price_graph()
    g.node(name="n")(lambda price: price)
    with hr.Runtime(g, mode="inline") as rt:
        result = asyncio.run(rt.apush("price", 7))
        assert result is not None and result.outputs == {"n": 7}


def test_apush_with_offload_sync_leaves_the_callers_loop_free_while_sync_nodes_run() -> None:
    """A sync node waits for something only a task on the caller's loop does:
    were the loop blocked during the fire, it would never happen. (Without
    offload_sync, sync nodes run on the caller's thread, as under push.)"""
    g = price_graph()
    released = threading.Event()

    @g.node
    def waits(price: int) -> int:
        assert released.wait(10), "the caller's loop was blocked"
        return price

    @g.node
    async def after(waits: int) -> int:
        await asyncio.sleep(0)
        return waits

    async def go(rt: hr.Runtime) -> Any:
        async def release() -> None:
            await asyncio.sleep(0.01)
            released.set()

        task = asyncio.create_task(release())
        result = await rt.apush("price", 3)
        await task
        return result

    with hr.Runtime(g, mode="inline", offload_sync=True) as rt:
        assert asyncio.run(go(rt)).outputs == {"after": 3}


def test_thread_mode_runs_async_nodes_on_a_loop_passed_in() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen: list[asyncio.AbstractEventLoop] = []
    g = price_graph()

    @g.node
    async def n(price: int) -> int:
        seen.append(asyncio.get_running_loop())
        return price

    try:
        fires: list[hr.FireResult] = []
        with hr.Runtime(g, mode="thread", loop=loop, on_fire=fires.append) as rt:
            rt.push("price", 1)
            rt.drain(timeout=30)
        assert seen == [loop] and fires[0].outputs == {"n": 1}
        assert loop.is_running(), "a loop passed in is the caller's: never stopped"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def aio_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("headrace-aio-")]


def test_thread_mode_starts_its_own_loop_only_for_async_graphs() -> None:
    before = aio_threads()
    plain = price_graph()
    plain.node(name="n")(lambda price: price)
    with hr.Runtime(plain, mode="thread"):
        assert aio_threads() == before

    g = price_graph()

    @g.node
    async def n(price: int) -> int:
        return price

    with hr.Runtime(g, mode="thread"):
        assert len(aio_threads()) == len(before) + 1
    assert aio_threads() == before, "stopped at close"
