"""Kafka → fire, on the local broker: throughput beside confluent-kafka's bare
consume loop (the ceiling), and latency from the producer's timestamp to the fire."""

from __future__ import annotations

import os
import time
import uuid

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import headrace as hr
from benches import workloads
from benches.workloads import Result, percentiles


def broker() -> str | None:
    return os.environ.get("HEADRACE_BENCH_KAFKA") or os.environ.get("HEADRACE_TEST_KAFKA")


def _topic(address: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": address})  # must outlive its futures
    for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
        f.result(30)
    return name


def _fill(address: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": address, "linger.ms": 20, "batch.size": 1_000_000})
    for e in workloads.events(n):
        payload = orjson.dumps(e)
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def _bare(address: str, topic: str, n: int, work: bool) -> float:
    consumer = Consumer(
        {"bootstrap.servers": address, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    got, started = 0, None
    while got < n:
        # poll-first, as the source does: consume(n, timeout) would wait out the
        # timeout for a short final batch.
        first = consumer.poll(1.0)
        batch = [] if first is None else [first, *consumer.consume(999, 0)]
        for m in batch:
            if m.error() is not None:
                continue
            if started is None:
                started = time.perf_counter()
            if work:
                workloads.emit_fn(workloads.compute_fn(workloads.orderbook_fn(orjson.loads(m.value()))))
            got += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return n / elapsed


def _graph(topic: str) -> hr.ComputationGraph:
    orderbook = hr.stream_accumulator(topic=topic, group=uuid.uuid4().hex, name="orderbook")(workloads.orderbook_fn)
    g = hr.ComputationGraph("kbench", accumulators=[orderbook], input_strategy="sequential")
    g.node(name="compute")(workloads.compute_fn)
    g.node(name="emit")(workloads.emit_fn)
    return g


def _headrace(address: str, topic: str, n: int) -> float:
    os.environ["HEADRACE_VAR_KAFKA_BROKER"] = address
    first: list[float] = []
    with hr.Runtime(_graph(topic), mode="thread", on_fire=lambda r: first or first.append(time.perf_counter())) as rt:
        while rt.stats()["fire_count"] < n:
            time.sleep(0.005)
        elapsed = time.perf_counter() - first[0]
    return n / elapsed


def throughput(n: int) -> list[Result]:
    address = broker()
    assert address is not None
    topic = _topic(address)
    _fill(address, topic, n)
    ceiling = _bare(address, topic, n, work=False)
    same_work = _bare(address, topic, n, work=True)
    ours = _headrace(address, topic, n)
    # On a 2-core machine with the broker beside it, any per-message Python
    # work takes the core the broker and librdkafka fetch with: the bare loop
    # doing the same work is the ceiling for consume-and-process.
    return [
        Result("Kafka throughput", "bare consume, no work", ceiling, "events/s", same_work, "higher", "ref"),
        Result("Kafka throughput", "headrace thread", ours, "events/s", same_work, "higher", ">= 0.7x"),
    ]


def latency(n: int) -> list[Result]:
    address = broker()
    assert address is not None
    topic = _topic(address)
    os.environ["HEADRACE_VAR_KAFKA_BROKER"] = address
    samples: list[int] = []
    fired = []

    @hr.stream_accumulator(topic=topic, group=uuid.uuid4().hex)
    def stamped(event):
        return event

    g = hr.ComputationGraph("klat", accumulators=[stamped], input_strategy="sequential")

    @g.node
    def done(stamped):
        samples.append(time.perf_counter_ns() - stamped["t"])
        fired.append(1)

    producer = Producer({"bootstrap.servers": address, "linger.ms": 0, "acks": 1})
    with hr.Runtime(g, mode="thread") as rt:
        while rt.stats()["sources"]["stamped"]["partitions"] == []:
            time.sleep(0.01)
        for i in range(n):
            producer.produce(topic, orjson.dumps({"t": time.perf_counter_ns(), "i": i}))
            producer.poll(0)
            deadline = time.monotonic() + 5
            while len(fired) <= i and time.monotonic() < deadline:
                time.sleep(0.0002)
    producer.flush(10)
    p = percentiles(samples[10:])  # the first few include connection warm-up
    return [Result("Kafka → fire latency", q, p[q] / 1000, "ms", 5.0, "lower", "p50 <= 5 ms" if q == "p50" else "") for q in ("p50", "p99")]
