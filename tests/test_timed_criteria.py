"""Time-based criteria: debounce, throttle and every, in simulated time
(exact) and on the wall clock (thread mode, by outcome only)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.testing import SimClock, run_graph
from timed_util import timed_triples

T0 = 1_767_323_045.0


def quotes(criteria: hr.Criteria, strategy: str = "latest") -> hr.ComputationGraph:
    bid = hr.passthrough("bid")
    ask = hr.passthrough("ask")
    g = hr.ComputationGraph("quotes", accumulators=[bid, ask], criteria=criteria, input_strategy=strategy)  # type: ignore[arg-type]

    @g.node
    def mid(bid: Any, ask: Any) -> Any:
        return (bid, ask)

    return g


def at(fires: list[hr.FireResult]) -> list[tuple[str, float, Any]]:
    return [(f.trigger, round(f.started_at - T0, 6), f.outputs.get("mid")) for f in fires]


def ms(n: float) -> float:
    return T0 + n / 1000


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_debounce_fires_once_the_members_are_quiet_on_the_newest_values(mode: hr.runtime.Mode) -> None:
    g = quotes(hr.when_any("bid", "ask", debounce="10ms"))
    events = [(ms(0), "bid", 1), (ms(4), "ask", 2), (ms(8), "bid", 3), (ms(30), "bid", 4), (ms(35), "ask", 5)]
    fires = run_graph(g, events, until=ms(100), mode=mode)
    assert at(fires) == [("criteria", 0.018, (3, 2)), ("criteria", 0.045, (4, 5))]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_throttle_fires_at_once_then_once_at_the_window_s_end(mode: hr.runtime.Mode) -> None:
    g = quotes(hr.when_any("bid", "ask", throttle="100ms"))
    events = [(ms(0), "bid", 1), (ms(10), "bid", 2), (ms(50), "ask", 3), (ms(150), "bid", 4), (ms(400), "bid", 5)]
    fires = run_graph(g, events, until=ms(1000), mode=mode)
    assert at(fires) == [
        ("criteria", 0.0, (1, None)),
        ("criteria", 0.1, (2, 3)),  # 10 ms and 50 ms collapsed into the trailing fire
        ("criteria", 0.2, (4, 3)),  # 150 ms came inside the window the 100 ms fire opened
        ("criteria", 0.4, (5, 3)),  # quiet since: at once
    ]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_every_fires_on_its_schedule_with_the_current_inputs(mode: hr.runtime.Mode) -> None:
    fires = run_graph(quotes(hr.every("1s")), [(ms(0), "bid", 1), (ms(1500), "ask", 2)], until=ms(3000), mode=mode)
    assert at(fires) == [("schedule", 1.0, (1, None)), ("schedule", 2.0, (1, 2)), ("schedule", 3.0, (1, 2))]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_every_beside_when_all_waits_for_every_member(mode: hr.runtime.Mode) -> None:
    g = quotes(hr.when_all("bid", "ask", every="1s"), strategy="sequential")
    fires = run_graph(g, [(ms(0), "bid", 1), (ms(1500), "ask", 2)], until=ms(2000), mode=mode)
    assert at(fires) == [("ask", 1.5, (1, 2)), ("schedule", 2.0, (1, 2))]


def test_bad_timed_criteria_are_named() -> None:
    with pytest.raises(hr.GraphDefinitionError, match="members need input_strategy 'latest' or 'burst'; sequential: 'bid', 'ask'"):
        quotes(hr.when_any("bid", "ask", debounce="10ms"), strategy="sequential").validate()
    with pytest.raises(hr.GraphDefinitionError, match="cannot be combined"):
        quotes(hr.when_any(debounce="1ms", throttle="1ms")).validate()
    with pytest.raises(hr.GraphDefinitionError, match="debounce: cannot read duration 'soon'"):
        hr.when_any(debounce="soon")
    with pytest.raises(hr.GraphDefinitionError, match="every: must be a positive"):
        hr.every(0)


def test_every_on_the_wall_clock_fires_by_itself_in_thread_mode() -> None:
    import threading

    two = threading.Event()
    fires: list[hr.FireResult] = []

    def seen(f: hr.FireResult) -> None:
        fires.append(f)
        if len(fires) >= 2:
            two.set()

    with hr.Runtime(quotes(hr.every("20ms")), mode="thread", on_fire=seen) as rt:
        rt.push("bid", 1)
        assert two.wait(10), "two scheduled fires within 10 s"
    assert {f.trigger for f in fires} == {"schedule"}
    assert fires[0].outputs["mid"] == (1, None)


def test_debounce_on_the_wall_clock_collapses_a_burst_in_thread_mode() -> None:
    fires: list[hr.FireResult] = []
    with hr.Runtime(quotes(hr.when_any(debounce="50ms")), mode="thread", on_fire=fires.append) as rt:
        rt.push_many("bid", range(100))
        rt.drain()
        import time

        deadline = time.monotonic() + 10
        while not fires and time.monotonic() < deadline:
            time.sleep(0.01)
    # However the pushes were batched, they came faster than 50 ms apart.
    assert [f.outputs["mid"] for f in fires] == [(99, None)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["bid", "ask"]), st.integers(0, 9)), max_size=20),
    st.sampled_from(["debounce", "throttle", "every"]),
    st.sampled_from(["latest", "burst"]),
)
def test_timed_criteria_give_the_same_fires_in_either_mode(
    events: list[tuple[int, str, int]], which: str, strategy: str
) -> None:
    triples, t = timed_triples(events, T0)
    g = quotes(hr.when_any(**{which: "15ms"}), strategy=strategy)  # type: ignore[arg-type]
    inline = run_graph(g, triples, start=T0, until=t + 0.1, mode="inline")
    thread = run_graph(g, triples, start=T0, until=t + 0.1, mode="thread")
    shape = lambda fires: [(f.id, f.trigger, f.outputs, f.started_at) for f in fires]  # noqa: E731
    assert shape(thread) == shape(inline)
    if which != "every":
        # Nothing is silently dropped: the newest values reach a fire.
        if triples:
            last = {name: value for _, name, value in triples}
            newest = inline[-1].outputs["mid"]
            if strategy == "latest":
                assert newest == (last.get("bid"), last.get("ask"))
