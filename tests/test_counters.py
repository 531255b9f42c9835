"""``Runtime.counters()``: the heartbeat's read agrees with ``stats()``."""

from __future__ import annotations

import pytest

import headrace as hr


def _graph() -> hr.ComputationGraph:
    @hr.passthrough_accumulator
    def a(event):  # type: ignore[no-untyped-def]
        return event

    @hr.passthrough_accumulator
    def b(event):  # type: ignore[no-untyped-def]
        return event

    g = hr.ComputationGraph("counted", accumulators=[a, b])

    @g.node
    def out(a, b):  # type: ignore[no-untyped-def]
        if a == "boom":
            raise ValueError("boom")
        return a

    return g


def _agree(rt: hr.Runtime) -> hr._core.Counters:
    c = rt.counters()
    s = rt.stats()
    assert c.events == sum(x["events"] for x in s["accumulators"].values())
    assert (c.fires, c.fires_failed, c.queue_depth, c.paused) == (
        s["fire_count"], s["fires_failed"], s["queue_depth"], s["paused"]
    )
    assert c.pending == s["pending"] and c.health == s["health"]
    return c


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_counters_agree_with_stats(mode: str) -> None:
    with hr.Runtime(_graph(), mode=mode, max_attempts=1) as rt:  # type: ignore[arg-type]
        assert _agree(rt).events == 0
        for i in range(5):
            rt.push("a", i)
        rt.push("b", 1)
        try:
            rt.push("a", "boom")
        except hr.NodeError:
            pass  # inline raises it; thread mode reports it
        rt.drain(timeout=30)
        c = _agree(rt)
        assert (c.events, c.fires, c.fires_failed) == (7, 6, 1), c
        rt.pause()
        rt.push("a", 9)
        rt.drain(timeout=30)
        c = _agree(rt)
        assert c.paused and c.events == 8 and c.fires == 6 and c.pending >= 1
        assert "Counters(events=8" in repr(c)
