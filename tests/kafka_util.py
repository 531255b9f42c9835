"""Helpers for tests against the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def new_topic(broker: str, partitions: int = 1, name: str | None = None) -> str:
    topic = name or f"t-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    return topic


def produce(broker: str, topic: str, values: Iterable[bytes], partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 5})
    extra = {} if partition is None else {"partition": partition}
    for value in values:
        while True:
            try:
                producer.produce(topic, value, **extra)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.1)
    assert producer.flush(60) == 0


def read_all(broker: str, topic: str, count: int, timeout: float = 30) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer(
        {"bootstrap.servers": broker, "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                if m.error() is None:
                    out.append((m.value(), dict(m.headers() or [])))
    finally:
        consumer.close()
    return out


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
