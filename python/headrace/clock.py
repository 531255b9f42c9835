"""The runtime's clock: the wall clock (the default) or a :class:`SimClock`.

Every time-dependent behaviour of a runtime reads its clock: batch
``flush_interval``, ``retry_backoff``, ``checkpoint_interval``, fire start
times and ``last_fired_at``. Under a :class:`SimClock`, time moves only when
the clock is advanced or an event carries a later time (``push(..., at=t)``);
on the way, every timer due runs in time order, each at its own time. So the
same events at the same times give the same fires, in inline and thread mode,
however fast the machine is.

Times are seconds since the Unix epoch (floats) or ``datetime`` objects (a
naive one is read as UTC), everywhere.
"""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime, timedelta
from typing import Protocol

from headrace import _core
from headrace._durations import seconds
from headrace.errors import SettingError

__all__ = ["SimClock", "TimeLike"]

#: A time: seconds since the epoch, or a datetime (naive: UTC).
TimeLike = float | int | datetime


class _OnClock(Protocol):
    """What a clock moves: a runtime (without importing it: it imports this)."""

    @property
    def closed(self) -> bool: ...

    def _advance_clock(self, nanos: int) -> None: ...


class SimClock(_core.SimTime):
    """A clock that moves only when told to.

    ``SimClock(start=...)`` starts at ``start`` (default: the epoch). Give it
    to runtimes (``Runtime(graph, clock=clock)``); :meth:`advance` and
    :meth:`set` move every runtime on it, running their timers due on the
    way; an event pushed with ``at=t`` moves the clock to ``t`` too. Time never
    goes back: an event whose time is behind the clock is taken at the
    clock's time, and ``set`` to an earlier time raises
    :class:`~headrace.SettingError`.
    """

    def __init__(self, start: TimeLike | None = None) -> None:
        # The time itself lives in the base (shared with the engines).
        self._runtimes: weakref.WeakSet[_OnClock] = weakref.WeakSet()
        self._lock = threading.Lock()

    def datetime(self) -> datetime:
        """The clock's time as an aware UTC datetime (to the microsecond)."""
        ns = self.nanos
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)

    def advance(self, by: str | float | timedelta) -> None:
        """Moves the clock forward ``by`` (``"5ms"``, seconds, or a timedelta)."""
        try:
            step = by.total_seconds() if isinstance(by, timedelta) else seconds(by, what="advance")
        except ValueError as e:
            raise SettingError(str(e), setting="advance") from None
        if step <= 0:
            raise SettingError(f"advance: must be a positive duration, got {by!r}", setting="advance")
        with self._lock:
            self._forward(self._advance_ns(round(step * 1e9)))

    def set(self, t: TimeLike) -> None:
        """Moves the clock to ``t``; raises SettingError if ``t`` is before its time."""
        with self._lock:
            self._forward(self._move_to(t))

    def _forward(self, ns: int) -> None:
        """Moves every runtime on this clock to ``ns``."""
        for rt in list(self._runtimes):
            if not rt.closed:
                rt._advance_clock(ns)

    def _attach(self, runtime: _OnClock) -> None:
        self._runtimes.add(runtime)

    def __repr__(self) -> str:
        return f"SimClock({self.datetime().isoformat()})"
