"""Kafka faults: the consuming process killed, and the broker restarted."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import headrace as hr
from headrace.checkpoint import inspect
from kafka_util import new_topic, produce, wait_for

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("_kafka_child.py")


@pytest.mark.timeout(300)
def test_sigkill_of_the_consumer_loses_and_repeats_nothing(kafka_broker, tmp_path) -> None:
    total = 300_000
    topic = new_topic(kafka_broker)
    produce(kafka_broker, topic, [str(i).encode() for i in range(total)])
    store = f"sqlite:///{tmp_path}/k.db"
    env = os.environ | {"HEADRACE_VAR_KAFKA_BROKER": kafka_broker}
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    group = f"crash-{uuid.uuid4().hex[:8]}"  # a group of its own: no members left by other tests
    progress = []
    for _ in range(10):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), store, topic, str(total), group], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert child.stdout is not None and child.stdout.readline().startswith("START")
        time.sleep(rng.uniform(0.1, 0.5))
        assert child.poll() is None, "the child finished before its kill: the topic is too short"
        child.kill()
        child.communicate(timeout=30)
        saved = inspect(store, "kcrash").get("accumulator:seen")  # none yet if killed while joining
        progress.append(saved["user_state"]["next"] if saved else 0)
    assert progress == sorted(progress) and progress[-1] > 0, progress
    child = subprocess.run([sys.executable, str(CHILD), store, topic, str(total), group], capture_output=True, text=True, env=env, timeout=300)
    assert child.returncode == 0 and "DONE" in child.stdout, child.stderr[-2000:]
    state = inspect(store, "kcrash")["accumulator:seen"]["user_state"]
    assert state["violations"] == [], state["violations"][:5]
    assert state["next"] == total and state["applied"] == total


@pytest.mark.timeout(300)
def test_broker_restart_while_consuming(kafka_broker, monkeypatch) -> None:
    monkeypatch.setenv("HEADRACE_VAR_KAFKA_BROKER", kafka_broker)
    topic = new_topic(kafka_broker)

    @hr.stream_accumulator(topic=topic, state=[])
    def ticks(event, state):
        state.value.append(event)
        return len(state.value)

    g = hr.ComputationGraph("g", accumulators=[ticks], input_strategy="sequential")
    g.node(name="n")(lambda ticks: ticks)
    fires: list[hr.FireResult] = []
    script = str(ROOT / "scripts" / "kafka.sh")
    with hr.Runtime(g, mode="thread", on_fire=fires.append) as rt:
        produce(kafka_broker, topic, [json.dumps(i).encode() for i in range(50)])
        wait_for(lambda: len(fires) == 50, 30, "the first 50")
        subprocess.run([script, "stop"], check=True)
        try:
            wait_for(lambda: rt.stats()["accumulators"]["ticks"]["health"] == "disconnected", 60, "the loss to show")
            assert rt.stats()["health"] == "degraded"
            rt.push("ticks", -1)  # the push input keeps working meanwhile
        finally:
            subprocess.run([script, "start"], check=True, capture_output=True)
        wait_for(lambda: rt.stats()["accumulators"]["ticks"]["health"] == "live", 90, "the source to come back")
        produce(kafka_broker, topic, [json.dumps(i).encode() for i in range(50, 100)])
        wait_for(lambda: len(fires) == 101, 60, "the rest")
    assert rt.stats()["health"] == "stopped"
