"""Reactor semantics: criteria and input strategies, against a reference model."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr
from headrace._options import EngineOptions

NAMES = ("a", "b", "c")


def make_graph(kind: str, members: tuple[str, ...], strategy: str) -> hr.ComputationGraph:
    accs = [hr.passthrough_accumulator(name=n)(lambda e: e) for n in NAMES]
    criteria = hr.when_all(*members) if kind == "all" else hr.when_any(*members)
    g = hr.ComputationGraph("g", accumulators=accs, criteria=criteria, input_strategy=strategy)  # type: ignore[arg-type]

    @g.node
    def snapshot(a, b, c):
        return (a, b, c)

    return g


def model(kind: str, members: tuple[str, ...], pushes: list[tuple[str, int]]) -> list[tuple[Any, ...]]:
    """Fires one-per-push semantics: what inline mode (and sequential in any mode) must do."""
    watched = set(members or NAMES)
    cache: dict[str, int | None] = dict.fromkeys(NAMES)
    fires = []
    for name, value in pushes:
        cache[name] = value
        if name in watched and (kind == "any" or all(cache[m] is not None for m in watched)):
            fires.append(tuple(cache[n] for n in NAMES))
    return fires


pushes_st = st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 1000)), max_size=40)
members_st = st.lists(st.sampled_from(NAMES), unique=True, max_size=3).map(tuple)


@given(kind=st.sampled_from(["any", "all"]), members=members_st, pushes=pushes_st)
def test_sequential_matches_the_model_in_both_modes(kind, members, pushes) -> None:
    for mode in ("inline", "thread"):
        fires: list[hr.FireResult] = []
        with hr.Runtime(make_graph(kind, members, "sequential"), mode=mode, on_fire=fires.append) as rt:
            for name, value in pushes:
                rt.push(name, value)
            rt.drain(timeout=30)
        assert [f.outputs["snapshot"] for f in fires] == model(kind, members, pushes), mode


@given(kind=st.sampled_from(["any", "all"]), members=members_st, pushes=pushes_st)
def test_latest_inline_fires_on_every_accepted_boundary(kind, members, pushes) -> None:
    fires: list[hr.FireResult] = []
    with hr.Runtime(make_graph(kind, members, "latest"), mode="inline", on_fire=fires.append) as rt:
        for name, value in pushes:
            rt.push(name, value)
    assert [f.outputs["snapshot"] for f in fires] == model(kind, members, pushes)


@given(kind=st.sampled_from(["any", "all"]), members=members_st, pushes=pushes_st)
def test_latest_thread_collapses_but_loses_nothing(kind, members, pushes) -> None:
    """Thread mode may collapse updates, but each fire is a state the pushes pass
    through, in order, and the last fire reflects every triggering push."""
    fires: list[hr.FireResult] = []
    with hr.Runtime(make_graph(kind, members, "latest"), mode="thread", on_fire=fires.append) as rt:
        for name, value in pushes:
            rt.push(name, value)
        rt.drain(timeout=30)
    seen = [f.outputs["snapshot"] for f in fires]
    expected = model(kind, members, pushes)
    # Every fire's inputs are a prefix-state of the push sequence, in push order.
    states = []
    cache: dict[str, int | None] = dict.fromkeys(NAMES)
    for name, value in pushes:
        cache[name] = value
        states.append(tuple(cache[n] for n in NAMES))
    position = -1
    for snapshot in seen:
        later = [i for i in range(position + 1, len(states)) if states[i] == snapshot]
        assert later, f"fire {snapshot} is not a later state of the pushes"
        position = later[0]
    assert len(seen) <= len(expected)
    assert bool(seen) == bool(expected)
    if expected:
        # The push that made the model's last fire is reflected by the last real fire.
        watched = set(members or NAMES)
        cache2: dict[str, int | None] = dict.fromkeys(NAMES)
        last_trigger = -1
        for i, (name, value) in enumerate(pushes):
            cache2[name] = value
            if name in watched and (kind == "any" or all(cache2[m] is not None for m in watched)):
                last_trigger = i
        assert any(states[i] == seen[-1] for i in range(last_trigger, len(states)))


def test_when_all_never_fires_before_every_member_has_a_value(harness) -> None:
    h = harness(make_graph("all", ("a", "b"), "latest"))
    for i in range(5):
        h.push("a", i)
    h.push("c", 99)
    assert h.outputs("snapshot") == []
    h.push("b", 7)
    assert h.outputs("snapshot")[-1] == (4, 7, 99)


def test_when_any_fires_on_its_members_only(harness) -> None:
    h = harness(make_graph("any", ("a",), "sequential"))
    h.push("b", 1)
    h.push("b", 2)
    assert h.outputs("snapshot") == []
    h.push("a", 5)
    assert h.outputs("snapshot") == [(5, 2, None)]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        # latest: the 49 updates that arrive during the slow fire collapse into one.
        ("latest", [0, 49]),
        # sequential: every boundary fires, in order.
        ("sequential", list(range(50))),
    ],
)
def test_updates_arriving_while_a_fire_runs(strategy, expected) -> None:
    entered, release = threading.Event(), threading.Event()
    seen = []

    @hr.passthrough_accumulator
    def price(e):
        return e

    g = hr.ComputationGraph("g", accumulators=[price], input_strategy=strategy)

    @g.node
    def slow(price):
        seen.append(price)
        if price == 0:
            entered.set()
            assert release.wait(10)
        return price

    with hr.Runtime(g, mode="thread") as rt:
        rt.push("price", 0)
        assert entered.wait(10)
        for p in range(1, 50):
            rt.push("price", p)
        release.set()
        rt.drain(timeout=10)
        assert rt.stats()["accumulators"]["price"]["boundaries"] == 50
    assert seen == expected


def test_manual_fire_uses_current_inputs(harness) -> None:
    h = harness(make_graph("all", (), "latest"))
    h.push("a", 1)
    h.rt.fire()
    h.settle()
    assert h.fires[-1].trigger == "manual"
    assert h.fires[-1].outputs["snapshot"] == (1, None, None)


def test_inline_push_returns_its_fire_or_none() -> None:
    with hr.Runtime(make_graph("any", ("a",), "latest")) as rt:
        assert rt.push("b", 1) is None
        result = rt.push("a", 2)
        assert result is not None and result.ok and result.outputs == {"snapshot": (2, 1, None)}
        assert result.trigger == "criteria" and result.id == 1 and result.duration_ns >= 0
        fires = rt.push_many("a", [3, 4])
        assert fires is not None and [f.outputs["snapshot"][0] for f in fires] == [3, 4]


def test_stats_count_events_and_fires(harness) -> None:
    h = harness(make_graph("any", ("a",), "sequential"))
    for i in range(10):
        h.push("a", i)
    h.push("b", 1)
    h.settle()
    s = h.rt.stats()
    assert s["fire_count"] == 10 and s["fires_failed"] == 0
    assert s["accumulators"]["a"]["events"] == 10 and s["accumulators"]["b"]["boundaries"] == 1
    assert s["health"] == "live" and s["last_fired_at"] > 0


def test_unknown_accumulator_name_is_a_clear_error(harness) -> None:
    h = harness(make_graph("any", (), "latest"))
    with pytest.raises(hr.HeadraceError, match="has no accumulator 'zzz' \\(it has: a, b, c\\)"):
        h.rt.push("zzz", 1)


def test_push_pairs_interleaves_accumulators_in_one_call(mode) -> None:
    fires: list[hr.FireResult] = []
    pairs = [("a", 1), ("b", 10), ("a", 2), ("c", 5), ("b", 20)]
    with hr.Runtime(make_graph("all", ("a", "b"), "sequential"), mode=mode, on_fire=fires.append) as rt:
        returned = rt.push_pairs(pairs)
        rt.drain(timeout=5)
        with pytest.raises(TypeError, match="pairs"):
            rt.push_pairs([("a",)])
        with pytest.raises(hr.HeadraceError, match="no accumulator 'zz'"):
            rt.push_pairs([("zz", 1)])
    expected = [(1, 10, None), (2, 10, None), (2, 20, 5)]
    assert [f.outputs["snapshot"] for f in fires] == expected
    if mode == "inline":
        assert returned is not None and [f.outputs["snapshot"] for f in returned] == expected
    else:
        assert returned is None


def test_fire_list_is_a_read_only_sequence_of_results() -> None:
    from collections.abc import Sequence

    with hr.Runtime(make_graph("any", ("a",), "sequential")) as rt:
        fires = rt.push_many("a", range(5))
    assert fires is not None and isinstance(fires, Sequence) and len(fires) == 5
    assert [f.outputs["snapshot"][0] for f in fires] == [0, 1, 2, 3, 4]
    assert fires[-1].outputs["snapshot"][0] == 4 and fires[0].id == 1
    assert [f.id for f in fires[1:4:2]] == [2, 4]
    with pytest.raises(IndexError):
        fires[5]
    assert repr(fires) == "<FireList of 5 fire(s)>"


def test_sequential_is_the_default_strategy_everywhere(mode) -> None:
    """A burst read together fires once per event unless `latest` is asked for."""
    g = make_graph("any", ("a",), "sequential")
    default = hr.ComputationGraph("g", accumulators=list(g.accumulators))
    assert default.input_strategy == "sequential"
    default.node(name="snapshot")(lambda a: a)
    fires: list[hr.FireResult] = []
    with hr.Runtime(default, mode=mode, on_fire=fires.append) as rt:
        rt.push_many("a", list(range(50)))
        rt.drain(timeout=30)
    assert [f.outputs["snapshot"] for f in fires] == list(range(50))
    # The engine's own default, for a spec that does not say.
    spec = default.engine_spec()
    del spec["input_strategy"]
    engine = hr._core.Engine(spec, EngineOptions(mode=mode))
    try:
        engine.push_many("a", [1, 2, 3])
        engine.drain(timeout=30)
        assert engine.stats()["fire_count"] == 3
    finally:
        engine.close()
