"""Graph validation: every problem is reported at definition time, by name."""

from __future__ import annotations

import pytest

import headrace as hr


@hr.passthrough_accumulator
def a(event):
    return event


@hr.passthrough_accumulator
def b(event):
    return event


def problems(graph: hr.ComputationGraph) -> list[str]:
    with pytest.raises(hr.GraphDefinitionError) as info:
        graph.validate()
    return info.value.problems


def test_unknown_parameter_names_node_and_parameter() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node
    def n(a, missing):
        return a

    assert problems(g) == ["node 'n' has parameter 'missing', which names no accumulator or node"]


def test_cycle_is_named() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node
    def x(a, z):
        return a

    @g.node
    def y(x):
        return x

    @g.node
    def z(y):
        return y

    (problem,) = problems(g)
    assert problem.startswith("cycle: ")
    assert all(name in problem for name in ("x", "y", "z"))


def test_runtime_refuses_an_invalid_graph_before_accepting_events() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node
    def n(nope):
        return nope

    with pytest.raises(hr.GraphDefinitionError, match="'nope'"):
        hr.Runtime(g)


def test_duplicate_names_are_refused_as_they_are_defined() -> None:
    with pytest.raises(hr.GraphDefinitionError, match="'a' is used more than once"):
        hr.ComputationGraph("g", accumulators=[a, a])
    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node
    def n(a):
        return a

    with pytest.raises(hr.GraphDefinitionError, match="already exists"):
        g.node(name="n")(lambda a: a)
    with pytest.raises(hr.GraphDefinitionError, match="same name as an accumulator"):
        g.node(name="a")(lambda a: a)


def test_route_naming_a_node_that_does_not_consume_the_router() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node(routes=["left", "stranger"])
    def split(a):
        return hr.Route("left", a)

    @g.node
    def left(split):
        return split

    @g.node
    def stranger(a):
        return a

    assert problems(g) == [
        "route 'stranger' of node 'split' names 'stranger', which does not take 'split' as a parameter"
    ]


def test_unreachable_nodes_are_named() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node
    def fed(a):
        return a

    @g.node
    def island():
        return 1

    @g.node
    def downstream(island):
        return island

    assert problems(g) == [
        "node 'island' is unreachable from any accumulator",
        "node 'downstream' is unreachable from any accumulator",
    ]


def test_criteria_naming_unknown_accumulators() -> None:
    with pytest.raises(hr.GraphDefinitionError, match="criteria name 'b'"):
        hr.ComputationGraph("g", accumulators=[a], criteria=hr.when_all(a, b))


def test_every_problem_is_reported_at_once() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])

    @g.node
    def one(ghost):
        return ghost

    @g.node
    def two(phantom):
        return phantom

    found = problems(g)
    assert any("'ghost'" in p for p in found) and any("'phantom'" in p for p in found)


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda f: hr.passthrough_accumulator(f), "one argument"),
        (lambda f: hr.polling_accumulator(interval="1s")(f), "no arguments"),
        (lambda f: hr.state_accumulator(capacity=0)(f), "capacity must be a positive integer"),
        (lambda f: hr.batch_accumulator(flush_interval="soon")(f), "cannot read duration 'soon'"),
        (lambda f: hr.stream_accumulator(topic="t", state=0)(f), "two arguments"),
    ],
)
def test_accumulator_declarations_are_checked(decorate, message) -> None:
    def two_args(x, y):
        return x

    def one_arg(x):
        return x

    fn = one_arg if "two arguments" in message or "capacity" in message or "duration" in message else two_args
    with pytest.raises(hr.GraphDefinitionError, match=message):
        decorate(fn)


def test_node_signature_must_be_plain_positional() -> None:
    g = hr.ComputationGraph("g", accumulators=[a])
    with pytest.raises(hr.GraphDefinitionError, match=r"\*args"):

        @g.node
        def n(*a):
            return a


def test_validate_returns_execution_order() -> None:
    g = hr.ComputationGraph("g", accumulators=[a, b])

    @g.node
    def last(middle, b):
        return middle

    @g.node
    def middle(a):
        return a

    assert g.validate() == ["middle", "last"]


def test_defaulted_parameters_are_inputs_only_when_they_name_one() -> None:
    g = hr.ComputationGraph("g", accumulators=[a, b], criteria=hr.when_any(a))

    @g.node
    def n(a, threshold=5, *, scale=2):
        return a * threshold * scale

    @g.node
    def m(a, b=None):
        return (a, b)

    with hr.Runtime(g) as rt:
        rt.push("b", "B")
        result = rt.push("a", 1)
        assert result is not None and result.outputs == {"n": 10, "m": (1, "B")}


def test_an_input_after_an_unwired_default_is_refused() -> None:
    g = hr.ComputationGraph("g", accumulators=[a, b])

    @g.node
    def n(a, threshold=5, b=None):
        return a

    with pytest.raises(hr.GraphDefinitionError, match="'b' names an input but follows 'threshold'"):
        g.validate()
