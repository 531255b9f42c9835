"""Per-graph settings an operator keeps in the data dir, beside (not in) the
graph's package, so they survive new uploads: what a worker does with a
checkpoint it cannot read (``on_corrupt``, as for the embedded Runtime).
Set with ``headrace checkpoint on-corrupt``; read at each worker start."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ON_CORRUPT", "graph_key", "read_settings", "write_on_corrupt"]

#: The Runtime's choices: refuse to start (the default), or log and start empty.
ON_CORRUPT = ("refuse", "start_empty")


def graph_key(tenant: str, graph: str) -> str:
    """A short file-name-safe key of (tenant, graph)."""
    return hashlib.sha256(f"{tenant}\0{graph}".encode()).hexdigest()[:16]


def _path(data_dir: Path, tenant: str, graph: str) -> Path:
    return data_dir.resolve() / "graph-settings" / f"{graph_key(tenant, graph)}.json"


def read_settings(data_dir: Path, tenant: str, graph: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_path(data_dir, tenant, graph).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def write_on_corrupt(data_dir: Path, tenant: str, graph: str, policy: str) -> None:
    """Raises ValueError for a policy that is not one of :data:`ON_CORRUPT`."""
    if policy not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {policy!r}")
    path = _path(data_dir, tenant, graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {**read_settings(data_dir, tenant, graph), "tenant": tenant, "graph": graph, "on_corrupt": policy}
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(settings))
    tmp.replace(path)
