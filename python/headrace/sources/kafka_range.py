"""Reading a range of a Kafka topic once, without a consumer group: every
partition from a start position to an end position, each given as an offset
or a time. Replay runs graphs over such a range (``hr.replay(graph,
KafkaRange(...))``), in message-timestamp order.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from headrace.errors import SettingError
from headrace.sources.backend import StreamError

if TYPE_CHECKING:
    from confluent_kafka import Consumer

__all__ = ["KafkaRange", "RangeMessage"]

#: A position: an offset (int), or a time (float epoch seconds or a datetime).
Position = int | float | datetime

#: How long to wait for the broker's metadata and for each poll.
TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RangeMessage:
    """One message of the range."""

    topic: str
    partition: int
    offset: int
    #: The message's timestamp, epoch seconds.
    time: float
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class KafkaRange:
    """Messages of ``topic`` on ``broker`` (``host:port``) from ``start``
    (default: the beginning) to ``end`` (default: the end when reading
    starts), end excluded. Each is an offset (int, the same for every
    partition) or a time (float epoch seconds or a datetime: the first message
    at or after it, by message timestamp)."""

    topic: str
    broker: str
    start: Position | None = None
    end: Position | None = None
    #: The accumulator the messages go to (default: the graph's one stream
    #: accumulator reading ``topic``).
    accumulator: str | None = None
    #: Extra consumer settings (security, for instance).
    config: tuple[tuple[str, Any], ...] = ()

    def messages(self) -> Iterator[RangeMessage]:
        """Every message of the range, merged across partitions in timestamp
        order (ties: partition, then offset; within a partition, offset
        order, whatever the timestamps say)."""
        consumer = self._consumer()
        try:
            bounds = self._bounds(consumer)
            readers = [self._partition(consumer, p, lo, hi) for p, (lo, hi) in bounds.items() if lo < hi]
            yield from heapq.merge(*readers, key=lambda m: (m.time, m.partition, m.offset))
        finally:
            consumer.close()

    def _consumer(self) -> Consumer:
        """A consumer in a group of its own that commits nothing: reading a
        range moves no group's positions. (confluent-kafka is imported here,
        when a range is read, not with ``headrace``.)"""
        from confluent_kafka import Consumer

        from headrace.sources.kafka import kafka_log

        return Consumer(
            {
                "bootstrap.servers": self.broker,
                "group.id": f"headrace-range-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "logger": kafka_log,
                **dict(self.config),
            }
        )

    def _bounds(self, consumer: Consumer) -> dict[int, tuple[int, int]]:
        from confluent_kafka import TopicPartition

        metadata = consumer.list_topics(self.topic, timeout=TIMEOUT).topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise StreamError(f"topic '{self.topic}' on {self.broker} cannot be read: {getattr(metadata, 'error', None)}")
        bounds: dict[int, tuple[int, int]] = {}
        for p in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=TIMEOUT)
            lo = self._offset(consumer, p, self.start, low, high)
            hi = self._offset(consumer, p, self.end, high, high)
            bounds[p] = (max(lo, low), min(hi, high))
        return bounds

    def _offset(self, consumer: Consumer, partition: int, position: Position | None, default: int, high: int) -> int:
        from confluent_kafka import OFFSET_END, TopicPartition

        if position is None:
            return default
        if isinstance(position, bool):
            raise SettingError(f"a range position is an offset or a time, got {position!r}", setting="range")
        if isinstance(position, int):
            if position < 0:
                raise SettingError(f"a range offset cannot be negative, got {position}", setting="range")
            return position
        seconds = position.timestamp() if isinstance(position, datetime) else float(position)
        found = consumer.offsets_for_times([TopicPartition(self.topic, partition, int(seconds * 1000))], timeout=TIMEOUT)
        offset = found[0].offset
        # No message at or after that time: the partition's end.
        return high if offset in (OFFSET_END, -1) else int(offset)

    def _partition(self, consumer: Consumer, partition: int, lo: int, hi: int) -> Iterator[RangeMessage]:
        """One partition's messages from ``lo`` to ``hi`` (excluded), read
        by a consumer of its own so that partitions interleave freely."""
        from confluent_kafka import KafkaError, TopicPartition

        reader = self._consumer()
        try:
            reader.assign([TopicPartition(self.topic, partition, lo)])
            next_offset = lo
            while next_offset < hi:
                batch = reader.consume(min(1000, hi - next_offset), TIMEOUT)
                if not batch:
                    raise StreamError(
                        f"topic '{self.topic}' partition {partition}: no message at offset {next_offset} "
                        f"within {TIMEOUT:.0f} s (range ends at {hi})"
                    )
                for m in batch:
                    error = m.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            # The end: what is left before `hi` is no message
                            # (a transaction marker, a compacted gap).
                            return
                        raise StreamError(f"topic '{self.topic}' partition {partition}: {error.str()}")
                    offset = m.offset() or 0  # a message (not an error) always has one
                    if offset >= hi:
                        return
                    _, ms = m.timestamp()
                    yield RangeMessage(self.topic, partition, offset, ms / 1000, m.key(), m.value() or b"")
                    next_offset = offset + 1
        finally:
            reader.close()
