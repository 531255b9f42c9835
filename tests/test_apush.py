"""Inline `apush` on a graph with async callables: the fire runs on the
caller's thread and only its async waves are awaited on the caller's loop;
calls from several tasks take turns in call order; cancelling a caller never
loses or doubles an accepted event. Thread mode's `apush` is `push`."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr


def routed_graph(use_async: bool) -> hr.ComputationGraph:
    """Odd prices take a branch with an async node (or its sync twin) that
    yields to the loop a few times; even ones take a sync branch only."""

    @hr.passthrough_accumulator
    def price(e: int) -> int:
        return e

    g = hr.ComputationGraph("apush", accumulators=[price], input_strategy="sequential")

    @g.node(routes=["odd", "even"])
    def split(price: int) -> hr.Route:
        return hr.Route("odd" if price % 2 else "even", price)

    if use_async:

        @g.node(name="odd")
        async def odd_async(split: int) -> int:
            for _ in range(split % 5):
                await asyncio.sleep(0)
            return split * 10

    else:
        g.node(name="odd")(lambda split: split * 10)

    @g.node
    def even(split: int) -> int:
        return split + 1

    return g


def outputs(fire: hr.FireResult | None) -> dict[str, Any]:
    assert fire is not None and fire.ok
    return dict(fire.outputs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tasks=st.lists(
        st.lists(st.tuples(st.integers(0, 99), st.integers(0, 3)), min_size=1, max_size=6), min_size=1, max_size=4
    )
)
def test_apush_from_several_tasks_fires_as_the_sync_graph_does_in_call_order(
    tasks: list[list[tuple[int, int]]],
) -> None:
    """Each task pushes its events with random yields in between; the fires
    (and what each apush returned) are the sync twin's for the same events in
    the order the apush calls were made."""
    called: list[int] = []
    returned: dict[int, dict[str, Any]] = {}
    fires: list[hr.FireResult] = []

    async def pusher(rt: hr.Runtime, items: list[tuple[int, int]]) -> None:
        for price, yields in items:
            for _ in range(yields):
                await asyncio.sleep(0)
            # No await between recording the call and making it.
            called.append(price)
            at = len(called) - 1
            returned[at] = outputs(await rt.apush("price", price))

    async def go(rt: hr.Runtime) -> None:
        await asyncio.gather(*(pusher(rt, items) for items in tasks))

    with hr.Runtime(routed_graph(True), mode="inline", on_fire=fires.append) as rt:
        asyncio.run(go(rt))
    with hr.Runtime(routed_graph(False), mode="inline") as twin:
        expected = [outputs(twin.push("price", p)) for p in called]
    assert [outputs(f) for f in fires] == expected
    assert [returned[i] for i in range(len(called))] == expected


def test_a_fire_that_reaches_no_async_node_never_leaves_the_callers_thread_or_task() -> None:
    """A callback scheduled before the apush has not run when it returns: the
    apush never gave the loop a turn. Sync nodes run on the caller's thread
    and see its context variables, as under push."""
    request = contextvars.ContextVar("request", default="")
    seen: list[tuple[int, str]] = []
    g = routed_graph(True)

    @g.node
    def where(even: int) -> int:
        seen.append((threading.get_ident(), request.get()))
        return even

    async def go(rt: hr.Runtime) -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        request.set("r-1")
        ticks: list[int] = []
        loop.call_soon(ticks.append, 1)
        assert outputs(await rt.apush("price", 2)) == {"where": 3}
        untouched = list(ticks)
        loop.call_soon(ticks.append, 2)
        assert outputs(await rt.apush("price", 3)) == {"odd": 30}
        return untouched, ticks

    with hr.Runtime(g, mode="inline") as rt:
        untouched, ticks = asyncio.run(go(rt))
    assert untouched == [], "the apush whose fire ran no async node yielded to the loop"
    assert 2 in ticks, "an apush whose fire awaits an async node lets the loop run meanwhile"
    assert seen == [(threading.get_ident(), "r-1")]


class Gate:
    """An async node that waits until released, recording what it saw."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.ran: list[int] = []
        self.cancelled = False

    async def node(self, price: int) -> int:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.ran.append(price)
        return price


def gated_graph(gate: Gate) -> hr.ComputationGraph:
    @hr.passthrough_accumulator
    def price(e: int) -> int:
        return e

    g = hr.ComputationGraph("gated", accumulators=[price], input_strategy="sequential")

    async def held(price: int) -> int:
        return await gate.node(price)

    g.node(name="held")(held)
    return g


Scenario = Callable[[hr.Runtime, Gate, "asyncio.Task[Any]"], Awaitable[None]]


def gated_run(scenario: Scenario) -> list[Any]:
    """Runs `scenario` on an inline runtime whose first apush (price 1) is
    held in its async node; returns the outputs of every fire reported."""
    fires: list[hr.FireResult] = []

    async def go() -> None:
        gate = Gate()
        with hr.Runtime(gated_graph(gate), mode="inline", on_fire=fires.append) as rt:
            first = asyncio.create_task(rt.apush("price", 1))
            await gate.entered.wait()
            await scenario(rt, gate, first)

    asyncio.run(go())
    return [outputs(f) for f in fires]


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_cancelling_an_apush_after_its_event_was_taken_fires_it_once() -> None:
    async def scenario(rt: hr.Runtime, gate: Gate, first: asyncio.Task[Any]) -> None:
        await cancel(first)
        gate.release.set()
        # Takes its turn after the cancelled caller's fire has ended.
        assert outputs(await rt.apush("price", 2)) == {"held": 2}
        assert gate.ran == [1, 2] and not gate.cancelled
        assert rt.stats()["accumulators"]["price"]["events"] == 2

    assert gated_run(scenario) == [{"held": 1}, {"held": 2}]


def test_cancelling_an_apush_still_waiting_for_its_turn_takes_nothing() -> None:
    async def scenario(rt: hr.Runtime, gate: Gate, first: asyncio.Task[Any]) -> None:
        waiting = asyncio.create_task(rt.apush("price", 2))
        await asyncio.sleep(0)
        await cancel(waiting)
        gate.release.set()
        assert outputs(await first) == {"held": 1}
        assert outputs(await rt.apush("price", 3)) == {"held": 3}
        assert rt.stats()["accumulators"]["price"]["events"] == 2

    assert gated_run(scenario) == [{"held": 1}, {"held": 3}]


def test_an_async_node_awaiting_apush_on_its_own_runtime_raises_instead_of_waiting_forever() -> None:
    @hr.passthrough_accumulator
    def price(e: int) -> int:
        return e

    g = hr.ComputationGraph("self_push", accumulators=[price])
    box: list[hr.Runtime] = []

    @g.node
    async def again(price: int) -> int:
        await box[0].apush("price", price + 1)
        return price

    async def go(rt: hr.Runtime) -> None:
        with pytest.raises(hr.NodeError) as info:
            await rt.apush("price", 1)
        assert isinstance(info.value.__cause__, hr.HeadraceError)
        assert "wait for itself" in str(info.value.__cause__)

    with hr.Runtime(g, mode="inline") as rt:
        box.append(rt)
        asyncio.run(asyncio.wait_for(go(rt), 30))


def test_offload_sync_runs_the_fire_off_the_callers_thread_in_call_order() -> None:
    g = routed_graph(True)
    threads: list[int] = []

    @g.node
    def where(even: int) -> int:
        threads.append(threading.get_ident())
        return even

    async def go(rt: hr.Runtime) -> list[dict[str, Any]]:
        results = await asyncio.gather(*(rt.apush("price", p) for p in (2, 3, 4, 5)))
        return [outputs(r) for r in results]

    with hr.Runtime(g, mode="inline", offload_sync=True) as rt:
        got = asyncio.run(go(rt))
    assert got == [{"where": 3}, {"odd": 30}, {"where": 5}, {"odd": 50}]
    assert threading.get_ident() not in threads


def test_thread_mode_apush_queues_and_its_async_nodes_run_on_the_runtimes_loop() -> None:
    fires: list[hr.FireResult] = []
    loops: list[asyncio.AbstractEventLoop] = []
    g = routed_graph(True)

    @g.node
    async def tail(odd: int) -> int:
        loops.append(asyncio.get_running_loop())
        return odd

    async def go(rt: hr.Runtime) -> list[Any]:
        got = [await rt.apush("price", p) for p in (1, 2, 3)]
        await asyncio.to_thread(rt.drain, 30)
        assert all(loop is not asyncio.get_running_loop() for loop in loops)
        return got

    with hr.Runtime(g, mode="thread", on_fire=fires.append) as rt:
        assert asyncio.run(go(rt)) == [None, None, None]
    assert [outputs(f) for f in fires] == [{"tail": 10}, {"even": 3}, {"tail": 30}]
    assert len(loops) == 2
