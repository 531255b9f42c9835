"""Routing, fan-out and fan-in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr


@hr.passthrough_accumulator
def x(event):
    return event


def deep_graph(depth: int) -> hr.ComputationGraph:
    """split routes to a chain 'hi_0 -> ... -> hi_{depth-1}' or a chain of 'lo_*'."""
    g = hr.ComputationGraph("g", accumulators=[x])
    calls: list[str] = []

    @g.node(routes={"hi": ["hi_0"], "lo": ["lo_0"]})
    def split(x):
        return hr.Route("hi" if x > 0 else "lo", x)

    for side in ("hi", "lo"):
        for i in range(depth):
            upstream = "split" if i == 0 else f"{side}_{i - 1}"
            name = f"{side}_{i}"
            ns: dict = {}
            exec(f"def {name}({upstream}):\n    calls.append('{name}')\n    return {upstream}", {"calls": calls}, ns)
            g.node(ns[name])
    g.calls = calls  # type: ignore[attr-defined]
    return g


@given(depth=st.integers(1, 12), values=st.lists(st.integers(-5, 5), min_size=1, max_size=10))
def test_unchosen_branch_is_skipped_however_deep(depth, values) -> None:
    g = deep_graph(depth)
    with hr.Runtime(g) as rt:
        for v in values:
            g.calls.clear()  # type: ignore[attr-defined]
            result = rt.push("x", v)
            side = "hi" if v > 0 else "lo"
            assert g.calls == [f"{side}_{i}" for i in range(depth)]  # type: ignore[attr-defined]
            assert result is not None and result.outputs == {f"{side}_{depth - 1}": v}


def test_route_value_reaches_consumers_and_unlisted_consumers_always_run(harness) -> None:
    g = hr.ComputationGraph("g", accumulators=[x], input_strategy="sequential")

    @g.node(routes=["alert", "ok"])
    def decide(x):
        return hr.Route("alert" if x > 100 else "ok", {"px": x})

    @g.node
    def alert(decide):
        return f"ALERT {decide['px']}"

    @g.node
    def ok(decide):
        return "ok"

    @g.node
    def audit(decide):  # named by no route: runs whatever decide chose
        return decide["px"]

    h = harness(g)
    h.push("x", 500)
    h.push("x", 5)
    h.settle()
    assert [f.outputs for f in h.fires] == [{"alert": "ALERT 500", "audit": 500}, {"ok": "ok", "audit": 5}]


def test_fan_out_shares_one_value_and_fan_in_follows_parameter_order(harness) -> None:
    @hr.passthrough_accumulator
    def y(event):
        return event

    g = hr.ComputationGraph("g", accumulators=[x, y], criteria=hr.when_any(x))
    made = []

    @g.node
    def source(x):
        value = {"x": x}
        made.append(value)
        return value

    @g.node
    def left(source):
        return source

    @g.node
    def right(source):
        return source

    @g.node
    def join(right, y, left, x):
        return (right, y, left, x)

    h = harness(g)
    h.push("y", "why")
    h.push("x", 1)
    (out,) = h.outputs("join")
    assert len(made) == 1 and out[0] is made[0] and out[2] is made[0]
    assert out[1] == "why" and out[3] == 1


def test_router_must_return_a_route_with_a_known_label(mode) -> None:
    # latest: the failed first input does not stay queued ahead of the second.
    g = hr.ComputationGraph("g", accumulators=[x], input_strategy="latest")

    @g.node(routes=["a_branch"])
    def decide(x):
        return hr.Route("nowhere", x) if x else x

    @g.node
    def a_branch(decide):
        return decide

    with hr.Runtime(g) as rt:
        with pytest.raises(hr.NodeError) as info:
            rt.push("x", 1)
        assert isinstance(info.value.__cause__, ValueError)
        assert "Route('nowhere')" in str(info.value.__cause__)
        with pytest.raises(hr.NodeError) as info:
            rt.push("x", 0)
        assert isinstance(info.value.__cause__, TypeError)
        assert "must return headrace.Route" in str(info.value.__cause__)


def test_route_is_a_value_object() -> None:
    r = hr.Route("a", [1])
    assert r.label == "a" and r.value == [1]
    assert r == hr.Route("a", [1]) and r != hr.Route("b", [1])
    assert repr(r) == "Route('a', [1])"
