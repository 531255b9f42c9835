"""An in-process broker for stream accumulators of ``type="memory"``.

It keeps Kafka's delivery rules so that a test of a stream-fed graph tests
what production does: topics have partitions and offsets, a consumer group
has committed offsets (only ever what a durable checkpoint covered: the
source commits them, never the broker), a runtime reopened on the same store
resumes from its checkpointed positions, and the newest consumer of a group
takes its partitions over (the older one is revoked first, which checkpoints
and commits what it read).

    broker = MemoryBroker()
    fills = broker.topic("fills", partitions=2)
    with broker.install("MEM"):      # HEADRACE_VAR_MEM names this broker
        fills.append({"qty": 5})     # encoded with the topic's codec
        with hr.Runtime(graph, mode="thread", store="sqlite:///s.db") as rt:
            ...

for a graph declaring ``@hr.stream_accumulator(type="memory", topic="fills",
broker="MEM")``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import msgpack
import orjson

from headrace.sources.backend import Assignment, Partition, StreamConfig, StreamError

__all__ = ["MemoryBackend", "MemoryBroker", "MemoryMessage", "MemoryTopic"]

#: librdkafka's TIMESTAMP_CREATE_TIME: what ``message.timestamp()[0]`` says.
CREATE_TIME = 1

# Brokers by address: the backend finds its broker here from the address the
# broker variable resolves to (a consumer holds its broker; this map does not).
_BROKERS: weakref.WeakValueDictionary[str, MemoryBroker] = weakref.WeakValueDictionary()
_IDS = itertools.count(1)


class MemoryMessage:
    """One stored message, shaped like confluent-kafka's ``Message`` (what
    stream sources read): ``value()``, ``key()``, ``topic()``, ``partition()``,
    ``offset()``, ``timestamp()`` (``(1, milliseconds)``) and ``error()``."""

    __slots__ = ("_key", "_offset", "_partition", "_timestamp", "_topic", "_value")

    def __init__(self, value: bytes, key: bytes | None, topic: str, partition: int, offset: int, ms: int) -> None:
        self._value, self._key, self._topic = value, key, topic
        self._partition, self._offset, self._timestamp = partition, offset, ms

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (CREATE_TIME, self._timestamp)

    def error(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<MemoryMessage {self._topic}[{self._partition}]@{self._offset} {self._value[:40]!r}>"


def _bytes(value: Any, codec: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if codec == "msgpack":
        return bytes(msgpack.packb(value, use_bin_type=True))
    return orjson.dumps(value)


def _millis(timestamp: float | datetime | None) -> int:
    if timestamp is None:
        return int(time.time() * 1000)
    if isinstance(timestamp, datetime):
        aware = timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    return int(float(timestamp) * 1000)


class MemoryTopic:
    """A topic of a :class:`MemoryBroker` (made by ``broker.topic(...)``)."""

    def __init__(self, broker: MemoryBroker, name: str, partitions: int, codec: Literal["json", "msgpack"]) -> None:
        self.broker = broker
        self.name = name
        self.codec = codec
        self._log: list[list[MemoryMessage]] = [[] for _ in range(partitions)]
        self._round_robin = itertools.cycle(range(partitions))

    @property
    def partitions(self) -> int:
        return len(self._log)

    def append(
        self,
        value: Any,
        *,
        partition: int | None = None,
        key: str | bytes | None = None,
        timestamp: float | datetime | None = None,
    ) -> int:
        """Appends one message and returns its offset in its partition.

        ``value`` is encoded with the topic's codec (``json`` or ``msgpack``:
        match the accumulator's); ``bytes`` are stored as they are. The
        partition is ``partition``, else the key's hash (CRC32, stable across
        runs), else the next one in turn. ``timestamp`` (epoch seconds or a
        datetime; default now) is what ``message.timestamp()`` gives.

        Raises:
            ValueError: ``partition`` is not one of the topic's.
        """
        data = _bytes(value, self.codec)
        key_bytes = key.encode() if isinstance(key, str) else key
        return self.broker._append(self, data, partition, key_bytes, _millis(timestamp))

    def append_corrupt(self, data: bytes = b"\xff{not a payload", *, partition: int | None = None) -> int:
        """Appends bytes the accumulator cannot decode (an undecodable
        message is counted, logged and skipped, as from Kafka); returns its offset."""
        return self.broker._append(self, bytes(data), partition, None, _millis(None))

    def messages(self, partition: int = 0) -> list[MemoryMessage]:
        """The messages of ``partition``, in offset order (a copy)."""
        with self.broker._cond:
            return list(self._log[self._check(partition)])

    def end_offsets(self) -> dict[int, int]:
        """Each partition's next offset (its message count)."""
        with self.broker._cond:
            return {p: len(log) for p, log in enumerate(self._log)}

    def _check(self, partition: int) -> int:
        if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < len(self._log):
            raise ValueError(f"topic '{self.name}' has partitions 0..{len(self._log) - 1}, not {partition!r}")
        return partition

    def __repr__(self) -> str:
        return f"<MemoryTopic {self.name!r} partitions={self.partitions} messages={sum(self.end_offsets().values())}>"


class Installed:
    """``broker.install(variable)``: undone by ``uninstall()`` or on leaving a ``with``."""

    def __init__(self, broker: MemoryBroker, variable: str) -> None:
        self.broker = broker
        self.variable = variable
        self._env = "HEADRACE_VAR_" + variable
        self._before = os.environ.get(self._env)
        os.environ[self._env] = broker.address

    def uninstall(self) -> None:
        """Restores the variable's previous value."""
        if self._before is None:
            os.environ.pop(self._env, None)
        else:
            os.environ[self._env] = self._before

    def __enter__(self) -> MemoryBroker:
        return self.broker

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()


class MemoryBroker:
    """Topics, consumer groups and failures, in this process.

    Select it from a graph with ``@hr.stream_accumulator(type="memory",
    topic=..., broker="VAR")`` and ``broker.install("VAR")`` (sets
    ``HEADRACE_VAR_VAR`` to :attr:`address`; a context manager that undoes it).
    The runtime reads it in thread mode, like Kafka: see the module docstring.
    """

    def __init__(self) -> None:
        self.address = f"memory://broker-{next(_IDS)}"
        self._cond = threading.Condition()
        self._topics: dict[str, MemoryTopic] = {}
        self._committed: dict[str, dict[Partition, int]] = {}
        # Per group: its newest member, and the members holding partitions
        # (more than one only while the older is being revoked).
        self._owners: dict[str, MemoryBackend] = {}
        self._holders: dict[str, set[MemoryBackend]] = {}
        self._connected = True
        self._failures: list[BaseException] = []
        _BROKERS[self.address] = self

    # --- topics ----------------------------------------------------------------------

    def topic(self, name: str, partitions: int = 1, *, codec: Literal["json", "msgpack"] = "json") -> MemoryTopic:
        """The topic ``name``, created with ``partitions`` if it is new.

        Raises:
            ValueError: ``partitions`` is not a positive integer, ``codec`` is
                neither json nor msgpack, or the topic exists with another
                partition count.
        """
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"topic '{name}': partitions must be a positive integer, got {partitions!r}")
        if codec not in ("json", "msgpack"):
            raise ValueError(f"topic '{name}': codec must be 'json' or 'msgpack', got {codec!r}")
        with self._cond:
            found = self._topics.get(name)
            if found is None:
                found = self._topics[name] = MemoryTopic(self, name, partitions, codec)
            elif found.partitions != partitions:
                raise ValueError(f"topic '{name}' exists with {found.partitions} partition(s), not {partitions}")
            return found

    def _append(self, topic: MemoryTopic, data: bytes, partition: int | None, key: bytes | None, ms: int) -> int:
        with self._cond:
            if partition is not None:
                p = topic._check(partition)
            elif key is not None:
                p = zlib.crc32(key) % topic.partitions
            else:
                p = next(topic._round_robin)
            log = topic._log[p]
            log.append(MemoryMessage(data, key, topic.name, p, len(log), ms))
            self._cond.notify_all()
            return len(log) - 1

    # --- consumer groups ---------------------------------------------------------------

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """``{partition: next offset}`` the group committed for ``topic``
        (what a durable checkpoint covered); partitions never committed are absent."""
        with self._cond:
            return {p: o for (t, p), o in sorted(self._committed.get(group, {}).items()) if t == topic}

    def seek(self, group: str, topic: str, partition: int, offset: int) -> None:
        """Moves the group's position in ``topic[partition]`` to ``offset``:
        its live consumer reads from there next (re-reading what it had read:
        the accumulator sees those events again), and the committed offset,
        where a runtime without a checkpoint starts, is set to it. A runtime
        restored from a checkpoint resumes from the checkpoint's position."""
        with self._cond:
            found = self._topics.get(topic)
            if found is None:
                raise ValueError(f"no topic '{topic}' on {self.address}")
            found._check(partition)
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(f"seek: offset must be a non-negative integer, got {offset!r}")
            self._committed.setdefault(group, {})[(topic, partition)] = offset
            owner = self._owners.get(group)
            if owner is not None and (topic, partition) in owner._positions:
                owner._positions[(topic, partition)] = offset
            self._cond.notify_all()

    # --- failures ----------------------------------------------------------------------

    def fail_next_receive(self, n: int = 1, error: BaseException | None = None) -> None:
        """The next ``n`` reads by any consumer raise ``error`` (default: a
        :class:`~headrace.StreamError`); the source logs each and reads on,
        losing nothing."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"fail_next_receive: n must be a positive integer, got {n!r}")
        with self._cond:
            for _ in range(n):
                self._failures.append(error if error is not None else StreamError(f"{self.address}: injected receive failure"))

    def disconnect(self) -> None:
        """The broker becomes unreachable: reads return nothing, commits and
        new connections fail, and sources report health ``disconnected``.
        Appends still land (producers are not the consumer's concern)."""
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def reconnect(self) -> None:
        """The broker is back: sources go ``live`` and read what was appended meanwhile."""
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    # --- selection ---------------------------------------------------------------------

    def install(self, variable: str = "MEMORY_BROKER") -> Installed:
        """Makes ``broker=variable`` on a ``type="memory"`` stream accumulator
        name this broker: sets ``HEADRACE_VAR_<variable>`` to :attr:`address`.
        The result is a context
        manager; leaving it (or ``.uninstall()``) restores the variable."""
        return Installed(self, variable)

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.address} topics={sorted(self._topics)}>"


class MemoryBackend:
    """The ``memory`` stream backend: one consumer of a :class:`MemoryBroker`
    group, holding every partition of its topic (see
    :class:`~headrace.sources.StreamBackend`)."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        broker = _BROKERS.get(config.broker)
        if broker is None:
            raise StreamError(
                f"no memory broker at '{config.broker}' (from HEADRACE_VAR_{config.broker_variable}); "
                "install one with headrace.testing.MemoryBroker().install(...)"
            )
        self._broker = broker
        self._assignment: Assignment | None = None
        # Next offset to read, per assigned partition (guarded by the broker's lock).
        self._positions: dict[Partition, int] = {}
        self._assigned = False
        self._turn = 0

    def connect(self, assignment: Assignment) -> None:
        b, cfg = self._broker, self.config
        with b._cond:
            if not b._connected:
                raise StreamError(f"cannot reach memory broker {b.address} (disconnected)")
            if cfg.topic not in b._topics:
                raise StreamError(f"topic '{cfg.topic}' does not exist on memory broker {b.address}")
            # The newest member takes the group's partitions, once the previous
            # holder has been revoked (on its own thread, at its next read) and
            # has committed what it read: see `_assign`.
            b._owners[cfg.group] = self
            self._assignment = assignment
            b._cond.notify_all()

    def _assign(self) -> bool:
        """Takes the partitions once no other member holds them (False: not yet)."""
        b, cfg = self._broker, self.config
        with b._cond:
            if any(m is not self for m in b._holders.get(cfg.group, ())):
                return False
            b._holders.setdefault(cfg.group, set()).add(self)
            partitions = [(cfg.topic, p) for p in range(b._topics[cfg.topic].partitions)]
        assert self._assignment is not None
        starts = self._assignment.assigned(partitions)
        with b._cond:
            committed = b._committed.get(cfg.group, {})
            log = b._topics[cfg.topic]._log
            self._positions = {p: starts[p] if p in starts else self._fresh(p, committed, log[p[1]]) for p in partitions}
            self._assigned = True
        return True

    def _fresh(self, p: Partition, committed: dict[Partition, int], log: list[MemoryMessage]) -> int:
        """Where a partition with no checkpointed position starts (``start``),
        as Kafka's backend does."""
        start = self.config.start
        if start == "committed":
            return committed.get(p, 0)
        if start == "earliest":
            return 0
        if start == "latest":
            return len(log)
        ms = int(float(start) * 1000)
        return next((m.offset() for m in log if m.timestamp()[1] >= ms), len(log))

    def _release(self) -> None:
        holders = self._broker._holders.get(self.config.group)
        if holders is not None:
            holders.discard(self)
        self._positions = {}
        self._broker._cond.notify_all()

    def receive(self, max_messages: int, timeout: float) -> list[Any]:
        b = self._broker
        with b._cond:
            if b._failures:
                raise b._failures.pop(0)
            owner = b._owners.get(self.config.group) is self
            revoke = not owner and self._assigned and bool(self._positions)
        if revoke:
            assert self._assignment is not None
            self._assignment.revoked(list(self._positions))
            with b._cond:
                self._release()
            return []
        if not owner or (not self._assigned and not self._assign()):
            time.sleep(timeout)
            return []
        with b._cond:
            b._cond.wait_for(lambda: b._connected and self._available(), timeout)
            return self._take(max_messages) if b._connected else []

    def _available(self) -> bool:
        topic = self._broker._topics[self.config.topic]
        return any(o < len(topic._log[p]) for (_, p), o in self._positions.items())

    def _take(self, max_messages: int) -> list[Any]:
        # Partitions take turns, so that a busy one does not starve the others.
        topic = self._broker._topics[self.config.topic]
        order = sorted(self._positions)
        self._turn = (self._turn + 1) % max(len(order), 1)
        out: list[Any] = []
        for part in order[self._turn :] + order[: self._turn]:
            start = self._positions[part]
            chunk = topic._log[part[1]][start : start + max_messages - len(out)]
            out.extend(chunk)
            self._positions[part] = start + len(chunk)
            if len(out) >= max_messages:
                break
        return out

    def commit(self, positions: Mapping[Partition, int]) -> None:
        b = self._broker
        with b._cond:
            if not b._connected:
                raise StreamError(f"cannot commit to memory broker {b.address} (disconnected)")
            b._committed.setdefault(self.config.group, {}).update(positions)

    def connected(self) -> bool:
        return self._broker._connected

    def close(self) -> None:
        with self._broker._cond:
            if self._broker._owners.get(self.config.group) is self:
                del self._broker._owners[self.config.group]
            self._release()
