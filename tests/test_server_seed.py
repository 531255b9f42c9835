"""The seed tutorial's flow against our server, with a real Kafka broker, and
the server on a PostgreSQL store."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafka_util import new_topic, produce
from test_packages import SEED_MANIFEST
from server_util import PRICES, Server, package_bytes


# The code declares a passthrough accumulator; package.toml makes it a Kafka
# stream, as in the seed.
SEED_SOURCE = """
import headrace as hr

@hr.passthrough_accumulator
def orderbook(event):
    return event

graph = hr.ComputationGraph("kafka_price_signal", accumulators=[orderbook])

@graph.node
def signal(orderbook):
    mid = (orderbook["best_bid"] + orderbook["best_ask"]) / 2
    spread = orderbook["best_ask"] - orderbook["best_bid"]
    return {"mid_price": mid, "spread": spread, "spread_bps": spread / mid * 10_000}
"""


def seed_archive(topic: str, group: str) -> bytes:
    """The seed's `tar -cjf kafka-price-signal.cloacina` with a versioned top folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        for name, text in [
            (
                "package.toml",
                SEED_MANIFEST.replace('"price.orderbook"', f'"{topic}"').replace(
                    '"kafka-price-signal-group"', f'"{group}"'
                ),
            ),
            ("price_signal.py", textwrap.dedent(SEED_SOURCE)),
        ]:
            data = text.encode()
            info = tarfile.TarInfo(f"kafka-price-signal-0.1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_the_seed_tutorial_flow(tmp_path: Path, kafka_broker: str) -> None:
    topic = new_topic(kafka_broker)
    # The seed's variable name, as its readers will have it set.
    server = Server(tmp_path / "data", env={"CLOACINA_VAR_KAFKA_BROKER": kafka_broker}).start()
    try:
        # curl -X POST .../tenants/public/workflows -F "file=@kafka-price-signal.cloacina;type=application/octet-stream"
        r = server.http.post(
            "/tenants/public/workflows",
            files={"file": ("kafka-price-signal.cloacina", seed_archive(topic, f"g-{uuid.uuid4().hex[:8]}"), "application/octet-stream")},
        )
        assert r.status_code == 201, r.text
        # The seed's polling loop: until any(r['name'] == 'kafka_price_signal' for r in d['reactors']).
        server.wait_for(
            lambda: any(
                r["name"] == "kafka_price_signal" and r["state"] == "running"
                for r in server.http.get("/v1/health/graphs").json()["reactors"]
            ),
            what="graph loaded",
        )
        server.wait_for(
            lambda: server.graph("kafka_price_signal")["accumulator_health"][0]["health"] == "live",
            what="the Kafka accumulator live",
        )
        produce(kafka_broker, topic, [json.dumps({"best_bid": 100.10, "best_ask": 100.15}).encode()])
        detail = server.wait_for(
            lambda: (d := server.graph("kafka_price_signal"))["health"]["fire_count"] == 1 and d, what="first fire"
        )
        assert detail["name"] == "kafka_price_signal" and detail["accumulators"] == ["orderbook"]
        assert detail["health"]["state"] == "running" and detail["paused"] is False
        assert detail["health"]["last_fired_at"].endswith("Z")
        signal_out = server.fires("kafka_price_signal", 1)[0]["outputs"]["signal"]
        assert signal_out["mid_price"] == pytest.approx(100.125)

        # "Produce several more messages and watch fire_count increment".
        for i in range(10):
            bid = 100 + i / 100
            produce(kafka_broker, topic, [json.dumps({"best_bid": bid, "best_ask": bid + 0.05}).encode()])
            server.wait_for(
                lambda i=i: server.graph("kafka_price_signal")["health"]["fire_count"] == i + 2, what=f"fire {i + 2}"
            )
        sources = server.graph("kafka_price_signal")["sources"]["orderbook"]
        assert sources["partitions"], sources
    finally:
        server.close()


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    s = Server(tmp_path / "data", env={"HEADRACE_STORE": postgres_url}).start()
    try:
        yield s
    finally:
        s.close()


def test_the_server_on_postgresql_keeps_tenants_apart(pg_server: Server, tmp_path: Path) -> None:
    server = pg_server
    # Graph names are per tenant: the same graph in two tenants has two states.
    server.stop()
    created = subprocess.run(
        [sys.executable, "-m", "headrace", "keys", "create", "--tenant", "other", "--role", "admin",
         "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, check=True,
    )
    other_key = created.stdout.strip()
    server.start()
    tag = uuid.uuid4().hex[:8]  # runs share the PostgreSQL server: graph names are unique per run
    graph = f"prices_{tag}"
    archive = package_bytes(graph, PRICES.replace('"prices"', f'"{graph}"'))
    server.deploy(archive, graph)
    server.deploy(archive, graph, tenant="other", key=other_key)
    assert server.graph(graph)["checkpoint"]["store"].startswith("postgresql://")

    for p in range(3):
        assert server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": p}}).status_code == 200
    r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 50}}, headers=server.auth(other_key))
    assert r.status_code == 200, r.text
    server.wait_for(lambda: server.graph(graph)["events"] == 3, what="public's events")
    server.wait_for(lambda: server.graph(graph, key=other_key)["events"] == 1, what="other's events")

    os.kill(server.graph(graph)["worker"]["pid"], signal.SIGKILL)
    detail = server.wait_for(
        lambda: (d := server.graph(graph))["worker"]["restarts"] == 1 and d["health"]["state"] == "running" and d,
        what="restart",
    )
    assert detail["events"] == 3 and detail["health"]["fire_count"] == 3
    assert server.graph(graph, key=other_key)["events"] == 1
    assert server.fires(graph, 1)[0]["outputs"] == {"double": 4}
    other_fires = server.http.get(f"/v1/health/reactors/{graph}/fires", headers=server.auth(other_key)).json()
    assert [f["outputs"] for f in other_fires["items"]] == [{"double": 100}]
