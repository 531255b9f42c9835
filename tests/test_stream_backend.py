"""The StreamBackend protocol: any registered backend feeds stream accumulators
with the same delivery rules as Kafka (no broker needed here)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

import headrace as hr
from kafka_util import wait_for


class Message:
    def __init__(self, value: bytes, topic: str, partition: int, offset: int) -> None:
        self._v, self._t, self._p, self._o = value, topic, partition, offset

    def value(self) -> bytes:
        return self._v

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def error(self) -> None:
        return None


LOG: list[bytes] = []
COMMITS: list[dict[tuple[str, int], int]] = []


class ListBackend:
    """A 'broker' that is a Python list: partition 0 of one topic."""

    def __init__(self, config: hr.StreamConfig) -> None:
        self.config = config
        self.next = 0
        self.lock = threading.Lock()

    def connect(self, assignment: Any) -> None:
        starts = assignment.assigned([(self.config.topic, 0)])
        self.next = starts.get((self.config.topic, 0), 0)

    def receive(self, max_messages: int, timeout: float) -> list[Any]:
        with self.lock:
            out = [Message(LOG[i], self.config.topic, 0, i) for i in range(self.next, min(len(LOG), self.next + max_messages))]
            self.next += len(out)
        if not out:
            threading.Event().wait(timeout)
        return out

    def commit(self, positions: Mapping[tuple[str, int], int]) -> None:
        COMMITS.append(dict(positions))

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        pass


def graph() -> hr.ComputationGraph:
    @hr.stream_accumulator(type="list", topic="numbers", broker="LIST_BROKER", state=0)
    def total(event, state):
        state.value += event
        return state.value

    g = hr.ComputationGraph("sum", accumulators=[total], input_strategy="sequential")
    g.node(name="n")(lambda total: total)
    return g


def test_a_registered_backend_feeds_the_graph_and_resumes_from_checkpoints(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HEADRACE_VAR_LIST_BROKER", "in-process")
    hr.register_stream_backend("list", ListBackend)
    LOG[:] = [str(i).encode() for i in range(1, 11)]
    COMMITS.clear()
    store = f"sqlite:///{tmp_path}/s.db"
    with hr.Runtime(graph(), mode="thread", store=store) as rt:
        wait_for(lambda: rt.stats()["fire_count"] == 10, 10, "ten fires")
        rt.checkpoint()
        wait_for(lambda: bool(COMMITS) and COMMITS[-1] == {("numbers", 0): 10}, 10, "a commit after the checkpoint")
    LOG.extend(str(i).encode() for i in range(11, 21))
    fires: list[hr.FireResult] = []
    with hr.Runtime(graph(), mode="thread", store=store, on_fire=fires.append) as rt:
        wait_for(lambda: len(fires) == 10, 10, "the next ten")
    assert fires[-1].outputs["n"] == sum(range(1, 21))  # resumed at offset 10, nothing twice


def test_unknown_backend_type_is_named(monkeypatch) -> None:
    monkeypatch.setenv("HEADRACE_VAR_KAFKA_BROKER", "x")

    @hr.stream_accumulator(type="pigeon", topic="t")
    def a(event):
        return event

    g = hr.ComputationGraph("g", accumulators=[a])
    g.node(name="n")(lambda a: a)
    import pytest

    with pytest.raises(hr.HeadraceError, match="no stream backend 'pigeon'"):
        hr.Runtime(g, mode="thread")


class BrokenError:
    def str(self) -> str:
        return "partition 0 is unreadable"


class BrokenMessage(Message):
    def error(self) -> BrokenError:  # type: ignore[override]
        return BrokenError()


class OneBrokenMessage(ListBackend):
    """Hands out a message that carries an error, then the number 7, then nothing."""

    def receive(self, max_messages: int, timeout: float) -> list[Any]:
        with self.lock:
            n, self.next = self.next, self.next + 1
        if n == 0:
            return [BrokenMessage(b"", self.config.topic, 0, 0)]
        if n == 1:
            return [Message(b"7", self.config.topic, 0, 1)]
        threading.Event().wait(timeout)
        return []


class SaysTopicLost(OneBrokenMessage):
    def message_error(self, message: Any) -> hr.sources.MessageError:
        return hr.sources.MessageError(message.error().str(), lost="topic 'numbers' is gone")


def broken_graph(backend: str) -> hr.ComputationGraph:
    @hr.stream_accumulator(type=backend, topic="numbers", broker="LIST_BROKER")
    def a(event):
        return event

    g = hr.ComputationGraph("broken", accumulators=[a])
    g.node(name="n")(lambda a: a)
    return g


@pytest.mark.parametrize(
    ("backend", "health", "error"),
    [
        # No message_error: the error is logged and the source stays live.
        ("broken", "live", None),
        # A backend says what the error means: here, the topic is gone.
        ("topic-lost", "disconnected", "topic 'numbers' is gone"),
    ],
)
def test_a_message_error_is_logged_and_the_backend_says_what_it_means(
    monkeypatch, caplog, backend: str, health: str, error: str | None
) -> None:
    monkeypatch.setenv("HEADRACE_VAR_LIST_BROKER", "in-process")
    hr.register_stream_backend(backend, {"broken": OneBrokenMessage, "topic-lost": SaysTopicLost}[backend])
    fires: list[hr.FireResult] = []
    with hr.Runtime(broken_graph(backend), mode="thread", on_fire=fires.append) as rt:
        # The next message is read only once the broken one is dealt with.
        wait_for(lambda: len(fires) == 1, 10, "the next message")
        assert fires[0].outputs["n"] == 7
        assert "source 'a': partition 0 is unreadable" in caplog.text
        acc = rt.stats()["accumulators"]["a"]
        assert acc["health"] == health
        if error is not None:
            assert acc["last_error"] == error


def test_kafka_message_errors_end_of_partition_is_quiet_and_a_lost_topic_disconnects() -> None:
    from types import SimpleNamespace

    from confluent_kafka import KafkaError

    from headrace.sources.kafka import KafkaBackend

    config = hr.StreamConfig("a", "kafka", "t", "g", broker="b:9092", broker_variable="B")
    backend = SimpleNamespace(config=config)

    def meaning(code: int) -> hr.sources.MessageError:
        error = KafkaError(code)
        return KafkaBackend.message_error(backend, SimpleNamespace(error=lambda: error))  # type: ignore[arg-type]

    assert meaning(KafkaError._PARTITION_EOF) == hr.sources.MessageError(None)
    lost = meaning(KafkaError.UNKNOWN_TOPIC_OR_PART)
    assert lost.text == KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART).str()
    assert lost.lost == "topic 't' no longer exists on b:9092"
    other = meaning(KafkaError._MSG_TIMED_OUT)
    assert other == hr.sources.MessageError(KafkaError(KafkaError._MSG_TIMED_OUT).str())
