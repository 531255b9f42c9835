"""Per-node timing (profile=True) and recorded inputs (record_inputs=True)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.errors import NodeError


@hr.passthrough_accumulator
def a(event):
    return event


@hr.passthrough_accumulator
def b(event):
    return event


@hr.passthrough_accumulator
def unread(event):
    return event


def routed() -> hr.ComputationGraph:
    g = hr.ComputationGraph("g", accumulators=[a, b, unread], criteria=hr.when_all(a, b))

    @g.node(routes=["big", "small"])
    def size(a, b):
        return hr.Route("big" if a["v"] > 10 else "small", a["v"])

    @g.node
    def big(size):
        if size > 100:
            raise ValueError("too big")
        return size

    @g.node
    def small(size):
        return size

    return g


def test_profile_times_each_node_that_ran(harness) -> None:
    h = harness(routed(), profile=True, max_attempts=1)
    h.push("b", {"v": 0})
    h.push("a", {"v": 50})
    h.push("a", {"v": 5})
    try:
        h.push("a", {"v": 500})
    except NodeError:
        pass
    h.settle()
    assert [sorted(f.node_ns) for f in h.fires] == [["big", "size"], ["size", "small"], ["big", "size"]]
    assert all(type(ns) is int and ns > 0 for f in h.fires for ns in f.node_ns.values())
    assert not h.fires[2].ok and h.fires[2].node == "big", "the failing node is timed too"
    assert all(f.inputs is None for f in h.fires)


def test_without_profile_or_record_inputs_there_is_nothing(harness) -> None:
    h = harness(routed())
    h.push("b", {"v": 0})
    h.push("a", {"v": 1})
    h.settle()
    assert [(f.node_ns, f.inputs) for f in h.fires] == [(None, None)]


@settings(max_examples=40)
@given(pushes=st.lists(st.tuples(st.sampled_from(["a", "b", "unread"]), st.integers(0, 20)), max_size=20))
def test_inputs_are_the_values_each_fire_received(mode: str, pushes: list[tuple[str, int]]) -> None:
    """Sequential: a fire sees the boundary that triggered it and the cache as
    of its acceptance for the others, even when fires lag behind the pushes."""
    fires: list[hr.FireResult] = []
    g = hr.ComputationGraph("g", accumulators=[a, b, unread], criteria=hr.when_all(a, b))
    g.node(name="n")(lambda a, b: (a["v"], b["v"]))
    events = [(name, {"v": v}) for name, v in pushes]
    cache: dict[str, Any] = {"a": None, "b": None, "unread": None}
    expected = []
    for name, event in events:
        cache[name] = event
        if name != "unread" and cache["a"] is not None and cache["b"] is not None:
            expected.append({"a": cache["a"], "b": cache["b"]})
    with hr.Runtime(g, mode=mode, on_fire=fires.append, record_inputs=True) as rt:  # type: ignore[arg-type]
        if events:
            rt.push_pairs(events)
        rt.drain(timeout=30)
    assert [f.inputs for f in fires] == expected
    # The very objects pushed (a passthrough returns its event), not copies.
    assert all(f.inputs["a"] is e["a"] and f.inputs["b"] is e["b"] for f, e in zip(fires, expected, strict=True))
    assert all(f.node_ns is None for f in fires)


def test_inputs_under_latest_are_the_cache_and_none_before_a_boundary(harness) -> None:
    g = hr.ComputationGraph("g", accumulators=[a, b], input_strategy="latest")
    g.node(name="n")(lambda a, b: b)
    h = harness(g, record_inputs=True, profile=True)
    h.push("a", 1)
    h.settle()
    h.push("b", 2)
    h.settle()
    assert [f.inputs for f in h.fires] == [{"a": 1, "b": None}, {"a": 1, "b": 2}]
    assert [list(f.node_ns) for f in h.fires] == [["n"], ["n"]]


def test_push_many_keeps_the_records_until_read() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])
    g.node(name="n")(lambda a: a)
    with hr.Runtime(g, record_inputs=True, profile=True) as rt:
        fires = rt.push_many("a", [1, 2, 3])
        assert fires is not None
        assert [f.inputs for f in fires] == [{"a": 1}, {"a": 2}, {"a": 3}]
        assert [list(f.node_ns) for f in fires[1:]] == [["n"], ["n"]]
