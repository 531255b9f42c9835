"""A deployed graph's Kafka consumers use static membership: a worker killed
with SIGKILL and restarted takes its partitions back at once, instead of
after the group's session timeout (45 s)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

from kafka_util import new_topic, produce
from server_util import Server, package_bytes

STREAM = """
import headrace as hr

@hr.stream_accumulator(topic="{topic}", group="{group}", broker="KAFKA_BROKER")
def quotes(event):
    return event

graph = hr.ComputationGraph("quoted", accumulators=[quotes])

@graph.node
def mid(quotes):
    return quotes["p"]
"""


def test_a_killed_worker_consumes_again_well_before_the_session_timeout(tmp_path: Path, kafka_broker: str) -> None:
    topic, group = new_topic(kafka_broker), f"g-{uuid.uuid4().hex[:8]}"
    server = Server(tmp_path / "data", env={"HEADRACE_VAR_KAFKA_BROKER": kafka_broker}).start()
    try:
        server.deploy(package_bytes("quoted", STREAM.format(topic=topic, group=group)), "quoted")
        live = lambda: server.graph("quoted")["accumulator_health"][0]["health"] == "live"  # noqa: E731
        server.wait_for(live, what="the stream live")
        produce(kafka_broker, topic, [json.dumps({"p": 1}).encode()])
        server.wait_for(lambda: server.graph("quoted")["health"]["fire_count"] == 1, what="first fire")
        os.kill(server.graph("quoted")["worker"]["pid"], signal.SIGKILL)
        killed = time.monotonic()
        server.wait_for(lambda: server.graph("quoted")["worker"]["restarts"] == 1, what="restart")
        produce(kafka_broker, topic, [json.dumps({"p": 2}).encode()])
        # Dynamic membership would hold the partition for the dead member
        # until its session times out (45 s); static membership hands it back.
        server.wait_for(lambda: server.graph("quoted")["health"]["fire_count"] == 2, timeout=30.0, what="the fire after the restart")
        assert time.monotonic() - killed < 30
        assert server.graph("quoted")["sources"]["quotes"]["partitions"]
    finally:
        server.close()
