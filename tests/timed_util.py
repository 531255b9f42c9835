"""Timed events for simulated-time tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def timed_triples(events: Iterable[tuple[int, str, Any]], start: float) -> tuple[list[tuple[float, str, Any]], float]:
    """``(gap in ms, accumulator, event)`` steps as ``(time, accumulator,
    event)`` triples from ``start``, and the last time."""
    t = start
    triples = []
    for gap, name, value in events:
        t += gap / 1000
        triples.append((t, name, value))
    return triples, t
