"""An event whose state no checkpoint can hold is refused alone, in the
server: the other producers' events stay acknowledged as durable, and the
graph keeps checkpointing (issue: one producer's bad event made every other
producer's acks ``durable: false``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from server_util import Server, package_bytes

#: The accumulator turns an event flagged "bad" into a value of a type no
#: checkpoint codec holds (the way a package may build its own objects).
OPAQUE = """
import headrace as hr

class Opaque:
    pass

@hr.passthrough_accumulator
def price(event):
    if event.get("bad"):
        return {"p": event["p"], "tag": Opaque()}
    return event

graph = hr.ComputationGraph("prices", accumulators=[price])

@graph.node
def double(price):
    return price["p"] * 2
"""


async def _producer(server: Server, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    url = f"{server.ws_url}/v1/ws/accumulator/price"
    async with connect(url, additional_headers=server.auth(), max_size=None) as ws:
        replies = []
        for e in events:  # one at a time, so the two producers interleave
            await ws.send(json.dumps(e))
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        return replies


async def _two_producers(server: Server) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    good = [{"p": i} for i in range(50)]
    mixed = [{"p": 1000}, {"p": 1001, "bad": True}, {"p": 1002}]
    a, b = await asyncio.gather(_producer(server, good), _producer(server, mixed))
    return a, b


def test_an_uncheckpointable_event_is_refused_alone(server: Server) -> None:
    server.deploy(package_bytes("prices", OPAQUE), "prices")
    good, mixed = asyncio.run(_two_producers(server))

    assert all("ack" in r and r.get("durable", True) for r in good), [r for r in good if "ack" not in r][:3]
    assert "ack" in mixed[0] and mixed[0].get("durable", True), mixed
    assert mixed[1]["refused"] == 2 and mixed[1]["code"] == "not_checkpointable", mixed
    assert "Opaque" in mixed[1]["error"] and "tag" in mixed[1]["error"], mixed  # its type and where it sits
    assert "ack" in mixed[2] and mixed[2].get("durable", True), mixed

    # Inject answers the same refusal as a 400 naming it; the graph keeps going.
    r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 5000, "bad": True}})
    assert r.status_code == 400 and r.json()["code"] == "not_checkpointable", r.text
    r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 8}})
    assert r.status_code == 200 and r.json().get("durable", True), r.text
    detail = server.graph("prices")
    assert detail["checkpoint"]["failures"] == 0, detail["checkpoint"]
    assert detail["health"]["state"] == "running"
    # No fire ever saw a refused event: it entered no state.
    fires = server.fires("prices", 100)
    assert all(f["outputs"].get("double") not in (2002, 10000) for f in fires), fires
    assert fires[0]["outputs"] == {"double": 16}
