"""The fires an inline push_many keeps read back exactly as the fires
themselves: a plain fire is kept compactly, any other as reported."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr


def graph(raising: frozenset[int], two_terminals: bool) -> hr.ComputationGraph:
    book = hr.passthrough("book")
    g = hr.ComputationGraph("kept", accumulators=[book], input_strategy="sequential")

    @g.node
    def double(book: int) -> int:
        if book in raising:
            raise ValueError(f"no {book}")
        return book * 2

    @g.node
    def out(double: int) -> int:
        return double + 1

    if two_terminals:
        g.node(name="side")(lambda double: -double)
    return g


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(st.integers(0, 20), max_size=25),
    raising=st.frozensets(st.integers(0, 20), max_size=4),
    two_terminals=st.booleans(),
)
def test_push_many_keeps_what_push_returns(events: list[int], raising: frozenset[int], two_terminals: bool) -> None:
    """Same ids, triggers, outputs and failures as one push per event (a
    failing push raises; its fire is read from on_fire)."""

    def one_by_one() -> list[tuple[Any, ...]]:
        seen: list[tuple[Any, ...]] = []
        failed: list[hr.FireResult] = []
        with hr.Runtime(graph(raising, two_terminals), mode="inline", on_fire=failed.append, max_attempts=1) as rt:
            for e in events:
                try:
                    rt.push("book", e)
                except hr.errors.NodeError:
                    pass
        for f in failed:
            seen.append((f.id, f.trigger, f.outputs, f.node, f.ok, f.attempt, f.dead_lettered))
        return seen

    def many() -> list[tuple[Any, ...]]:
        with hr.Runtime(graph(raising, two_terminals), mode="inline", max_attempts=1) as rt:
            fires: list[hr.FireResult] = []
            for e in events:  # one call per event: a failure raises only for its own call
                try:
                    got = rt.push_many("book", [e])
                except hr.errors.NodeError as err:
                    fires.append(err.fire)
                    continue
                assert got is not None
                fires.extend(got)
        return [(f.id, f.trigger, f.outputs, f.node, f.ok, f.attempt, f.dead_lettered) for f in fires]

    assert many() == one_by_one()


def test_plain_fires_keep_their_times_and_column() -> None:
    before = time.time()
    with hr.Runtime(graph(frozenset(), False), mode="inline") as rt:
        fires = rt.push_many("book", list(range(50)))
    after = time.time()
    assert fires is not None
    assert [f.id for f in fires] == list(range(1, 51))
    assert fires.outputs("out") == [2 * e + 1 for e in range(50)] == [f.outputs["out"] for f in fires]
    starts = [f.started_at for f in fires]
    assert starts == sorted(starts)
    assert before - 0.01 <= starts[0] and starts[-1] <= after + 0.01
    assert all(f.duration_ns > 0 and f.ok and f.trigger == "book" for f in fires)


def test_a_route_from_a_node_without_routes_fails_the_fire(mode: str) -> None:
    g = hr.ComputationGraph("r", accumulators=[hr.passthrough("book")])
    g.node(name="bad")(lambda book: hr.Route("x", book))
    failed: list[hr.FireResult] = []
    with hr.Runtime(g, mode=mode, on_fire=failed.append) as rt:
        try:
            rt.push("book", 1)
        except hr.errors.NodeError:
            pass
        rt.drain(timeout=30)
    assert failed and not failed[0].ok
    assert isinstance(failed[0].error, TypeError) and "declares no routes" in str(failed[0].error)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_a_plain_fire_read_twice_is_the_same(n: int) -> None:
    with hr.Runtime(graph(frozenset(), True), mode="inline") as rt:
        fires = rt.push_many("book", list(range(n)))
    assert fires is not None and len(fires) == n
    for f, g in zip(fires, fires, strict=True):
        assert (f.id, f.outputs, f.started_at, f.duration_ns) == (g.id, g.outputs, g.started_at, g.duration_ns)
