"""Where a stream starts when the checkpoint holds no position for it
(`start=`), against the real broker; a checkpointed position always wins."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import headrace as hr
from kafka_util import new_topic, wait_for

T0 = 1_767_323_045.0


@pytest.fixture
def broker_env(kafka_broker: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HEADRACE_VAR_KAFKA_BROKER", kafka_broker)
    return kafka_broker


def publish(broker: str, topic: str, values: range, t0: float | None = None) -> None:
    producer = Producer({"bootstrap.servers": broker})
    for k in values:
        extra = {} if t0 is None else {"timestamp": int((t0 + k) * 1000)}
        producer.produce(topic, json.dumps(k).encode(), **extra)
    assert producer.flush(30) == 0


def graph(topic: str, group: str, start: Any) -> hr.ComputationGraph:
    @hr.stream_accumulator(topic=topic, group=group, start=start, state=[])
    def seen(event: Any, state: hr.State) -> Any:
        state.value.append(event)
        return event

    g = hr.ComputationGraph("started", accumulators=[seen])
    g.node(name="n")(lambda seen: seen)
    return g


def stream_manifest(setting: str) -> str:
    """A package.toml whose stream accumulator "seen" has ``setting`` in its config."""
    return (
        '[package]\nname = "s"\nversion = "1"\n[metadata]\ngraph_name = "started"\nentry = "m:graph"\n'
        '[[metadata.accumulators]]\nname = "seen"\naccumulator_type = "stream"\n'
        f'[metadata.accumulators.config]\ntopic = "t"\n{setting}\n'
    )


def taken(rt: hr.Runtime) -> int:
    return int(rt.stats()["accumulators"]["seen"]["events"])


def commit_group(broker: str, topic: str, group: str, offset: int) -> None:
    c = Consumer({"bootstrap.servers": broker, "group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    c.close()


def test_latest_skips_what_is_there_and_a_checkpoint_wins_afterwards(broker_env: str, tmp_path: Path) -> None:
    topic, group = new_topic(broker_env), f"g-{uuid.uuid4().hex[:8]}"
    publish(broker_env, topic, range(10))
    store = f"sqlite:///{tmp_path}/s.db"
    values: list[Any] = []
    with hr.Runtime(graph(topic, group, "latest"), mode="thread", store=store, on_fire=hr.on_output("n", values.append)) as rt:
        wait_for(lambda: rt.stats()["sources"]["seen"]["partitions"] != [], 30, "partitions assigned")
        publish(broker_env, topic, range(10, 15))
        wait_for(lambda: taken(rt) == 5, 30, "the new messages")
    assert values == [10, 11, 12, 13, 14]
    publish(broker_env, topic, range(15, 17))
    # Reopened: the checkpoint's position wins over start="latest".
    with hr.Runtime(graph(topic, group, "latest"), mode="thread", store=store, on_fire=hr.on_output("n", values.append)) as rt:
        wait_for(lambda: taken(rt) == 7, 30, "the messages after the checkpoint")
    assert values[5:] == [15, 16]


def test_earliest_ignores_the_group_s_committed_offset(broker_env: str) -> None:
    topic, group = new_topic(broker_env), f"g-{uuid.uuid4().hex[:8]}"
    publish(broker_env, topic, range(6))
    commit_group(broker_env, topic, group, 4)
    with hr.Runtime(graph(topic, group, "committed"), mode="thread") as rt:
        wait_for(lambda: taken(rt) == 2, 30, "from the committed offset")
    with hr.Runtime(graph(topic, group, "earliest"), mode="thread") as rt:
        wait_for(lambda: taken(rt) == 6, 30, "from the beginning")


@pytest.mark.parametrize("start", [T0 + 3, "2026-01-02T03:04:08+00:00"])
def test_a_time_starts_at_the_first_message_at_or_after_it(broker_env: str, start: Any) -> None:
    topic, group = new_topic(broker_env), f"g-{uuid.uuid4().hex[:8]}"
    publish(broker_env, topic, range(6), t0=T0)
    values: list[Any] = []
    with hr.Runtime(graph(topic, group, start), mode="thread", on_fire=hr.on_output("n", values.append)) as rt:
        wait_for(lambda: taken(rt) == 3, 30, "from the time")
    assert values == [3, 4, 5]


def test_a_bad_start_is_named() -> None:
    with pytest.raises(hr.GraphDefinitionError, match="accumulator 'seen': start must be 'committed', 'earliest'"):
        graph("t", "g", "yesterday")


def test_package_toml_sets_start() -> None:
    from headrace.packages.loader import apply_manifest
    from headrace.packages.manifest import ManifestError, parse_manifest

    g = graph("t", "g", None)
    assert g.accumulator("seen").config["start"] == "committed"
    applied = apply_manifest(g, parse_manifest(stream_manifest('start = "2026-01-02T03:04:08Z"')))
    assert applied.accumulator("seen").config["start"] == T0 + 3
    with pytest.raises(ManifestError, match="start must be"):
        apply_manifest(g, parse_manifest(stream_manifest('start = "soon"')))


def test_a_stream_is_live_only_with_partitions(broker_env: str) -> None:
    topic, group = new_topic(broker_env), f"g-{uuid.uuid4().hex[:8]}"
    samples: list[tuple[str, list[Any]]] = []
    with hr.Runtime(graph(topic, group, "earliest"), mode="thread") as rt:
        while not samples or samples[-1][0] != "live":
            s = rt.stats()
            samples.append((s["accumulators"]["seen"]["health"], s["sources"]["seen"]["partitions"]))
            assert len(samples) < 30_000, samples[-1]
    assert samples[0] == ("connecting", []), samples[:3]
    assert all(partitions for health, partitions in samples if health == "live")


def test_static_membership_is_per_runtime_place_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from headrace.packages.loader import apply_manifest
    from headrace.packages.manifest import parse_manifest
    from headrace.sources.runner import StreamRunner

    monkeypatch.setenv("HEADRACE_VAR_KAFKA_BROKER", "127.0.0.1:9")
    acc = graph("t", "g", None).accumulator("seen")
    assert StreamRunner(acc, None, "headrace.public.started").config.options["group.instance.id"] == "headrace.public.started.seen"
    assert "group.instance.id" not in StreamRunner(acc, None).config.options

    @hr.stream_accumulator(topic="t", static_membership=False)
    def dynamic(event: Any) -> Any:
        return event

    assert "group.instance.id" not in StreamRunner(dynamic, None, "headrace.public.x").config.options

    @hr.stream_accumulator(topic="t", config={"group.instance.id": "mine"})
    def own(event: Any) -> Any:
        return event

    assert StreamRunner(own, None, "headrace.public.x").config.options["group.instance.id"] == "mine"
    applied = apply_manifest(graph("t", "g", None), parse_manifest(stream_manifest('static_membership = false')))
    assert applied.accumulator("seen").config["static_membership"] is False
    with pytest.raises(Exception, match="static_membership must be true or false"):
        apply_manifest(graph("t", "g", None), parse_manifest(stream_manifest('static_membership = "no"')))
