"""The Kafka backend: confluent-kafka's synchronous consumer, on the source's
own thread (the asyncio wrapper costs about 60x more per message)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from headrace._logging import RepeatFilter
from headrace.sources.backend import Assignment, MessageError, Partition, StreamConfig, StreamError

__all__ = ["DeadLetterTopic", "KafkaBackend"]

log = logging.getLogger("headrace")
#: librdkafka's own lines and its error callbacks: an unreachable broker
#: writes the same few lines dozens of times a second, so each distinct line
#: passes once per 10 s here (with a count of the ones dropped), whatever
#: handlers the application has.
kafka_log = logging.getLogger("headrace.kafka")
kafka_log.addFilter(RepeatFilter(10.0))

# Chosen for latency: the broker answers a fetch as soon as one byte is there,
# and waits at most 10 ms when there is none (librdkafka's default is 500 ms).
_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "fetch.wait.max.ms": 10,
    "fetch.min.bytes": 1,
    "socket.keepalive.enable": True,
}
_LOST = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT}  # noqa: SLF001 - librdkafka's codes


class KafkaBackend:
    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._down = threading.Event()
        settings: dict[str, Any] = dict(_DEFAULTS)
        settings.update(config.options)
        # These carry the delivery guarantee: not overridable.
        settings.update(
            {
                "bootstrap.servers": config.broker,
                "group.id": config.group,
                "enable.auto.commit": False,
                "error_cb": self._on_error,
                "logger": kafka_log,
            }
        )
        self._consumer = Consumer(settings)
        self._assignment: Assignment | None = None

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in _LOST:
            self._down.set()
        kafka_log.warning("kafka (accumulator '%s'): %s", self.config.accumulator, error.str())

    def _check_topic(self) -> None:
        topic, broker = self.config.topic, self.config.broker
        try:
            metadata = self._consumer.list_topics(topic, timeout=5)
        except KafkaException as e:
            raise StreamError(f"cannot reach Kafka broker {broker}: {e}") from e
        found = metadata.topics.get(topic)
        if found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            raise StreamError(f"topic '{topic}' does not exist on Kafka broker {broker}")
        if found.error is not None:
            raise StreamError(f"topic '{topic}' on Kafka broker {broker}: {found.error.str()}")
        self._down.clear()

    def connect(self, assignment: Assignment) -> None:
        self._check_topic()
        self._assignment = assignment
        self._consumer.subscribe(
            [self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._assignment is not None
        starts = self._assignment.assigned([(p.topic, p.partition) for p in partitions])
        fresh = []
        for p in partitions:
            if (p.topic, p.partition) in starts:
                p.offset = starts[(p.topic, p.partition)]
            else:
                fresh.append(p)
        self._start_fresh(consumer, fresh)
        consumer.incremental_assign(partitions)

    def _start_fresh(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Where partitions the checkpoint holds no position for start
        (``start``); "committed" leaves them to the group's committed offset
        (else ``auto.offset.reset``: the beginning)."""
        start = self.config.start
        if not partitions or start == "committed":
            return
        if start in ("earliest", "latest"):
            for p in partitions:
                p.offset = OFFSET_BEGINNING if start == "earliest" else OFFSET_END
            return
        ms = int(float(start) * 1000)
        found = consumer.offsets_for_times([TopicPartition(p.topic, p.partition, ms) for p in partitions], timeout=10)
        for p, f in zip(partitions, found, strict=True):
            # No message at or after that time: from the end.
            p.offset = OFFSET_END if f.offset < 0 else f.offset

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._assignment is not None
        self._assignment.revoked([(p.topic, p.partition) for p in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them; nothing to commit.
        log.warning("kafka (accumulator '%s'): partitions lost: %s", self.config.accumulator, partitions)

    def receive(self, max_messages: int, timeout: float) -> list[Any]:
        # consume(n, timeout) waits for n messages *or* the timeout: a trickle
        # would wait the whole timeout each time. Block for the first message
        # only, then take what is already there without waiting.
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        self._down.clear()
        messages: list[Any] = [first]
        if max_messages > 1:
            messages.extend(self._consumer.consume(max_messages - 1, 0))
        return messages

    def message_error(self, message: Any) -> MessageError:
        error = message.error()
        if error.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001
            return MessageError(None)
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            topic, broker = self.config.topic, self.config.broker
            return MessageError(error.str(), lost=f"topic '{topic}' no longer exists on {broker}")
        return MessageError(error.str())

    def commit(self, positions: Mapping[Partition, int]) -> None:
        if positions:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()], asynchronous=False
            )

    def connected(self) -> bool:
        if self._down.is_set():
            try:
                self._check_topic()  # a metadata round trip: the broker is back when it answers
            except StreamError:
                return False
        return True

    def close(self) -> None:
        self._consumer.close()


class DeadLetterTopic:
    """Undecodable messages, forwarded as they were, with where they came from."""

    def __init__(self, config: StreamConfig, topic: str) -> None:
        self.topic = topic
        self._producer = Producer({"bootstrap.servers": config.broker, "logger": kafka_log})

    def send(self, data: bytes, topic: str, partition: int, offset: int, error: str) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            ("headrace.source", f"{topic}[{partition}]@{offset}".encode()),
            ("headrace.error", error.encode()[:1024]),
        ]
        self._producer.produce(self.topic, value=data, headers=headers)
        self._producer.poll(0)

    def close(self) -> None:
        self._producer.flush(10)
