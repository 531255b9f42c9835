"""Helpers for testing graphs.

- :func:`run_graph`: a graph over ``(time, accumulator, event)`` triples on a
  :class:`SimClock`, returning every fire.
- :class:`MemoryBroker`: an in-process broker (topics, partitions, offsets,
  committed positions per group, seek, failure injection) behind stream
  accumulators of ``type="memory"``, with the delivery rules of Kafka.
- :func:`crash_check`: SIGKILLs a graph fed from a list of events in a child
  process at random points, restarts it from its store, and compares the
  final checkpointed state with an uninterrupted run's.

    from headrace.testing import SimClock, run_graph

    fires = run_graph(graph, [(0.000, "quotes", q1), (0.004, "quotes", q2)])
    assert [f.outputs["mid"] for f in fires] == [...]

Times are seconds since the epoch or datetimes (naive ones are UTC). Timers
(batch flushes, retries) run at their own simulated times between the
events, so a test sees exactly what a live run with those arrival times would
fire, without waiting for any of it.
"""

from __future__ import annotations

from headrace.clock import SimClock
from headrace.testing._broker import MemoryBroker, MemoryMessage, MemoryTopic
from headrace.testing._crash import CrashReport, crash_check
from headrace.testing._run import run_graph

__all__ = ["CrashReport", "MemoryBroker", "MemoryMessage", "MemoryTopic", "SimClock", "crash_check", "run_graph"]
