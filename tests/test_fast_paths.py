"""The cheap ways in and out: a passthrough without a function, reading one
terminal's values as a column, and a sink that receives only a value."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr
from headrace.packages import load_graph

from tests.test_packages import write_package


def spread_graph(book: hr.Accumulator) -> hr.ComputationGraph:
    g = hr.ComputationGraph("spread", accumulators=[book])

    @g.node
    def mid(book: Any) -> Any:
        return (book["bid"] + book["ask"]) / 2

    @g.node
    def fmt(mid: float) -> str:
        return f"{mid:.2f}"

    return g


def test_passthrough_without_a_function_forwards_each_event(harness) -> None:
    h = harness(spread_graph(hr.passthrough("book")))
    for bid in (1, 2, 3):
        h.push("book", {"bid": bid, "ask": bid + 1})
    assert h.outputs("fmt") == ["1.50", "2.50", "3.50"]
    assert h.rt.stats()["accumulators"]["book"]["boundaries"] == 3


@given(st.lists(st.one_of(st.none(), st.integers()), max_size=30))
def test_it_behaves_as_the_identity_function_would(mode, events) -> None:
    """Same fires, in the same order, as a passthrough whose function returns
    its event (None included: it emits nothing)."""

    def run(book: hr.Accumulator) -> list[Any]:
        g = hr.ComputationGraph("g", accumulators=[book])
        g.node(name="seen")(lambda book: book)
        seen: list[Any] = []
        with hr.Runtime(g, mode=mode, on_fire=hr.on_output("seen", seen.append)) as rt:
            for e in events:
                rt.push("book", e)
            rt.drain(timeout=30)
        return seen

    identity = hr.passthrough_accumulator(name="book")(lambda event: event)
    assert run(hr.passthrough("book")) == run(identity) == [e for e in events if e is not None]


@pytest.mark.parametrize("chain_runs", [True, False])
def test_no_python_call_is_made_for_the_accumulator(chain_runs: bool) -> None:
    """A profile of an inline run sees the nodes called and no accumulator
    function: the engine is handed none (nor is the chain runner's loop, whose
    own frame is left out here). (Thread mode runs the same processor code on
    a thread a profile cannot see; the core's tests count the host calls
    there.)"""
    book = hr.passthrough("book")
    assert book.engine_spec()["function"] is None
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename != "<headrace chain runner>":
            calls.append(frame.f_code.co_name)

    with hr.Runtime(spread_graph(book), mode="inline", chain_runs=chain_runs) as rt:
        sys.setprofile(profile)
        try:
            rt.push("book", {"bid": 1, "ask": 2})
        finally:
            sys.setprofile(None)
    assert calls == ["mid", "fmt"]


def test_decoded_bytes_are_forwarded(mode) -> None:
    seen: list[Any] = []
    g = spread_graph(hr.passthrough("book", codec="json"))
    with hr.Runtime(g, mode=mode, on_fire=hr.on_output("fmt", seen.append)) as rt:
        rt.push_bytes("book", b'{"bid": 10, "ask": 12}')
        rt.drain(timeout=30)
    assert seen == ["11.00"]


def test_only_a_passthrough_may_be_declared_without_a_function(tmp_path: Path) -> None:
    root = write_package(
        tmp_path / "p",
        source="""
import headrace as hr
graph = hr.ComputationGraph("kafka_price_signal", accumulators=[hr.passthrough("orderbook")])

@graph.node
def emit(orderbook):
    return orderbook
""",
    )
    with pytest.raises(hr.HeadraceError, match="declared without a function .* cannot be a stream accumulator"):
        load_graph(root)
    with pytest.raises(hr.GraphDefinitionError, match="must be a Python identifier"):
        hr.passthrough("not a name")


def test_a_manifest_declares_a_passthrough_that_has_no_code(tmp_path: Path) -> None:
    manifest = """
[package]
name = "spread"
version = "0.1.0"

[metadata]
graph_name = "spread"
entry = "price_signal:graph"

[[metadata.accumulators]]
name = "book"
accumulator_type = "passthrough"
"""
    source = """
import headrace as hr
graph = hr.ComputationGraph("spread", accumulators=[hr.passthrough("other")])

@graph.node
def mid(book):
    return (book["bid"] + book["ask"]) / 2
"""
    graph = load_graph(write_package(tmp_path / "p", manifest, source))
    book = graph.accumulator("book")
    assert book.kind == "passthrough" and not book.has_function
    with hr.Runtime(graph) as rt:
        result = rt.push("book", {"bid": 1, "ask": 3})
        assert result is not None and result.outputs == {"mid": 2.0}


def test_fire_list_outputs_is_one_terminals_column() -> None:
    g = hr.ComputationGraph("g", accumulators=[hr.passthrough("x")])

    @g.node
    def double(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x * 2

    @g.node
    def neg(x: int) -> int:
        return -x

    with hr.Runtime(g, max_attempts=1) as rt:
        fires = rt.push_many("x", [1, 2, 4])
        assert fires is not None
        assert fires.outputs("double") == [f.outputs["double"] for f in fires] == [2, 4, 8]
        assert fires.outputs("neg") == [-1, -2, -4]
        _ = fires[0]  # a built FireResult reads the same
        assert fires.outputs("double") == [2, 4, 8]
        with pytest.raises(hr.NodeError):
            rt.push_many("x", [3])
    with pytest.raises(hr.HeadraceError, match="'nope' is not a node of this graph; the terminal nodes are: double, neg"):
        fires.outputs("nope")


def test_outputs_is_none_where_the_terminal_did_not_run() -> None:
    g = hr.ComputationGraph("g", accumulators=[hr.passthrough("x")])

    @g.node(routes=["odd", "even"])
    def split(x: int) -> hr.Route:
        return hr.Route("odd" if x % 2 else "even", x)

    @g.node
    def odd(split: int) -> int:
        return split

    @g.node
    def even(split: int) -> int:
        return split

    with hr.Runtime(g) as rt:
        fires = rt.push_many("x", [1, 2, 3])
        assert fires is not None
        assert fires.outputs("odd") == [1, None, 3]
        assert fires.outputs("even") == [None, 2, None]
        with pytest.raises(hr.HeadraceError, match="'split' is not a terminal node"):
            fires.outputs("split")


def test_on_output_receives_only_the_value(mode) -> None:
    seen: list[Any] = []
    g = spread_graph(hr.passthrough_accumulator(name="book")(lambda e: e))
    with hr.Runtime(g, mode=mode, on_fire=hr.on_output("fmt", seen.append)) as rt:
        rt.push_many("book", [{"bid": b, "ask": b + 2} for b in range(5)])
        rt.drain(timeout=30)
    assert seen == ["1.00", "2.00", "3.00", "4.00", "5.00"]


def test_on_output_skips_failed_fires_and_they_are_raised_inline() -> None:
    seen: list[Any] = []
    g = hr.ComputationGraph("g", accumulators=[hr.passthrough("x")])

    @g.node
    def inv(x: int) -> float:
        return 1 / x

    with hr.Runtime(g, max_attempts=1, on_fire=hr.on_output("inv", seen.append)) as rt:
        rt.push("x", 2)
        with pytest.raises(hr.NodeError):
            rt.push("x", 0)
        rt.push("x", 4)
    assert seen == [0.5, 0.25]


def test_on_output_names_a_terminal_node(mode) -> None:
    g = spread_graph(hr.passthrough("book"))
    with pytest.raises(hr.GraphDefinitionError, match=r"on_output\('mid'\): 'mid' is not a terminal node .* terminal nodes are: fmt"):
        hr.Runtime(g, mode=mode, on_fire=hr.on_output("mid", print))
    with pytest.raises(hr.GraphDefinitionError, match=r"on_output\('nope'\): 'nope' is not a node of this graph"):
        hr.Runtime(g, mode=mode, on_fire=hr.on_output("nope", print))
    with pytest.raises(TypeError, match="fn must be callable"):
        hr.on_output("fmt", 3)  # type: ignore[arg-type]
