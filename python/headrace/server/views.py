"""What the API shows: pure functions from workers, stats and grants to JSON-ready dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headrace.server.auth import Grant
from headrace.supervisor.process import GraphWorker

__all__ = ["accumulator_names", "durable", "grant_json", "graph_detail", "graph_summary", "iso", "reactor"]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def accumulator_names(worker: GraphWorker) -> list[str]:
    described = worker.describe.get("accumulators")
    if described:
        return [a["name"] for a in described]
    return list(worker.accumulators)


def graph_summary(worker: GraphWorker, stats: dict[str, Any] | None) -> dict[str, Any]:
    d = worker.describe
    record = worker.record
    return {
        "name": worker.spec.graph,
        "tenant": worker.spec.tenant,
        "state": worker.state,
        "version": worker.spec.version,
        "package": record.package if record else None,
        "accumulators": accumulator_names(worker),
        "reaction_mode": d.get("reaction_mode"),
        "input_strategy": d.get("input_strategy"),
        "paused": bool(stats and stats["paused"]),
        "fire_count": stats["fire_count"] if stats else None,
        "last_fired_at": iso(stats["last_fired_at"]) if stats else None,
        "restarts": worker.restarts,
        "last_error": worker.last_error or (stats and stats.get("last_error")),
    }


def graph_detail(worker: GraphWorker, stats: dict[str, Any] | None) -> dict[str, Any]:
    d = worker.describe
    accs = []
    for a in d.get("accumulators", []) or [{"name": n} for n in worker.accumulators]:
        s = (stats or {}).get("accumulators", {}).get(a["name"], {})
        accs.append({**a, **s, "graph": worker.spec.graph})
    events = sum(a.get("events", 0) for a in accs)
    record = worker.record
    return {
        "name": worker.spec.graph,
        "tenant": worker.spec.tenant,
        "health": {
            "state": worker.state,
            "engine": stats["health"] if stats else None,
            "last_fired_at": iso(stats["last_fired_at"]) if stats else None,
            "fire_count": stats["fire_count"] if stats else 0,
        },
        "accumulators": accumulator_names(worker),
        "paused": bool(stats and stats["paused"]),
        "package": record.public() if record else None,
        "reaction_mode": d.get("reaction_mode"),
        "criteria": d.get("criteria_members"),
        "input_strategy": d.get("input_strategy"),
        "topology": {"nodes": d.get("nodes", []), "order": d.get("order", [])},
        "accumulator_health": accs,
        "events": events,
        "fires_failed": stats["fires_failed"] if stats else None,
        "queue_depth": stats["queue_depth"] if stats else None,
        "dead_letters": len(stats["dead_letters"]) if stats else None,
        "journal": stats.get("journal") if stats else None,
        "checkpoint": stats.get("checkpoint") if stats else None,
        "sources": stats.get("sources") if stats else None,
        "worker": {"pid": worker.pid, "restarts": worker.restarts, "started_at": iso(worker.started_at)},
        "last_error": worker.last_error or (stats.get("last_error") if stats else None),
    }


def reactor(worker: GraphWorker, stats: dict[str, Any] | None) -> dict[str, Any]:
    d = worker.describe
    return {
        "name": worker.spec.graph,
        "graph": worker.spec.graph,
        "state": worker.state,
        "reaction_mode": d.get("reaction_mode"),
        "criteria": d.get("criteria_members"),
        "input_strategy": d.get("input_strategy"),
        "accumulators": accumulator_names(worker),
        "paused": bool(stats and stats["paused"]),
        "fire_count": stats["fire_count"] if stats else None,
        "last_fired_at": iso(stats["last_fired_at"]) if stats else None,
        "queue_depth": stats["queue_depth"] if stats else None,
        "pending": stats["pending"] if stats else None,
    }


def grant_json(g: Grant) -> dict[str, Any]:
    return {
        "id": g.key_id,
        "tenant": g.tenant,
        "role": g.role,
        "graphs": list(g.graphs),
        "label": g.label,
        "created_at": iso(g.created_at),
    }


def durable(result: dict[str, Any]) -> dict[str, Any]:
    if result.get("durable") is False:
        return {"durable": False, "checkpoint_error": result.get("checkpoint_error")}
    return {"durable": True}
