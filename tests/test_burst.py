"""Per-accumulator input strategies: `burst` lists, and `latest`, `sequential`
and `burst` inputs mixed in one graph, in both modes, across failing fires and
restarts from a store, checked against a reference model in plain Python."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.accumulators import InputStrategy
from headrace.packages.loader import apply_manifest
from headrace.packages.manifest import ManifestError, parse_manifest

MEMBERS = ("s", "l", "b")


@dataclass
class Failures:
    """Which node calls raise: the k-th call fails if schedule[k]."""

    schedule: list[bool] = field(default_factory=list)
    calls: int = 0
    on: bool = True

    def next(self) -> bool:
        k = self.calls
        self.calls += 1
        return self.on and k < len(self.schedule) and self.schedule[k]


def build(failures: Failures, kind: str, default: str = "latest") -> hr.ComputationGraph:
    @hr.passthrough_accumulator(input="sequential")
    def s(e):
        return e

    @hr.passthrough_accumulator(input="latest")
    def l(e):  # noqa: E741
        return e

    @hr.passthrough_accumulator(input="burst")
    def b(e):
        return e

    @hr.batch_accumulator(max_buffer_size=2, input="burst")
    def fills(events):
        return list(events)

    criteria = hr.when_all(*MEMBERS) if kind == "when_all" else hr.when_any(*MEMBERS)
    g = hr.ComputationGraph("mix", [s, l, b, fills], criteria, input_strategy=default)  # type: ignore[arg-type]

    @g.node
    def view(s, l, b, fills):  # noqa: E741
        if failures.next():
            raise RuntimeError("scheduled failure")
        return (s, l, None if b is None else list(b), None if fills is None else [list(x) for x in fills])

    return g


def _run(ops: list[tuple[str, int]], mode: str, kind: str, failures: Failures, store: str) -> list[hr.FireResult]:
    fires: list[hr.FireResult] = []
    options: dict[str, Any] = {
        "mode": mode,
        "on_fire": fires.append,
        "store": store,
        "max_attempts": 1_000_000,
        "retry_backoff": 0.001,
    }

    def fresh() -> hr.Runtime:
        return hr.Runtime(build(failures, kind), **options)

    rt = fresh()
    try:
        for name, value in ops:
            if name == "restart":
                rt.close()
                rt = fresh()
                continue
            with contextlib.suppress(hr.NodeError):
                rt.push(name, value)
        failures.on = False
        # Everything accepted is fired: failed inputs retried, then two manual
        # fires (the second after every queued boundary has taken effect).
        rt.drain(timeout=30)
        rt.fire()
        rt.drain(timeout=30)
        rt.fire()
        rt.drain(timeout=30)
    finally:
        rt.close()
    return [f for f in fires if f.ok]


def check(ops: list[tuple[str, int]], kind: str, fires: list[hr.FireResult]) -> None:
    """The reference model: what every successful fire must show."""
    pushed = [(n, v) for n, v in ops if n != "restart"]
    index = {v: k for k, (_, v) in enumerate(pushed)}
    by = {n: [v for m, v in pushed if m == n] for n in ("s", "l", "b", "fills")}

    # Sequential: once each, in order; under when_all only once every member has a value.
    expected_s, have = [], set()
    for n, v in pushed:
        have.add(n)
        if n == "s" and (kind == "when_any" or have >= set(MEMBERS)):
            expected_s.append(v)
    views = [f.outputs["view"] for f in fires]
    fired_s = [view[0] for f, view in zip(fires, views) if f.trigger == "s"]
    assert fired_s == expected_s

    delivered: list[int] = []
    newest_l_seen = -1
    for f, (s, l, b, fills) in zip(fires, views):
        delivered += b or []
        if f.trigger == "s":
            before = [v for n, v in pushed[: index[s]] if n == "l"]
            assert l == (before[-1] if before else None), "latest as of the sequential boundary"
            assert delivered == [v for n, v in pushed[: index[s]] if n == "b"], "burst: everything before it, nothing after"
        if l is not None:
            assert l >= newest_l_seen, "latest never goes back"
            newest_l_seen = l
    # Burst: every accepted boundary reaches exactly one successful fire, in order.
    assert delivered == by["b"]
    # A batch under burst: every event in exactly one flush, every flush in one fire.
    flushed = [e for *_, fills in views for batch in (fills or []) for e in batch]
    assert flushed == by["fills"]
    # The last fire saw everything: the newest latest value.
    assert views[-1][1] == (by["l"][-1] if by["l"] else None)


ops_strategy = st.lists(
    st.one_of(st.sampled_from(["s", "l", "b", "fills"]), st.just("restart")),
    max_size=30,
).map(lambda names: [(n, k) for k, n in enumerate(names)])


@settings(max_examples=40)
@given(
    ops=ops_strategy,
    kind=st.sampled_from(["when_any", "when_all"]),
    schedule=st.lists(st.booleans(), max_size=30),
)
def test_mixed_inputs_match_the_reference_model(mode, ops, kind, schedule) -> None:
    failures = Failures(schedule)
    with tempfile.TemporaryDirectory() as tmp:
        fires = _run(ops, mode, kind, failures, f"sqlite:///{tmp}/state.db")
    check(ops, kind, fires)


def test_a_burst_input_delivers_every_fill_accepted_while_paused_in_one_fire(harness) -> None:
    @hr.passthrough_accumulator(input="burst")
    def fills(e):
        return e

    g = hr.ComputationGraph("slow", [fills], input_strategy="sequential")

    @g.node
    def total(fills):
        return list(fills)

    h = harness(g)
    h.rt.pause()
    for v in range(5):
        h.push("fills", v)
    h.rt.resume()
    assert h.outputs("total") == [[0, 1, 2, 3, 4]], "one fire for five fills, none lost"


def tick_and_fills(name: str, tick_input: InputStrategy | None = None) -> hr.ComputationGraph:
    """`view(tick, fills)`, fired by `tick` (the graph's default input unless
    `tick_input`), with `fills` a burst input."""

    @hr.passthrough_accumulator(input=tick_input)
    def tick(e):
        return e

    @hr.passthrough_accumulator(input="burst")
    def fills(e):
        return e

    g = hr.ComputationGraph(name, [tick, fills], hr.when_any(tick))

    @g.node
    def view(tick, fills):
        return (tick, fills)

    return g


def test_a_burst_input_is_none_before_its_first_boundary_and_empty_after(harness) -> None:
    h = harness(tick_and_fills("edges", tick_input="latest"))
    h.push("tick", 1)
    h.settle()
    h.push("fills", 10)
    h.push("fills", 11)
    h.settle()
    h.push("tick", 2)
    assert h.outputs("view") == [(1, None), (2, [10, 11])]
    h.push("tick", 3)
    assert h.outputs("view")[-1] == (3, [])


def test_manual_fire_delivers_the_burst_list(harness) -> None:
    h = harness(tick_and_fills("manual"))
    h.push("fills", 1)
    h.push("fills", 2)
    h.rt.fire()
    h.rt.fire()
    assert h.outputs("view") == [(None, [1, 2]), (None, [])]


def test_the_burst_list_survives_a_restart(tmp_path, mode) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    g = tick_and_fills("restart")
    with hr.Runtime(g, mode=mode, store=url) as rt:  # type: ignore[arg-type]
        for v in (1, 2, 3):
            rt.push("fills", v)
        rt.drain(timeout=30)
        assert rt.stats()["pending"] == 3
    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode=mode, store=url, on_fire=fires.append) as rt:  # type: ignore[arg-type]
        rt.push("tick", 0)
        rt.drain(timeout=30)
    assert [f.outputs["view"] for f in fires] == [(0, [1, 2, 3])]


@pytest.mark.parametrize(
    "declare",
    [
        lambda: hr.passthrough_accumulator(input="fifo"),  # type: ignore[call-overload]
        lambda: hr.stream_accumulator(topic="t", input="fifo"),  # type: ignore[arg-type]
        lambda: hr.polling_accumulator(interval="1s", input="fifo"),  # type: ignore[arg-type]
        lambda: hr.batch_accumulator(max_buffer_size=2, input="fifo"),  # type: ignore[arg-type]
        lambda: hr.state_accumulator(capacity=2, input="fifo"),  # type: ignore[arg-type]
    ],
)
def test_an_unknown_input_is_refused_naming_the_accumulator_and_the_choices(declare) -> None:
    def odd(*e):  # any arity: only input= is wrong
        return e

    with pytest.raises(hr.GraphDefinitionError, match=r"accumulator 'odd': input must be 'latest', 'sequential' or 'burst'.*'fifo'"):
        declare()(odd)


def test_every_kind_takes_input_and_the_graph_default_fills_the_rest() -> None:
    @hr.state_accumulator(capacity=2, input="burst")
    def w(e):
        return e

    @hr.passthrough_accumulator
    def p(e):
        return e

    g = hr.ComputationGraph("kinds", [w, p], input_strategy="burst")

    @g.node
    def n(w, p):
        return (w, p)

    assert [a.input for a in g.accumulators] == ["burst", None]
    assert [a["input"] for a in g.engine_spec()["accumulators"]] == ["burst", None]
    with hr.Runtime(g, mode="inline") as rt:
        rt.pause()
        rt.push("p", 1)
        rt.push("p", 2)
        rt.resume()
        result = rt.fire()
    assert result is not None and result.outputs["n"] == (None, [])


MANIFEST = """
[package]
name = "mix"
version = "1.0.0"

[metadata]
graph_name = "kinds"
entry = "x:graph"
input_strategy = "burst"

[[metadata.accumulators]]
name = "p"
accumulator_type = "passthrough"
input = "{input}"
"""


def test_package_toml_declares_an_input_per_accumulator() -> None:
    manifest = parse_manifest(MANIFEST.format(input="sequential"))
    assert manifest.accumulators[0].input == "sequential" and manifest.input_strategy == "burst"

    @hr.passthrough_accumulator
    def p(e):
        return e

    g = hr.ComputationGraph("kinds", [p])

    @g.node
    def n(p):
        return p

    applied = apply_manifest(g, manifest)
    assert applied.accumulator("p").input == "sequential" and applied.input_strategy == "burst"
    with pytest.raises(ManifestError, match=r"metadata.accumulators\[0\].input: accumulator 'p': must be 'latest', 'sequential' or 'burst', got 'fifo'"):
        parse_manifest(MANIFEST.format(input="fifo"))
