"""Kafka-sourced graphs against a real broker (scripts/kafka.sh)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

import headrace as hr
from headrace.checkpoint import inspect
from exactly_once import INITIAL, check
from kafka_util import new_topic, produce, read_all, wait_for


@pytest.fixture
def broker_env(kafka_broker, monkeypatch) -> str:
    monkeypatch.setenv("HEADRACE_VAR_KAFKA_BROKER", kafka_broker)
    return kafka_broker


def book(bid: float, ask: float) -> bytes:
    return json.dumps({"best_bid": bid, "best_ask": ask}).encode()


def test_passthrough_per_message(broker_env) -> None:
    """Seed pattern 1: every Kafka message fires the graph."""
    topic = new_topic(broker_env)

    @hr.stream_accumulator(type="kafka", topic=topic, broker="KAFKA_BROKER")
    def orderbook(event):
        return event

    g = hr.ComputationGraph("price_signal", accumulators=[orderbook], criteria=hr.when_any(orderbook), input_strategy="sequential")

    @g.node
    def compute(orderbook):
        mid = (orderbook["best_bid"] + orderbook["best_ask"]) / 2
        return {"mid": mid, "spread_bps": (orderbook["best_ask"] - orderbook["best_bid"]) / mid * 10_000}

    @g.node
    def emit(compute):
        return f"mid={compute['mid']:.4f}"

    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode="thread", on_fire=fires.append) as rt:
        wait_for(lambda: rt.stats()["accumulators"]["orderbook"]["health"] == "live", 30, "the source to connect")
        produce(broker_env, topic, [book(100.10, 100.15), book(100.0, 100.2)])
        wait_for(lambda: len(fires) == 2, 30, "two fires")
        assert rt.stats()["health"] == "live"
    assert [f.outputs["emit"] for f in fires] == ["mid=100.1250", "mid=100.1000"]


def test_cloacina_variable_and_group_default(kafka_broker, monkeypatch) -> None:
    monkeypatch.delenv("HEADRACE_VAR_SEED_BROKER", raising=False)
    monkeypatch.setenv("CLOACINA_VAR_SEED_BROKER", kafka_broker)
    topic = new_topic(kafka_broker)

    @hr.stream_accumulator(topic=topic, broker="SEED_BROKER")
    def ticks(event):
        return event

    assert ticks.config["group"] == "ticks_group"
    g = hr.ComputationGraph("g", accumulators=[ticks])
    g.node(name="n")(lambda ticks: ticks)
    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode="thread", on_fire=fires.append):
        produce(kafka_broker, topic, [b"1"])
        wait_for(lambda: len(fires) == 1, 30, "a fire")


def test_stateful_multi_source(broker_env) -> None:
    """Seed pattern 2: when_all over a Kafka accumulator and a push accumulator."""
    topic = new_topic(broker_env)

    @hr.stream_accumulator(topic=topic)
    def orderbook(event):
        return event

    @hr.passthrough_accumulator
    def reference(event):
        return event["price"]

    g = hr.ComputationGraph("stateful", accumulators=[orderbook, reference], criteria=hr.when_all(orderbook, reference), input_strategy="sequential")

    @g.node
    def evaluate(orderbook, reference):
        mid = (orderbook["best_bid"] + orderbook["best_ask"]) / 2
        return "ALERT" if abs(mid - reference) / reference > 0.005 else "OK"

    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode="thread", on_fire=fires.append) as rt:
        produce(broker_env, topic, [book(100.0, 100.2)])
        wait_for(lambda: rt.stats()["accumulators"]["orderbook"]["boundaries"] == 1, 30, "the book")
        assert fires == []  # when_all: no reference yet
        rt.push("reference", {"price": 100.1})
        produce(broker_env, topic, [book(110.0, 110.2)])
        wait_for(lambda: len(fires) == 2, 30, "two fires")
    assert [f.outputs["evaluate"] for f in fires] == ["OK", "ALERT"]


def test_batch_vwap_over_n_trades(broker_env) -> None:
    """Seed pattern 3: VWAP over every 5 trades, the buffer in checkpointed state."""
    topic = new_topic(broker_env)

    @hr.stream_accumulator(topic=topic, state=[])
    def trade(event, state):
        state.value.append([event["price"], event["volume"]])
        if len(state.value) < 5:
            return None
        batch, state.value = state.value, []
        volume = sum(v for _, v in batch)
        return {"vwap": sum(p * v for p, v in batch) / volume, "n": len(batch)}

    g = hr.ComputationGraph("vwap", accumulators=[trade], input_strategy="sequential")

    @g.node
    def emit(trade):
        return f"VWAP={trade['vwap']:.4f} (n={trade['n']})"

    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode="thread", on_fire=fires.append):
        produce(broker_env, topic, [json.dumps({"price": 100 + i, "volume": 1}).encode() for i in range(10)])
        wait_for(lambda: len(fires) == 2, 30, "two VWAPs")
    assert [f.outputs["emit"] for f in fires] == ["VWAP=102.0000 (n=5)", "VWAP=107.0000 (n=5)"]


def counting_graph(topic: str) -> hr.ComputationGraph:
    @hr.stream_accumulator(topic=topic, state=INITIAL)
    def seen(event, state):
        return check(event, state)

    g = hr.ComputationGraph("counting", accumulators=[seen], input_strategy="sequential")
    g.node(name="n")(lambda seen: seen)
    return g


def test_resume_after_restart_from_checkpointed_offsets(broker_env, tmp_path) -> None:
    topic = new_topic(broker_env)
    store = f"sqlite:///{tmp_path}/k.db"
    produce(broker_env, topic, [str(i).encode() for i in range(300)])
    with hr.Runtime(counting_graph(topic), mode="thread", store=store) as rt:
        wait_for(lambda: rt.stats()["accumulators"]["seen"]["events"] >= 300, 30, "300 events")
    produce(broker_env, topic, [str(i).encode() for i in range(300, 500)])
    with hr.Runtime(counting_graph(topic), mode="thread", store=store) as rt:
        wait_for(lambda: rt.stats()["accumulators"]["seen"]["events"] >= 500, 30, "500 events")
    state = inspect(store, "counting")["accumulator:seen"]["user_state"]
    assert state == {"next": 500, "applied": 500, "violations": []}
    assert inspect(store, "counting")["sources"]["positions"][0]["offset"] == 500


def test_malformed_messages_are_counted_logged_and_dead_lettered(broker_env, caplog) -> None:
    topic = new_topic(broker_env)
    dlq = new_topic(broker_env)

    @hr.stream_accumulator(topic=topic, dead_letter_topic=dlq)
    def prices(event):
        return event

    g = hr.ComputationGraph("g", accumulators=[prices], input_strategy="sequential")
    g.node(name="n")(lambda prices: prices)
    fires: list[hr.FireResult] = []
    with caplog.at_level(logging.WARNING, logger="headrace"):
        with hr.Runtime(g, mode="thread", on_fire=fires.append) as rt:
            produce(broker_env, topic, [b"1", b"{not json", b"2"])
            wait_for(lambda: len(fires) == 2, 30, "two good messages")
            assert rt.stats()["accumulators"]["prices"]["errors"] == 1
    assert [f.outputs["n"] for f in fires] == [1, 2]
    assert f"{topic}[0]@1" in caplog.text and "{not json" in caplog.text
    (value, headers), = read_all(broker_env, dlq, 1)
    assert value == b"{not json" and headers["headrace.source"] == f"{topic}[0]@1".encode()


def test_missing_topic_is_named_and_picked_up_once_created(broker_env) -> None:
    topic = f"missing-{uuid.uuid4().hex[:8]}"

    @hr.stream_accumulator(topic=topic)
    def late(event):
        return event

    g = hr.ComputationGraph("g", accumulators=[late])
    g.node(name="n")(lambda late: late)
    fires: list[hr.FireResult] = []
    with hr.Runtime(g, mode="thread", on_fire=fires.append) as rt:
        wait_for(lambda: rt.stats()["accumulators"]["late"]["last_error"] is not None, 30, "the error")
        acc = rt.stats()["accumulators"]["late"]
        assert acc["health"] == "disconnected"
        assert f"topic '{topic}' does not exist on Kafka broker {broker_env}" in acc["last_error"]
        assert rt.stats()["health"] == "degraded"
        rt.push("late", 0)  # the push input still works
        new_topic(broker_env, name=topic)
        wait_for(lambda: rt.stats()["accumulators"]["late"]["health"] == "live", 60, "the topic to be picked up")
        produce(broker_env, topic, [b"1"])
        wait_for(lambda: len(fires) == 2, 30, "the message")


def test_missing_broker_variable_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("HEADRACE_VAR_NOWHERE", raising=False)
    monkeypatch.delenv("CLOACINA_VAR_NOWHERE", raising=False)

    @hr.stream_accumulator(topic="x", broker="NOWHERE")
    def a(event):
        return event

    g = hr.ComputationGraph("g", accumulators=[a])
    g.node(name="n")(lambda a: a)
    with pytest.raises(hr.HeadraceError, match="HEADRACE_VAR_NOWHERE"):
        hr.Runtime(g, mode="thread")


def test_rebalance_between_two_consumers_loses_and_repeats_nothing(broker_env, tmp_path) -> None:
    topic = new_topic(broker_env, partitions=2)

    def graph() -> hr.ComputationGraph:
        @hr.stream_accumulator(topic=topic, group="shared", state=[])
        def seen(event, state):
            state.value.append(event)
            return event

        g = hr.ComputationGraph("rebalance", accumulators=[seen], input_strategy="sequential")
        g.node(name="n")(lambda seen: seen)
        return g

    produce(broker_env, topic, [str(i).encode() for i in range(0, 200, 2)], partition=0)
    produce(broker_env, topic, [str(i).encode() for i in range(1, 200, 2)], partition=1)
    store = f"sqlite:///{tmp_path}/r.db"
    a = hr.Runtime(graph(), mode="thread", store=store, tenant="a")
    try:
        wait_for(lambda: a.stats()["accumulators"]["seen"]["events"] == 200, 60, "A to read everything")
        with hr.Runtime(graph(), mode="thread", store=store, tenant="b") as b:
            # B joins: one partition moves to it (A checkpoints and commits first).
            parts = lambda rt: rt.stats()["sources"]["seen"]["partitions"]  # noqa: E731
            wait_for(lambda: len(parts(a)) == 1 and len(parts(b)) == 1, 60, "one partition to move to B")
            produce(broker_env, topic, [str(i).encode() for i in range(200, 400, 2)], partition=0)
            produce(broker_env, topic, [str(i).encode() for i in range(201, 400, 2)], partition=1)
            wait_for(
                lambda: a.stats()["accumulators"]["seen"]["events"] + b.stats()["accumulators"]["seen"]["events"] >= 400,
                60,
                "both to read the rest",
            )
            assert b.stats()["accumulators"]["seen"]["events"] > 0, "no partition moved to B"
    finally:
        a.close()
    seen_a = inspect(store, "rebalance", "a")["accumulator:seen"]["user_state"]
    seen_b = inspect(store, "rebalance", "b")["accumulator:seen"]["user_state"]
    assert sorted(seen_a + seen_b) == list(range(400)), "lost or repeated across the rebalance"
