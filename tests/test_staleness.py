"""Staleness: ``max_age`` on an accumulator, the ``stale`` health, the
degraded reactor, and ``hr.input_age`` inside nodes, by the runtime's clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

import headrace as hr
from headrace.testing import SimClock

T0 = 1_767_323_045.0


def book_graph(ages: list[tuple[float, float]] | None = None, max_age: str | None = "2s") -> hr.ComputationGraph:
    book = hr.passthrough("book", max_age=max_age)
    trades = hr.passthrough("trades")
    g = hr.ComputationGraph("stale", accumulators=[book, trades], criteria=hr.when_any(trades))

    @g.node
    def quote(book: Any, trades: Any) -> Any:
        if ages is not None:
            ages.append((hr.input_age("book"), hr.input_age("trades")))
        return book

    return g


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_an_accumulator_quiet_past_its_max_age_is_stale_until_it_emits(mode: hr.runtime.Mode) -> None:
    clock = SimClock(T0)
    with hr.Runtime(book_graph(), mode=mode, clock=clock) as rt:
        rt.push("book", {"bid": 1}, at=T0 + 1)
        rt.drain()
        acc = rt.stats()["accumulators"]["book"]
        assert (acc["health"], acc["age"], acc["max_age"], acc["stale_since"]) == ("socket_only", 0.0, 2.0, None)
        clock.set(T0 + 3.5)
        rt.drain()
        s = rt.stats()
        acc = s["accumulators"]["book"]
        assert (acc["health"], acc["age"], acc["stale_since"]) == ("stale", 2.5, T0 + 3)
        assert s["health"] == "degraded" and rt.counters().health == "degraded"
        # Without max_age nothing is ever stale.
        assert s["accumulators"]["trades"]["health"] == "socket_only"
        assert s["accumulators"]["trades"]["age"] == 3.5
        rt.push("book", {"bid": 2}, at=T0 + 4)
        rt.drain()
        s = rt.stats()
        assert (s["accumulators"]["book"]["health"], s["health"]) == ("socket_only", "live")


def test_an_accumulator_that_never_emitted_is_as_old_as_the_runtime() -> None:
    clock = SimClock(T0)
    with hr.Runtime(book_graph(), clock=clock) as rt:
        clock.advance("2s")
        acc = rt.stats()["accumulators"]["book"]
        assert (acc["health"], acc["stale_since"]) == ("stale", T0 + 2)


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_input_age_inside_a_node_reads_the_runtime_s_clock(mode: hr.runtime.Mode) -> None:
    ages: list[tuple[float, float]] = []
    clock = SimClock(T0)
    with hr.Runtime(book_graph(ages), mode=mode, clock=clock) as rt:
        rt.push("book", 1, at=T0 + 1)
        rt.push("trades", 1, at=T0 + 1.25)
        rt.push("trades", 2, at=T0 + 4)
        rt.drain()
    assert ages == [(0.25, 0.0), (3.0, 0.0)]


def test_input_age_on_the_wall_clock_and_outside_a_node() -> None:
    ages: list[tuple[float, float]] = []
    with hr.Runtime(book_graph(ages), mode="thread") as rt:
        rt.push("book", 1)
        time.sleep(0.02)
        rt.push("trades", 1)
        rt.drain()
    assert ages[0][0] >= 0.02 and 0 <= ages[0][1] < ages[0][0]
    with pytest.raises(hr.HeadraceError, match="call it from a node function"):
        import threading

        errors: list[BaseException] = []

        def outside() -> None:
            try:
                hr.input_age("book")
            except BaseException as e:  # noqa: BLE001 - carried to the test's thread
                errors.append(e)

        t = threading.Thread(target=outside)
        t.start()
        t.join()
        raise errors[0]


def test_input_age_of_an_unknown_accumulator_names_the_known_ones() -> None:
    g = book_graph()

    @g.node
    def probe(trades: Any) -> Any:
        return hr.input_age("boook")

    with hr.Runtime(g) as rt, pytest.raises(hr.NodeError, match="has no accumulator 'boook' .*book, trades"):
        rt.push("trades", 1)


def test_max_age_must_be_a_positive_duration() -> None:
    with pytest.raises(hr.GraphDefinitionError, match="accumulator 'book': max_age"):
        hr.passthrough("book", max_age="soon")
    with pytest.raises(hr.GraphDefinitionError, match="max_age: must be a positive"):

        @hr.batch_accumulator(max_age=0)
        def fills(events: list[Any]) -> Any:
            return events


def test_package_toml_sets_max_age_and_a_redeclared_accumulator_keeps_the_code_s() -> None:
    from headrace.packages.loader import apply_manifest
    from headrace.packages.manifest import ManifestError, parse_manifest

    manifest = """
[package]
name = "stale"
version = "1.0.0"

[metadata]
graph_name = "stale"
entry = "x:graph"

[[metadata.accumulators]]
name = "book"
accumulator_type = "passthrough"
{max_age}
"""
    g = book_graph(max_age="2s")
    assert apply_manifest(g, parse_manifest(manifest.format(max_age=""))).accumulator("book").max_age == 2.0
    applied = apply_manifest(g, parse_manifest(manifest.format(max_age='max_age = "250ms"')))
    assert applied.accumulator("book").max_age == 0.25
    with pytest.raises(ManifestError, match=r"metadata.accumulators\[0\].max_age: must be a duration"):
        parse_manifest(manifest.format(max_age="max_age = true"))
    with pytest.raises(ManifestError, match="max_age"):
        apply_manifest(g, parse_manifest(manifest.format(max_age='max_age = "-1s"')))
