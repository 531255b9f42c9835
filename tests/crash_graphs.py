"""Graphs for tests/test_testing_crash.py, imported by name in crash_check's
child processes: one whose state is all in its checkpoint, and one that
hides a running count in a module variable (which a restart loses)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import headrace as hr


def events(n: int = 1500) -> Iterator[tuple[str, Any]]:
    for i in range(n):
        yield ("fills", {"id": i, "qty": i % 7 + 1})
        if i % 3 == 0:
            yield ("prices", 100 + i % 11)
        if i % 5 == 0:
            yield ("ticks", i)


def build() -> hr.ComputationGraph:
    @hr.stream_accumulator(topic="fills", state={"position": 0, "count": 0, "last_ids": []})
    def fills(event, state):
        s = state.value
        s["position"] += event["qty"]
        s["count"] += 1
        s["last_ids"] = (s["last_ids"] + [event["id"]])[-5:]
        return s["position"]

    @hr.passthrough_accumulator
    def prices(event):
        return event

    @hr.batch_accumulator(max_buffer_size=4)
    def ticks(events):
        return sum(events)

    g = hr.ComputationGraph("book", accumulators=[fills, prices, ticks], criteria=hr.when_any(fills, prices, ticks))

    @g.node
    def value(fills, prices, ticks):
        return (fills or 0) * (prices or 0) + (ticks or 0)

    return g


graph = build()

# A running count outside the checkpoint: a restarted process starts it again at 0.
_HIDDEN = {"seen": 0}


def build_broken() -> hr.ComputationGraph:
    @hr.stream_accumulator(topic="fills")
    def fills(event):
        _HIDDEN["seen"] += 1
        return _HIDDEN["seen"]

    g = hr.ComputationGraph("broken", accumulators=[fills])
    g.node(name="count")(lambda fills: fills)
    return g


broken = build_broken()


def fills_only(n: int = 1500) -> list[tuple[str, Any]]:
    return [("fills", {"id": i, "qty": 1}) for i in range(n)]
