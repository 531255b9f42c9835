"""The checkpoint writer: takes sealed snapshots from the processor and
writes them to the store on its own thread, so the processor never waits for
disk or network.

Every snapshot is complete, so when writes fall behind only the newest pending
one is written (group commit by coalescing), and commits are at least
``min_interval`` apart unless someone waits in ``checkpoint()``: each commit
takes the interpreter lock a few times, and on a busy graph a commit per
snapshot measurably slowed the processor for no gain in durability. A failing
store is retried with backoff, and the newest snapshot is what gets written
once it is back.

A checkpoint the engine could not build (a state value the codec cannot hold)
is reported through ``fail``: counted, logged with the value's path and type
(the first failure, then at most once per ``log_every`` seconds while they
last, then the recovery), shown as health "failing", and raised at once to
whoever waits for a checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from headrace.checkpoint.store import CheckpointStore
from headrace.errors import CheckpointError, FencedError, UncheckpointableError

__all__ = ["CheckpointWriter", "Position"]

#: (accumulator, topic, partition, next offset)
Position = tuple[str, str, int, int]

log = logging.getLogger("headrace")


class CheckpointWriter:
    def __init__(
        self,
        store: CheckpointStore,
        tenant: str,
        graph: str,
        *,
        backoff: tuple[float, float] = (0.05, 2.0),
        min_interval: float = 0.005,
        log_every: float = 60.0,
    ) -> None:
        self.store = store
        self._min_interval = min_interval
        self._waiters = 0
        self._last_commit = 0.0
        self.tenant = tenant
        self.graph = graph
        self._backoff = backoff
        self._cond = threading.Condition()
        self._pending: tuple[int, dict[str, bytes], list[Position]] | None = None
        self._listeners: list[Callable[[list[Position]], None]] = []
        self._durable_id = 0
        self._failed_id = 0
        self._failure: str | None = None
        # The last checkpoint the engine could not build: (path, type) of the value.
        self._unsupported: tuple[str, str] | None = None
        self._build_failing_since: float | None = None
        self._build_failures_unlogged = 0
        self._last_build_log = 0.0
        self._log_every = log_every
        self._closing = False
        self._close_deadline = float("inf")
        self._count = 0
        self._failures = 0
        self._last_at: float | None = None
        self._last_bytes = 0
        self._last_seconds: float | None = None
        self._store_down_since: float | None = None
        self._fenced: FencedError | None = None
        self._thread = threading.Thread(target=self._run, name=f"headrace-checkpoint-{graph}", daemon=True)
        self._thread.start()

    # --- called by the engine (processor thread, interpreter attached: keep short) ---

    def submit(self, checkpoint_id: int, components: dict[str, bytes], positions: list[Position] | None = None) -> None:
        with self._cond:
            self._pending = (checkpoint_id, components, list(positions or ()))
            if self._build_failing_since is not None:
                log.warning(
                    "graph '%s': checkpoints taken again after %.1f s of failures",
                    self.graph,
                    time.time() - self._build_failing_since,
                )
                self._build_failing_since = None
                self._unsupported = None
            self._cond.notify_all()

    def on_durable(self, listener: Callable[[list[Position]], None]) -> None:
        """Calls ``listener(positions)`` (on the writer thread) after each
        checkpoint is durable, with the stream positions it covers."""
        self._listeners.append(listener)

    def fail(self, checkpoint_id: int, message: str, path: str | None = None, value_type: str | None = None) -> None:
        """The engine could not build checkpoint ``checkpoint_id``: a state
        value of an unsupported type (at ``path``, of ``value_type``), or the
        snapshot could not be handed over."""
        now = time.monotonic()
        with self._cond:
            self._failures += 1
            self._failed_id = max(self._failed_id, checkpoint_id)
            self._failure = message
            self._unsupported = (path, value_type) if path is not None and value_type is not None else None
            if self._build_failing_since is None:
                self._build_failing_since = time.time()
            if now - self._last_build_log >= self._log_every:
                more = self._build_failures_unlogged
                self._build_failures_unlogged = 0
                self._last_build_log = now
                log.error(
                    "graph '%s': checkpoint %d not taken: %s%s",
                    self.graph,
                    checkpoint_id,
                    message,
                    f" ({more} more failure(s) since the last line)" if more else "",
                )
            else:
                self._build_failures_unlogged += 1
            self._cond.notify_all()

    def final_failure(self) -> CheckpointError | None:
        """Why the newest checkpoint was not taken, if it was not (after ``close``:
        the final one), as the exception to raise."""
        with self._cond:
            if self._failed_id <= self._durable_id or self._failure is None:
                return None
            return self._error(f"graph '{self.graph}': final checkpoint not taken: {self._failure}")

    def _error(self, message: str) -> CheckpointError:
        """Called holding the condition."""
        if self._unsupported is not None:
            path, value_type = self._unsupported
            return UncheckpointableError(message, path=path, value_type=value_type)
        return CheckpointError(message)

    # --- called by users of the runtime ---

    def wait(self, after_id: int, timeout: float | None = None) -> None:
        """Waits until a checkpoint newer than ``after_id`` is durable.

        Raises:
            CheckpointError: it could not be taken or written before ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            self._cond.notify_all()  # a waiter lifts the commit interval
            try:
                self._wait_locked(after_id, timeout, deadline)
            finally:
                self._waiters -= 1

    def _wait_locked(self, after_id: int, timeout: float | None, deadline: float | None) -> None:
        """Called holding the condition."""
        while self._durable_id <= after_id:
            if self._fenced is not None:
                raise self._fenced
            if self._failed_id > after_id and self._pending is None:
                raise self._error(f"graph '{self.graph}': checkpoint failed: {self._failure}")
            if self._closing and not self._thread.is_alive():
                raise CheckpointError(f"graph '{self.graph}': checkpoint writer stopped: {self._failure}")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise CheckpointError(
                    f"graph '{self.graph}': checkpoint not durable after {timeout} s"
                    + (f" (store {self.store.describe()}: {self._failure})" if self._failure else "")
                )
            self._cond.wait(remaining)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "store": self.store.describe(),
                "health": "fenced"
                if self._fenced
                else "failing"
                if self._store_down_since is not None or self._build_failing_since is not None
                else "ok",
                "checkpoints": self._count,
                "failures": self._failures,
                "last_checkpoint_at": self._last_at,
                "last_checkpoint_bytes": self._last_bytes,
                "last_checkpoint_seconds": self._last_seconds,
                "last_error": self._failure,
                "pending": self._pending is not None,
            }

    def close(self, timeout: float = 30.0) -> None:
        """Writes what is pending, then stops. A store still failing after
        ``timeout`` loses only that last snapshot (logged)."""
        with self._cond:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 5)

    # --- the writer thread ---

    def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
                # Let snapshots coalesce for a moment, unless someone is waiting.
                while not self._closing and self._waiters == 0:
                    rest = self._last_commit + self._min_interval - time.monotonic()
                    if rest <= 0:
                        break
                    self._cond.wait(rest)
                assert self._pending is not None
                checkpoint_id, components, positions = self._pending
            started = time.monotonic()
            try:
                self.store.save(self.tenant, self.graph, components)
            except FencedError as e:
                # A newer runtime owns the graph: never retried, never written.
                log.error("graph '%s': %s", self.graph, e)
                with self._cond:
                    self._fenced, self._failure, self._pending = e, str(e), None
                    self._cond.notify_all()
                return
            except Exception as e:  # noqa: BLE001 - any store failure is retried
                text = f"{type(e).__name__}: {e}".strip()
                with self._cond:
                    self._failures += 1
                    self._failure = f"store {self.store.describe()} failed: {text}"
                    if self._store_down_since is None:
                        self._store_down_since = time.time()
                        log.error("graph '%s': checkpoint store failing: %s", self.graph, text)
                    if self._closing and time.monotonic() >= self._close_deadline:
                        log.error("graph '%s': giving up on checkpoint %d at close", self.graph, checkpoint_id)
                        self._pending = None
                        self._cond.notify_all()
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            elapsed = time.monotonic() - started
            self._last_commit = time.monotonic()
            delay = self._backoff[0]
            with self._cond:
                if self._store_down_since is not None:
                    log.warning(
                        "graph '%s': checkpoint store back after %.1f s", self.graph, time.time() - self._store_down_since
                    )
                self._store_down_since = None
                self._durable_id = max(self._durable_id, checkpoint_id)
                if self._pending is not None and self._pending[0] == checkpoint_id:
                    self._pending = None
                self._count += 1
                self._last_at = time.time()
                self._last_bytes = sum(len(v) for v in components.values())
                self._last_seconds = elapsed
                self._failure = None if self._failed_id <= checkpoint_id else self._failure
                self._cond.notify_all()
            for listener in self._listeners:
                try:
                    listener(positions)
                except Exception:  # noqa: BLE001 - a listener must not stop the writer
                    log.exception("graph '%s': checkpoint listener failed", self.graph)
