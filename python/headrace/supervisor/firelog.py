"""A worker's record of recent fires, with their inputs and node timings, and
its latency histograms. The runtime records both (``record_inputs=True``,
``profile=True``); this module only serialises them.

Each fire is serialised once, on the processor thread, to JSON bytes (orjson:
about a microsecond for a small fire) and kept in a ring; a background thread
appends new records to a SQLite file of the graph's own every 200 ms and trims
it, so ``GET .../fires`` survives restarts. The worker also flushes it
before acknowledging pushes, so the fires of acknowledged events are logged;
a kill -9 can lose only the last 200 ms of fires from other sources (Kafka,
timers), never state, which the checkpoint covers.

A write that fails (the file locked by another process for longer than the
busy timeout, a full disk) never ends the thread: the records stay queued
(bounded by the ring's size), the writes are retried with backoff, and
:attr:`FireLog.error` says what fails until a write succeeds again.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

__all__ = ["BUCKETS", "FireLog", "Histogram"]

log = logging.getLogger("headrace.worker")

#: How long one write waits for a lock held by another connection.
BUSY_TIMEOUT = 5.0
#: Retry delays of failing writes: first, cap (seconds).
BACKOFF = (0.2, 5.0)

#: Histogram bucket upper bounds, in seconds (10 µs .. 10 s).
BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip


class Histogram:
    """Counts per bucket (not cumulative), sum and count: Prometheus' shape."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def snapshot(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class FireLog:
    def __init__(self, path: Path, size: int) -> None:
        self.size = size
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=size)
        self._unsaved: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._written = 0
        self.fire_duration = Histogram()
        self.push_to_fire = Histogram()
        #: Wall time the oldest push batch not yet followed by a fire arrived
        #: (set by the worker): push-to-fire latency includes coalescing.
        self.received_at: float | None = None
        self.last: dict[str, Any] | None = None
        #: What fails while writes fail (None when the last write succeeded).
        self.error: str | None = None
        self.failing_since: float | None = None
        self._retry_at = 0.0
        self._delay = BACKOFF[0]
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS fire (fire_id INTEGER PRIMARY KEY, record BLOB NOT NULL)")
        rows = self._db.execute("SELECT fire_id, record FROM fire ORDER BY fire_id DESC LIMIT ?", (size,)).fetchall()
        self._ring.extend((int(r[0]), bytes(r[1])) for r in reversed(rows))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headrace-firelog", daemon=True)
        self._thread.start()

    def on_fire(self, fire: Any) -> None:
        """The runtime's on_fire (processor thread): keep it short. The runtime
        records inputs and node timings (``record_inputs``, ``profile``)."""
        error = fire.error
        record = {
            "id": fire.id,
            "trigger": fire.trigger,
            "fired_at": fire.started_at,
            "duration_us": fire.duration_ns / 1000,
            "ok": fire.ok,
            "inputs": fire.inputs or {},
            "outputs": fire.outputs,
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "node": fire.node,
            "attempt": fire.attempt,
            "dead_lettered": fire.dead_lettered,
            "node_ns": fire.node_ns or {},
        }
        data = orjson.dumps(record, default=_default, option=_OPTIONS)
        self.fire_duration.observe(fire.duration_ns / 1e9)
        received, self.received_at = self.received_at, None
        if received is not None:
            self.push_to_fire.observe(max(0.0, fire.started_at - received))
        with self._lock:
            self._ring.append((fire.id, data))
            self._unsaved.append((fire.id, data))
            self.last = record

    def recent(self, limit: int, max_bytes: int) -> list[Any]:
        """The newest ``limit`` fires, newest first, as JSON-ready values, at
        most ``max_bytes`` of records (at least one)."""
        return self.page(limit, None, max_bytes)[0]

    def page(self, limit: int, before: int | None, max_bytes: int) -> tuple[list[Any], int | None]:
        """Up to ``limit`` fires with an id below ``before`` (None: the newest),
        newest first, at most ``max_bytes`` of records (at least one); and the
        ``before`` of the next page (None when there is no older fire)."""
        with self._lock:
            ring = list(self._ring)
        items: list[Any] = []
        size = 0
        for fire_id, data in reversed(ring):
            if before is not None and fire_id >= before:
                continue
            if len(items) >= limit or (items and size + len(data) > max_bytes):
                return items, items[-1]["id"] if items else None
            items.append(orjson.loads(data))
            size += len(data)
        return items, None

    def last_record(self) -> dict[str, Any] | None:
        with self._lock:
            return orjson.loads(self._ring[-1][1]) if self._ring else None

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.2):
                self.flush(retry_now=False)
        except BaseException:  # noqa: BLE001 - logged; the worker sees the thread gone and ends
            log.exception("fire log %s: writer thread died", self.path)

    def flush(self, *, retry_now: bool = True) -> bool:
        """Writes the fires not yet written; False (and :attr:`error` set) if
        the write failed, the records staying queued for the next try.
        ``retry_now=False`` respects the backoff of a failing file."""
        with self._flush_lock:
            if not retry_now and self.error is not None and time.monotonic() < self._retry_at:
                return False
            with self._lock:
                batch, self._unsaved = self._unsaved, []
            if not batch:
                return self.error is None
            try:
                self._write(batch)
            except (sqlite3.Error, OSError) as e:
                with self._lock:  # keep them, newest `size` at most
                    self._unsaved = (batch + self._unsaved)[-self.size :]
                self._failed(e)
                return False
            if self.error is not None:
                log.warning("fire log %s writable again after %.1f s", self.path, time.time() - (self.failing_since or 0))
            self.error, self.failing_since, self._delay = None, None, BACKOFF[0]
            return True

    def _failed(self, e: BaseException) -> None:
        text = f"fire log {self.path} cannot be written: {type(e).__name__}: {e}"
        if self.error is None:
            log.error("%s; retrying", text)
            self.failing_since = time.time()
        self.error = text
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, BACKOFF[1])
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _write(self, batch: list[tuple[int, bytes]]) -> None:
        # Only the newest `size` fires are kept: older ones in a busy batch
        # are never written, and trimming runs once the table has grown.
        batch = batch[-self.size :]
        newest = batch[-1][0]
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO fire VALUES (?, ?)", batch)
        self._written += len(batch)
        if self._written >= self.size:
            self._db.execute("DELETE FROM fire WHERE fire_id <= ?", (newest - self.size,))
            self._written = 0
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        self._db.close()

    @property
    def thread_alive(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()
