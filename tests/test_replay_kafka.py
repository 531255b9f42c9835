"""Replaying a range of a Kafka topic (the real broker): messages at their
timestamps, merged across partitions, on a simulated clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer

import headrace as hr
from headrace.replay import KafkaRange
from kafka_util import new_topic

T0 = 1_767_323_045.0


def publish(broker: str, topic: str, rows: list[tuple[float, int, dict[str, Any]]]) -> None:
    """``(time, partition, value)`` rows, with those timestamps."""
    producer = Producer({"bootstrap.servers": broker})
    for t, partition, value in rows:
        producer.produce(topic, json.dumps(value).encode(), partition=partition, timestamp=int(t * 1000))
    assert producer.flush(30) == 0


def graph(topic: str) -> hr.ComputationGraph:
    @hr.stream_accumulator(type="kafka", topic=topic, broker="KAFKA_BROKER")
    def fills(event: Any) -> Any:
        return event["qty"]

    @hr.batch_accumulator(flush_interval="1s")
    def minutes(events: list[Any]) -> Any:
        return len(events)

    g = hr.ComputationGraph("ranged", accumulators=[fills, minutes], criteria=hr.when_any(fills))

    @g.node
    def seen(fills: Any) -> Any:
        return fills

    return g


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_a_topic_range_replays_in_timestamp_order(kafka_broker: str, mode: str) -> None:
    topic = new_topic(kafka_broker, partitions=2)
    # Partition 1's messages come between partition 0's, by time.
    rows = [(T0 + k, k % 2, {"qty": k}) for k in range(10)]
    publish(kafka_broker, topic, rows)
    whole = hr.replay(graph(topic), KafkaRange(topic, kafka_broker), mode=mode)  # type: ignore[arg-type]
    assert [f.outputs["seen"] for f in whole] == list(range(10))
    assert [round(f.started_at - T0, 3) for f in whole] == [float(k) for k in range(10)]
    by_time = hr.replay(graph(topic), KafkaRange(topic, kafka_broker, start=T0 + 3, end=datetime.fromtimestamp(T0 + 7, UTC)))
    assert [f.outputs["seen"] for f in by_time] == [3, 4, 5, 6]
    by_offset = hr.replay(graph(topic), KafkaRange(topic, kafka_broker, start=2, end=4))
    assert [f.outputs["seen"] for f in by_offset] == [4, 5, 6, 7]  # offsets 2 and 3 of each partition


def test_range_errors_are_named(kafka_broker: str) -> None:
    topic = new_topic(kafka_broker)
    g = hr.ComputationGraph("other", accumulators=[hr.passthrough("x")])
    g.node(name="n")(lambda x: x)
    with pytest.raises(hr.HeadraceError, match=f"no stream accumulator.*reading topic '{topic}'"):
        hr.replay(g, KafkaRange(topic, kafka_broker))
    with pytest.raises(hr.SettingError, match="cannot be negative"):
        hr.replay(graph(topic), KafkaRange(topic, kafka_broker, start=-1))
    assert hr.replay(graph(topic), KafkaRange(topic, kafka_broker)) == []
