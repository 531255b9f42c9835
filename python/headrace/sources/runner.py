"""Runs one stream accumulator's source on its own thread (thread mode).

Delivery: the consumer never auto-commits. Messages go into the engine with
their positions; a checkpoint saves state and positions together; only
positions a durable checkpoint covers are committed to the broker. On start,
partitions are read from the checkpointed positions. Before partitions are
revoked in a rebalance, a checkpoint is forced and their positions committed.
At-least-once end to end; exactly-once for the engine's own state.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from headrace.sources.backend import (
    Assignment,
    MessageError,
    Partition,
    StreamBackend,
    StreamConfig,
    resolve_broker,
)
from headrace.sources.registry import stream_backend
from headrace.sources.target import SourceTarget

if TYPE_CHECKING:
    from headrace.accumulators import Accumulator
    from headrace.checkpoint.writer import CheckpointWriter, Position
    from headrace.sources.kafka import DeadLetterTopic

__all__ = ["StreamRunner"]

log = logging.getLogger("headrace")

BATCH = 1000
POLL_SECONDS = 0.05


def _with_instance(options: dict[str, Any], instance: str | None, accumulator: str) -> dict[str, Any]:
    if instance is not None and "group.instance.id" not in options:
        options["group.instance.id"] = f"{instance}.{accumulator}"
    return options


class StreamRunner:
    def __init__(self, acc: Accumulator, writer: CheckpointWriter | None, instance: str | None = None) -> None:
        """``instance``: a stable id of the process's place (a deployed
        graph): its consumers join with static membership
        (``group.instance.id`` = ``instance.accumulator``), so a restarted
        process takes its partitions back at once instead of after the
        session timeout. A ``group.instance.id`` in the accumulator's
        ``config`` wins."""
        cfg = acc.config
        self.name = acc.name
        self.config = StreamConfig(
            accumulator=acc.name,
            type=str(cfg["type"]),
            topic=str(cfg["topic"]),
            group=str(cfg["group"]),
            broker=resolve_broker(str(cfg["broker"]), acc.name),
            broker_variable=str(cfg["broker"]),
            options=_with_instance(dict(cfg["config"]), instance if cfg.get("static_membership", True) else None, acc.name),
            start=cfg.get("start", "committed"),
        )
        self._factory = stream_backend(self.config.type)
        # The runtime this source feeds, handed over by `start`.
        self._runtime: Callable[[], SourceTarget | None] = lambda: None
        self._has_store = writer is not None
        # Positions the restored checkpoint holds: where reading starts, once.
        self._restored: dict[Partition, int] = {}
        self._lock = threading.Lock()
        self._durable: dict[Partition, int] = {}
        self._committed: dict[Partition, int] = {}
        self._assigned_now: set[Partition] = set()
        self._stop = threading.Event()
        self._backend: StreamBackend | None = None
        self._dead_letters: DeadLetterTopic | None = None
        if cfg.get("dead_letter_topic"):
            # A Kafka topic, whatever the backend reads from.
            from headrace.sources.kafka import DeadLetterTopic

            self._dead_letters = DeadLetterTopic(self.config, str(cfg["dead_letter_topic"]))
        if writer is not None:
            writer.on_durable(self._on_durable)
        self._thread = threading.Thread(target=self._run, name=f"headrace-source-{acc.name}", daemon=True)

    def start(self, runtime: SourceTarget) -> None:
        """Starts consuming into ``runtime``, from the positions its restored
        checkpoint holds."""
        self._runtime = weakref.ref(runtime)
        self._restored = {(t, p): o for a, t, p, o in runtime.restored_positions() if a == self.name}
        self._thread.start()

    def stop_reading(self, timeout: float = 10.0) -> None:
        """Stops consuming (pushes stop); the consumer stays open for a final commit."""
        self._stop.set()
        self._thread.join(timeout)

    def close(self) -> None:
        """Commits what the final checkpoint covered, then leaves the group."""
        backend, self._backend = self._backend, None
        if backend is None:
            return
        try:
            self._commit(backend)
        finally:
            backend.close()
            if self._dead_letters is not None:
                self._dead_letters.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "type": self.config.type,
                "topic": self.config.topic,
                "group": self.config.group,
                "broker": self.config.broker,
                "partitions": sorted(self._assigned_now),
                "committed": {f"{t}[{p}]": o for (t, p), o in sorted(self._committed.items())},
            }

    def undecodable(self, data: bytes, topic: str, partition: int, offset: int, error: str) -> None:
        if self._dead_letters is not None:
            self._dead_letters.send(data, topic, partition, offset, error)

    # --- callbacks -------------------------------------------------------------------

    def _on_durable(self, positions: list[Position]) -> None:
        with self._lock:
            for acc, topic, partition, offset in positions:
                if acc == self.name:
                    self._durable[(topic, partition)] = offset

    def _assigned(self, partitions: list[Partition]) -> dict[Partition, int]:
        with self._lock:
            # The checkpoint decides where a restored partition resumes (the broker's
            # committed offset can only be behind it). Only once: a partition that
            # comes back later resumes where its last owner committed.
            starts = {p: self._restored.pop(p) for p in partitions if p in self._restored}
            self._assigned_now.update(partitions)
        log.info("source '%s': assigned %s (from checkpoint: %s)", self.name, partitions, starts)
        return starts

    def _revoked(self, partitions: list[Partition]) -> None:
        rt = self._runtime()
        # A closed runtime has taken its final checkpoint already.
        if rt is not None and self._has_store and not rt.closed:
            try:
                rt.checkpoint(timeout=30)  # everything read so far is now durable
            except Exception as e:  # noqa: BLE001 - the new owner will re-read; state stays consistent
                log.error("source '%s': checkpoint before revocation failed: %s", self.name, e)
        if self._backend is not None:
            self._commit(self._backend, only=set(partitions))
        with self._lock:
            for p in partitions:
                self._assigned_now.discard(p)
                self._durable.pop(p, None)
                self._committed.pop(p, None)
                self._restored.pop(p, None)

    # --- the thread ------------------------------------------------------------------

    def _commit(self, backend: StreamBackend, only: set[Partition] | None = None) -> None:
        with self._lock:
            due = {
                p: o
                for p, o in self._durable.items()
                if self._committed.get(p) != o and (only is None or p in only)
            }
        if not due:
            return
        try:
            backend.commit(due)
        except Exception as e:  # noqa: BLE001 - retried with the next durable checkpoint
            log.warning("source '%s': commit failed (retried later): %s", self.name, e)
            return
        with self._lock:
            self._committed.update(due)

    def _health(self, state: str, error: str | None = None) -> bool:
        rt = self._runtime()
        if rt is None or rt.closed:
            return False
        rt.set_health(self.name, state, error)
        return True

    def _connect(self) -> StreamBackend | None:
        delay, last = 0.1, None
        while not self._stop.is_set():
            backend = None
            try:
                backend = self._factory(self.config)
                backend.connect(Assignment(self._assigned, self._revoked))
                return backend
            except Exception as e:  # noqa: BLE001 - retried: the broker or topic may appear
                text = str(e)
                if text != last:
                    log.error("source '%s': %s (retrying)", self.name, text)
                    last = text
                if not self._health("disconnected", text):
                    return None
                if backend is not None:
                    backend.close()
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)
        return None

    def _run(self) -> None:
        if not self._health("connecting"):
            return
        backend = self._connect()
        if backend is None:
            return
        self._backend = backend
        # Live once partitions are assigned: until then nothing is read (a
        # group join takes seconds), and "live" would say otherwise.
        live = False
        # A message error said the source is gone (a deleted topic): the
        # messages still buffered do not make it live again.
        lost = False
        while not self._stop.is_set():
            self._commit(backend)
            try:
                messages = backend.receive(BATCH, POLL_SECONDS)
            except Exception as e:  # noqa: BLE001 - keep consuming
                log.error("source '%s': receive failed: %s", self.name, e)
                messages = []
            if messages:
                rt = self._runtime()
                if rt is None or rt.closed:
                    return
                for failed in rt.push_messages(self.name, messages):
                    lost |= self._message_error(backend, failed)
                if not live and not lost:
                    live = self._health("live")
            elif not backend.connected():
                if live:
                    live = not self._health("disconnected", f"lost {self.config.type} broker {self.config.broker}")
            elif not self._has_partitions():
                if live:
                    live = not self._health("connecting")
            elif not live and not lost:
                live = self._health("live")

    def _has_partitions(self) -> bool:
        with self._lock:
            return bool(self._assigned_now)

    def _message_error(self, backend: StreamBackend, message: Any) -> bool:
        """Logs a failed message; True if it says the source is gone."""
        describe = getattr(backend, "message_error", None)
        error: MessageError = describe(message) if describe is not None else MessageError(message.error().str())
        if error.text is not None:
            log.warning("source '%s': %s", self.name, error.text)
        if error.lost is not None:
            self._health("disconnected", error.lost)
            return True
        return False
