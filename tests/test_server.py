"""The server end to end: a real `headrace serve`, real worker processes,
packages uploaded over multipart, events over REST and WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server_util import PRICES, Server, package_bytes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_upload_inject_fire_pause_resume_and_restarts(server: Server) -> None:
    body = server.deploy(package_bytes("prices", PRICES), "prices")
    assert body["graph"] == "prices" and body["version"] == "0.1.0" and body["accumulators"] == ["price"]

    listing = server.http.get("/v1/health/graphs").json()
    assert listing["total"] == 1 and [r["name"] for r in listing["reactors"]] == ["prices"]
    detail = server.graph("prices")
    assert detail["name"] == "prices" and detail["accumulators"] == ["price"] and detail["paused"] is False
    assert detail["health"]["state"] == "running" and detail["health"]["fire_count"] == 0
    assert detail["topology"]["nodes"] == [{"name": "double", "inputs": ["price"], "routes": {}}]
    assert detail["input_strategy"] == "sequential" and detail["reaction_mode"] == "when_any"

    r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 21}})
    assert r.status_code == 200 and r.json()["accepted"] is True and r.json()["durable"] is True, r.text
    server.wait_for(lambda: server.graph("prices")["health"]["fire_count"] == 1, what="first fire")
    (fire,) = server.fires("prices", limit=1)
    assert fire["inputs"] == {"price": {"p": 21}} and fire["outputs"] == {"double": 42} and fire["ok"] is True
    assert list(fire["node_ns"]) == ["double"] and fire["node_ns"]["double"] > 0, fire
    assert server.graph("prices")["health"]["last_fired_at"].endswith("Z")

    # Pause: events are accepted, nothing fires; resume fires for them.
    assert server.http.post("/v1/health/reactors/prices/pause").json() == {"paused": True}
    server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 1}})
    assert server.graph("prices")["paused"] is True and server.graph("prices")["health"]["fire_count"] == 1

    # Pause is durable: a killed worker comes back paused, with its fires.
    pid = server.graph("prices")["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    detail = server.wait_for(
        lambda: (d := server.graph("prices"))["worker"]["restarts"] == 1 and d["health"]["state"] == "running" and d,
        what="restart after kill -9",
    )
    assert detail["worker"]["pid"] != pid and detail["paused"] is True
    assert detail["health"]["fire_count"] == 1 and server.fires("prices")[0]["outputs"] == {"double": 42}

    assert server.http.post("/v1/health/reactors/prices/resume").json() == {"paused": False}
    server.wait_for(lambda: server.graph("prices")["health"]["fire_count"] == 2, what="fire on resume")
    assert server.fires("prices", limit=1)[0]["outputs"] == {"double": 2}

    forced = server.http.post("/v1/health/reactors/prices/fire", json={"mode": "force_fire"}).json()
    assert forced["fired"] is True and forced["fire"]["trigger"] == "manual" and forced["fire"]["outputs"] == {"double": 2}
    with_inputs = server.http.post("/v1/health/reactors/prices/fire", json={"fire_with": {"price": {"p": 5}}}).json()
    assert with_inputs["fired"] is True and with_inputs["fire"]["outputs"] == {"double": 10}
    bad = server.http.post("/v1/health/reactors/prices/fire", json={"mode": "sometimes"})
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request" and "force_fire" in bad.json()["error"]
    count = server.graph("prices")["health"]["fire_count"]

    # A whole server restart: state, fires and the package come back.
    # uvicorn re-raises the SIGTERM it handled, after a graceful shutdown.
    assert server.stop() in (0, -signal.SIGTERM) and "Application shutdown complete" in server.log()
    server.start()
    detail = server.wait_state("prices", "running")
    assert detail["health"]["fire_count"] == count and detail["paused"] is False
    assert [f["id"] for f in server.fires("prices", limit=3)] == [count, count - 1, count - 2]
    assert server.http.get("/ready").json()["ready"] is True


def test_accumulator_errors_and_unknown_names(server: Server) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")
    r = server.http.post("/v1/health/accumulators/nope/inject", json={"event": 1})
    assert r.status_code == 404 and r.json() == {"error": "no accumulator named 'nope'", "code": "not_found"}
    r = server.http.post("/v1/health/accumulators/price/inject", json={"value": 1})
    assert r.status_code == 400 and "event" in r.json()["error"]
    r = server.http.get("/v1/health/reactors/prices/fires", params={"limit": "0"})
    assert r.status_code == 400 and "limit" in r.json()["error"]
    # A node that raises: the fire is recorded with its error, the graph keeps running.
    server.http.post("/v1/health/accumulators/price/inject", json={"event": {"q": 1}})
    fire = server.wait_for(lambda: (f := server.fires("prices", 1)) and f[0], what="failed fire")
    assert fire["ok"] is False and fire["node"] == "double" and "KeyError" in fire["error"]
    assert server.graph("prices")["health"]["state"] == "running"


async def _ws_push(server: Server, frames: list[Any], *, query: str = "", msgpack_protocol: bool = False) -> list[Any]:
    """Sends ``frames`` and collects acknowledgements until the last frame is settled."""
    url = f"{server.ws_url}/v1/ws/accumulator/price{query}"
    protocols = ["msgpack"] if msgpack_protocol else None
    replies: list[Any] = []
    async with connect(url, additional_headers=server.auth(), subprotocols=protocols) as ws:  # type: ignore[arg-type]
        for frame in frames:
            await ws.send(frame)
        while True:
            raw = await asyncio.wait_for(ws.recv(), 30)
            reply = msgpack.unpackb(raw) if msgpack_protocol else json.loads(raw)
            replies.append(reply)
            if reply.get("ack") == len(frames) or reply.get("refused") == len(frames):
                return replies


def test_websocket_push_acknowledges_every_frame_in_order(server: Server) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")
    frames = [json.dumps({"p": i}) for i in range(200)]
    frames[50] = "{not json"
    replies = asyncio.run(_ws_push(server, frames))
    assert len(replies) == 200
    for seq, reply in enumerate(replies, start=1):
        if seq == 51:
            assert reply["refused"] == 51 and reply["code"] == "bad_payload" and "undecodable json" in reply["error"], reply
        else:
            assert reply == {"ack": seq}
    detail = server.graph("prices")
    assert detail["accumulator_health"][0]["events"] == 199

    # Binary frames carry JSON too; batched acks cover runs of frames.
    frames2: list[Any] = [json.dumps({"p": i}).encode() for i in range(1000)]
    replies = asyncio.run(_ws_push(server, frames2, query="?ack=batch"))
    acked = [r["ack"] for r in replies]
    assert acked == sorted(acked) and acked[-1] == 1000 and len(acked) < 1000, acked
    assert all("refused" not in r for r in replies)

    # msgpack by subprotocol: events and acks in msgpack.
    frames3: list[Any] = [msgpack.packb({"p": i}) for i in range(10)]
    replies = asyncio.run(_ws_push(server, frames3, msgpack_protocol=True))
    assert replies == [{"ack": i} for i in range(1, 11)]
    server.wait_for(lambda: server.graph("prices")["events"] == 1209, what="all events counted")
    assert server.fires("prices", 1)[0]["inputs"] == {"price": {"p": 9}}


def test_websocket_reactor_commands(server: Server) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")

    async def talk() -> list[Any]:
        out = []
        async with connect(f"{server.ws_url}/v1/ws/reactor/prices", additional_headers=server.auth()) as ws:
            for command in [
                {"op": "fire_with", "id": 1, "inputs": {"price": {"p": 4}}},
                {"op": "get_state", "id": 2},
                {"op": "pause", "id": 3},
                {"op": "resume", "id": 4},
                {"op": "force_fire", "id": 5},
                {"op": "explode", "id": 6},
            ]:
                await ws.send(json.dumps(command))
                out.append(json.loads(await ws.recv()))
            await ws.send("[1, 2")
            out.append(json.loads(await ws.recv()))
        return out

    fired, state, paused, resumed, forced, unknown, garbage = asyncio.run(talk())
    assert fired["id"] == 1 and fired["ok"] and fired["result"]["fire"]["outputs"] == {"double": 8}
    assert state["result"]["inputs"] == {"price": {"p": 4}} and state["result"]["paused"] is False
    assert paused["result"] == {"paused": True} and resumed["result"] == {"paused": False}
    assert forced["ok"] and forced["result"]["fire"]["trigger"] == "manual"
    assert unknown == {
        "id": 6,
        "ok": False,
        "code": "bad_request",
        "error": "op must be one of force_fire, fire_with, get_state, pause, resume; got 'explode'",
    }
    assert garbage["ok"] is False and garbage["code"] == "bad_json"


STATEFUL_V1 = """
import headrace as hr

@hr.state_accumulator(capacity=3)
def window(event):
    return event

@hr.passthrough_accumulator
def extra(event):
    return event

graph = hr.ComputationGraph("stateful", accumulators=[window, extra], criteria=hr.when_any(window))

@graph.node
def seen(window, extra=None):
    return {"window": window, "version": 1}
"""

# Version 2 drops accumulator `extra` and adds `fresh`; `window` survives.
STATEFUL_V2 = STATEFUL_V1.replace("extra", "fresh").replace('"version": 1', '"version": 2')


def test_new_version_replaces_the_graph_and_keeps_surviving_state(server: Server) -> None:
    server.deploy(package_bytes("stateful", STATEFUL_V1), "stateful")
    for v in (1, 2):
        r = server.http.post("/v1/health/accumulators/window/inject", json={"event": v})
        assert r.status_code == 200, r.text
    server.wait_for(lambda: server.graph("stateful")["events"] == 2, what="two events")
    old_pid = server.graph("stateful")["worker"]["pid"]

    r = server.upload(package_bytes("stateful", STATEFUL_V2, version="0.2.0"))
    assert r.status_code == 200 and r.json()["replaced"] == "0.1.0" and r.json()["version"] == "0.2.0", r.text
    detail = server.wait_state("stateful", "running")
    assert detail["package"]["version"] == "0.2.0" and detail["accumulators"] == ["window", "fresh"]
    assert not _alive(old_pid)
    server.http.post("/v1/health/accumulators/window/inject", json={"event": 3})
    fire = server.wait_for(
        lambda: (f := server.fires("stateful", 1)) and f[0]["outputs"]["seen"]["version"] == 2 and f[0],
        what="a fire of version 2",
    )
    assert fire["outputs"]["seen"]["window"] == [1, 2, 3]  # the window survived the new version
    listing = server.http.get("/v1/tenants/public/workflows").json()
    assert [(i["graph"], i["version"]) for i in listing["items"]] == [("stateful", "0.2.0")]

    # Delete: the graph stops; uploading it again resumes its state.
    r = server.http.delete("/v1/tenants/public/workflows/stateful")
    assert r.status_code == 200 and r.json() == {"deleted": "stateful", "version": "0.2.0"}
    assert server.http.get("/v1/health/graphs/stateful").status_code == 404
    server.deploy(package_bytes("stateful", STATEFUL_V2, version="0.2.1"), "stateful")
    server.http.post("/v1/health/accumulators/window/inject", json={"event": 4})
    server.wait_for(
        lambda: (f := server.fires("stateful", 1)) and f[0]["outputs"]["seen"]["window"] == [2, 3, 4],
        what="the window continued after delete and upload",
    )


def test_workers_die_with_the_supervisor(server: Server) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")
    pid = server.graph("prices")["worker"]["pid"]
    assert server.proc is not None
    server.stop(signal.SIGKILL)  # no chance to stop its workers
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the worker outlived a SIGKILLed supervisor"
    # The next server restores it as usual.
    server.start()
    server.wait_state("prices", "running")


def test_metrics(server: Server) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")
    for p in range(3):
        server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": p}})
    server.wait_for(lambda: server.graph("prices")["health"]["fire_count"] == 3, what="three fires")
    text = server.http.get("/metrics").text
    labels = 'graph="prices",tenant="public"'
    assert f"headrace_fires_total{{{labels}}} 3.0" in text
    assert f'headrace_events_total{{accumulator="price",{labels}}} 3.0' in text
    assert f'headrace_graph_up{{{labels.replace("tenant", "state=" + chr(34) + "running" + chr(34) + ",tenant")}}} 1.0' in text
    assert f"headrace_fire_duration_seconds_count{{{labels}}} 3.0" in text
    assert f"headrace_push_to_fire_seconds_count{{{labels}}} 3.0" in text
    assert f'headrace_fire_duration_seconds_bucket{{{labels.replace("tenant", "le=" + chr(34) + "+Inf" + chr(34) + ",tenant")}}} 3.0' in text
    for name in ("headrace_queue_depth", "headrace_worker_restarts_total", "headrace_checkpoint_duration_seconds"):
        assert name in text


def test_headrace_upload_command(server: Server, tmp_path: Path) -> None:
    import subprocess
    import sys

    archive = tmp_path / "prices-0.1.0.tar.gz"
    archive.write_bytes(package_bytes("prices", PRICES))
    env = {**os.environ, "HEADRACE_URL": server.url, "HEADRACE_KEY": server.key}
    done = subprocess.run([sys.executable, "-m", "headrace", "upload", str(archive)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "running" and "uploaded prices 0.1.0" in done.stderr
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(package_bytes("prices", PRICES, extra_manifest="\n[extras]\nx = 1\n"))
    done = subprocess.run([sys.executable, "-m", "headrace", "upload", str(bad)], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "upload refused (400)" in done.stderr and "package.toml.extras" in done.stderr


def test_serve_init_prints_the_first_admin_key_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "HEADRACE_ADMIN_KEY"}
    port = str(Server(data).port)
    env.update({"HEADRACE_DATA_DIR": str(data), "HEADRACE_PORT": port})
    outputs = []
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "headrace", "serve", "--init"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            import httpx

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        outputs.append((out, err))
    (first_out, _), (second_out, second_err) = outputs
    key = first_out.strip()
    assert key.startswith("clk_") and len(key) >= 47
    assert second_out.strip() == "" and "already has an admin key" in second_err


def test_websocket_frames_over_the_limit_close_the_socket(server: Server) -> None:
    server.deploy(package_bytes("prices", PRICES), "prices")

    async def oversized() -> tuple[Any, list[Any]]:
        replies = []
        async with connect(f"{server.ws_url}/v1/ws/accumulator/price", additional_headers=server.auth()) as ws:
            await ws.send(json.dumps({"p": 1}))
            replies.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"p": "x" * (1024 * 1024)}))
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as e:
                return e.rcvd, replies
        raise AssertionError("an oversized frame was accepted")

    close, replies = asyncio.run(oversized())
    assert replies == [{"ack": 1}]
    assert close is not None and close.code == 1009, close
    assert server.graph("prices")["events"] == 1
