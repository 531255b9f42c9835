"""``run_graph``: a graph over timed events on a simulated clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from headrace._core import FireResult
from headrace._options import Mode
from headrace.clock import SimClock, TimeLike
from headrace.errors import AccumulatorError, NodeError
from headrace.graph import ComputationGraph
from headrace.runtime import Runtime

__all__ = ["run_graph"]


def run_graph(
    graph: ComputationGraph,
    timed_events: Iterable[tuple[TimeLike, str, Any]],
    *,
    start: TimeLike | None = None,
    until: TimeLike | None = None,
    mode: Mode = "inline",
    **runtime_options: Any,
) -> list[FireResult]:
    """Runs ``graph`` over ``(time, accumulator, event)`` triples, in order,
    on a :class:`SimClock`, and returns every fire: the events' and their
    timers', in the order they happened.

    Args:
        start: The clock's start (default: the first event's time).
        until: Advance the clock here after the last event, running the
            timers due by then (default: stop at the last event; without a
            store, closing then flushes what batches still hold).
        mode: "inline" (default) or "thread": the same fires either way.
        runtime_options: Any other :class:`~headrace.Runtime` option
            (``max_attempts``, ``retry_backoff``, ``profile``, ...).

    A fire whose node raised is in the list with its ``error``, in either
    mode (inline ``push`` would raise it).

    Raises:
        SettingError: a time cannot be read, or ``until`` is before the last event.
    """
    for reserved in ("clock", "on_fire"):
        if reserved in runtime_options:
            raise TypeError(f"run_graph sets {reserved}= itself")
    events = iter(timed_events)
    first = next(events, None)
    clock = SimClock(start if start is not None else (first[0] if first is not None else None))
    fires: list[FireResult] = []
    rt = Runtime(graph, mode=mode, clock=clock, on_fire=fires.append, **runtime_options)

    def feed() -> None:
        for at, name, event in itertools.chain([first] if first is not None else [], events):
            taking_failures(lambda: rt.push(name, event, at=at))

    drive(rt, clock, feed, until)
    return fires


def taking_failures(step: Callable[[], object]) -> None:
    """Runs one input step; a fire's failure is not raised: inline raises
    what thread mode reports, and the fire is in the list either way."""
    try:
        step()
    except (NodeError, AccumulatorError):
        pass


def drive(rt: Runtime, clock: SimClock, feed: Callable[[], None], until: TimeLike | None) -> None:
    """Feeds ``rt``, moves ``clock`` to ``until`` (running the timers due by
    then), waits for everything to be processed, and closes ``rt``."""
    try:
        feed()
        if until is not None:
            clock.set(until)
        rt.drain()
    finally:
        rt.close()
