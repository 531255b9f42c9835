"""Simulated time: one clock for the runtime's timers, events that carry
their time, and the same fires in inline and thread mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.testing import SimClock, run_graph
from timed_util import timed_triples

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


def batch_graph(fail_on: frozenset[int] = frozenset(), strategy: str = "sequential") -> hr.ComputationGraph:
    tick = hr.passthrough("tick")

    @hr.batch_accumulator(flush_interval="5ms")
    def fills(events: list[Any]) -> list[Any]:
        return list(events)

    g = hr.ComputationGraph(
        "sim", accumulators=[tick, fills], criteria=hr.when_any(tick, fills), input_strategy=strategy  # type: ignore[arg-type]
    )

    @g.node
    def out(tick: Any, fills: Any) -> Any:
        if tick in fail_on:
            raise RuntimeError(f"tick {tick} refused")
        return (tick, fills)

    return g


def shape(fires: list[hr.FireResult]) -> list[tuple[Any, ...]]:
    """Everything a fire says except how long it took (real compute time)."""
    return [
        (f.id, f.trigger, f.outputs, None if f.error is None else str(f.error), f.attempt, f.dead_lettered, f.started_at)
        for f in fires
    ]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_timers_due_before_an_event_run_first_each_at_its_own_time(mode: hr.runtime.Mode) -> None:
    clock = SimClock(T0)
    fires: list[hr.FireResult] = []
    with hr.Runtime(batch_graph(), mode=mode, clock=clock, on_fire=fires.append) as rt:
        rt.push("fills", "f1", at=T0)
        rt.push("tick", 1, at=T0 + 0.020)
        rt.drain()
        assert [(f.trigger, f.outputs["out"], round(f.started_at - T0, 6)) for f in fires] == [
            ("fills", (None, ["f1"]), 0.005),
            ("tick", (1, ["f1"]), 0.020),
        ]
        assert rt.clock_time == pytest.approx(T0 + 0.020)
        assert clock.now() == pytest.approx(T0 + 0.020)


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_nothing_happens_until_the_clock_moves(mode: hr.runtime.Mode) -> None:
    clock = SimClock(T0)
    fires: list[hr.FireResult] = []
    with hr.Runtime(batch_graph(), mode=mode, clock=clock, on_fire=fires.append) as rt:
        rt.push("fills", "f1")
        rt.drain()
        assert fires == []
        clock.advance("4ms")
        rt.drain()
        assert fires == []
        clock.advance(timedelta(milliseconds=1))
        rt.drain()
        assert [round(f.started_at - T0, 6) for f in fires] == [0.005]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_retries_back_off_in_simulated_time(mode: hr.runtime.Mode) -> None:
    calls: list[int] = []
    tick = hr.passthrough("tick")
    g = hr.ComputationGraph("retry", accumulators=[tick])

    @g.node
    def out(tick: int) -> int:
        calls.append(tick)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return tick

    fires = run_graph(g, [(T0, "tick", 7)], until=T0 + 1, mode=mode, retry_backoff="10ms")
    assert [(f.error is None, round(f.started_at - T0, 6)) for f in fires] == [(False, 0.0), (False, 0.01), (True, 0.02)]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_runtimes_on_one_clock_move_together(mode: hr.runtime.Mode) -> None:
    clock = SimClock(T0)
    a: list[hr.FireResult] = []
    b: list[hr.FireResult] = []
    with (
        hr.Runtime(batch_graph(), mode=mode, clock=clock, on_fire=a.append) as ra,
        hr.Runtime(batch_graph(), mode=mode, clock=clock, on_fire=b.append) as rb,
    ):
        ra.push("fills", "x")
        rb.push("fills", "y")
        clock.set(T0 + 1)
        ra.drain()
        rb.drain()
        assert [(f.outputs["out"], round(f.started_at - T0, 6)) for f in a] == [((None, ["x"]), 0.005)]
        assert [(f.outputs["out"], round(f.started_at - T0, 6)) for f in b] == [((None, ["y"]), 0.005)]


def test_an_event_behind_the_clock_is_taken_at_the_clock_s_time() -> None:
    clock = SimClock(T0)
    with hr.Runtime(batch_graph(), clock=clock) as rt:
        clock.advance(2.0)
        fire = rt.push("tick", 1, at=T0 + 1)
        assert fire is not None and fire.started_at == pytest.approx(T0 + 2)
        assert clock.now() == pytest.approx(T0 + 2)


def test_push_many_with_times_returns_the_timers_fires_too() -> None:
    @hr.batch_accumulator(flush_interval="5ms")
    def fills(events: list[Any]) -> list[Any]:
        return list(events)

    g = hr.ComputationGraph("batches", accumulators=[fills])

    @g.node
    def out(fills: Any) -> Any:
        return fills

    with hr.Runtime(g, clock=SimClock(T0)) as rt:
        fires = rt.push_many("fills", ["a", "b", "c"], at=[T0, T0 + 0.001, T0 + 0.009])
        assert fires is not None
        assert [(f.outputs["out"], round(f.started_at - T0, 6)) for f in fires] == [(["a", "b"], 0.005)]
        with pytest.raises(hr.SettingError, match="fewer times"):
            rt.push_many("fills", [1, 2], at=[T0 + 1])
        with pytest.raises(hr.SettingError, match="more times"):
            rt.push_many("fills", [1], at=[T0 + 1, T0 + 2])


def test_times_as_datetimes_and_floats() -> None:
    clock = SimClock(datetime(2026, 1, 2))  # naive: UTC
    assert clock.now() == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    assert clock.datetime() == datetime(2026, 1, 2, tzinfo=UTC)
    with hr.Runtime(batch_graph(), clock=clock) as rt:
        plus_one = timezone(timedelta(hours=1))
        fire = rt.push("tick", 1, at=datetime(2026, 1, 2, 1, 0, 0, 250, tzinfo=plus_one))  # 00:00:00.000250 UTC
        assert fire is not None
        assert clock.nanos == int(datetime(2026, 1, 2, tzinfo=UTC).timestamp()) * 10**9 + 250_000
        assert fire.started_at == pytest.approx(clock.now())


def test_bad_times_raise_clear_errors() -> None:
    clock = SimClock(T0)
    with pytest.raises(hr.SettingError, match="time never goes back"):
        clock.set(T0 - 1)
    with pytest.raises(hr.SettingError, match="cannot read duration '-5ms'"):
        clock.advance("-5ms")
    with pytest.raises(hr.SettingError, match="positive"):
        clock.advance(timedelta(0))
    with pytest.raises(hr.SettingError, match="seconds since the epoch .* or a datetime, got str"):
        SimClock("yesterday")  # type: ignore[arg-type]
    with hr.Runtime(batch_graph(), clock=clock) as rt:
        with pytest.raises(hr.SettingError, match="finite"):
            rt.push("tick", 1, at=float("nan"))
    with hr.Runtime(batch_graph()) as rt:
        with pytest.raises(hr.SettingError, match="needs a simulated clock"):
            rt.push("tick", 1, at=T0)
        assert rt.clock_time is None
    with pytest.raises(TypeError, match="SimClock"):
        hr.Runtime(batch_graph(), clock=T0)  # type: ignore[arg-type]


def test_checkpoint_interval_counts_simulated_time(store_url: str, tenant: str) -> None:
    clock = SimClock(T0)
    options: dict[str, Any] = {"store": store_url, "tenant": tenant, "checkpoint_every": 0, "checkpoint_interval": "1s"}
    with hr.Runtime(batch_graph(), clock=clock, **options) as rt:
        rt.push("tick", 1)
        clock.advance("999ms")
        # Inline, a due checkpoint is handed to the writer before advance returns.
        cp = rt.stats()["checkpoint"]
        assert (cp["checkpoints"], cp["pending"]) == (0, False)
        clock.advance("1ms")
        cp = rt.stats()["checkpoint"]
        assert cp["checkpoints"] == 1 or cp["pending"]


def test_a_restored_batch_flushes_on_the_restoring_clock(store_url: str, tenant: str) -> None:
    options: dict[str, Any] = {"store": store_url, "tenant": tenant}
    with hr.Runtime(batch_graph(), clock=SimClock(T0), **options) as rt:
        rt.push("fills", "kept")  # buffered; the final checkpoint keeps it
    fires: list[hr.FireResult] = []
    clock = SimClock(T0 + 10)
    with hr.Runtime(batch_graph(), clock=clock, on_fire=fires.append, **options) as rt:
        clock.advance("4ms")
        assert fires == []
        clock.advance("1ms")
        assert [(f.outputs["out"], round(f.started_at - T0, 6)) for f in fires] == [((None, ["kept"]), 10.005)]


timed = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12),  # ms after the previous event
        st.sampled_from(["tick", "fills"]),
        st.integers(min_value=0, max_value=9),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(timed, st.integers(min_value=0, max_value=30), st.sampled_from(["sequential", "latest", "burst"]))
def test_the_same_timed_events_give_the_same_fires_in_either_mode(
    events: list[tuple[int, str, int]], tail: int, strategy: str
) -> None:
    triples, t = timed_triples(events, T0)
    g = batch_graph(fail_on=frozenset({3, 7}), strategy=strategy)
    options = {"retry_backoff": "2ms", "max_attempts": 2}
    inline = run_graph(g, triples, start=T0, until=t + tail / 1000, mode="inline", **options)
    thread = run_graph(g, triples, start=T0, until=t + tail / 1000, mode="thread", **options)
    assert shape(thread) == shape(inline)


@pytest.mark.parametrize("mode", ["inline", "thread"])
@pytest.mark.parametrize("is_async", [False, True])
def test_polls_run_on_their_interval_in_simulated_time(mode: hr.runtime.Mode, is_async: bool) -> None:
    calls = [0]

    def read() -> Any:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("feed down")
        return calls[0] // 2  # 0, 1, (raises), 2, 2, 3: unchanged values emit nothing

    async def aread() -> Any:
        return read()

    price = hr.polling_accumulator(interval="100ms", name="price")(aread if is_async else read)
    g = hr.ComputationGraph("polled", accumulators=[price])

    @g.node
    def out(price: Any) -> Any:
        return price

    clock = SimClock(T0)
    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode=mode, clock=clock, on_fire=fires.append) as rt:
        clock.set(T0 + 0.15)
        rt.drain()
        assert rt.stats()["accumulators"]["price"]["health"] == "live"
        clock.set(T0 + 0.25)
        rt.drain()
        acc = rt.stats()["accumulators"]["price"]
        assert (acc["health"], acc["errors"]) == ("disconnected", 1)
        assert "feed down" in acc["last_error"]
        clock.set(T0 + 0.55)
        rt.drain()
        assert rt.stats()["accumulators"]["price"]["health"] == "live"
    assert [(f.outputs["out"], round(f.started_at - T0, 6)) for f in fires] == [(0, 0.0), (1, 0.1), (2, 0.3), (3, 0.5)]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_push_pairs_with_times(mode: hr.runtime.Mode) -> None:
    fires: list[hr.FireResult] = []
    with hr.Runtime(batch_graph(), mode=mode, clock=SimClock(T0), on_fire=fires.append) as rt:
        rt.push_pairs([("fills", "a"), ("tick", 1), ("fills", "b")], at=[T0, T0 + 0.002, T0 + 0.003])
        rt.drain()
        assert [(f.trigger, f.outputs["out"], round(f.started_at - T0, 6)) for f in fires] == [
            ("tick", (1, None), 0.002),
            ("fills", (1, ["a"]), 0.002),  # flushed after the successful fire
        ]
        with pytest.raises(hr.SettingError, match="fewer times"):
            rt.push_pairs([("tick", 1)], at=[])
