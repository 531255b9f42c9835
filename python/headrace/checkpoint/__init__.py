"""Checkpoint stores and the writer that feeds them.

State is sealed in Rust (versioned, CRC32C-checked envelopes; bincode by
default, msgpack or JSON on request) and written here, off the hot path.
"""

import json
from typing import Any

from headrace import _core
from headrace.checkpoint.memory import MemoryStore
from headrace.checkpoint.store import CheckpointStore, open_store
from headrace.checkpoint.writer import CheckpointWriter

__all__ = ["CheckpointStore", "CheckpointWriter", "MemoryStore", "inspect", "open_store"]


def inspect(store: str | CheckpointStore, graph: str, tenant: str = "public") -> dict[str, Any]:
    """The graph's stored checkpoint, component by component, decoded into
    plain data (JSON mapping: bytes, tuples and big ints appear as tagged
    objects). Raises CheckpointError naming a component that cannot be read."""
    opened = not isinstance(store, CheckpointStore)
    s = open_store(store)
    try:
        components = s.load(tenant, graph)
    finally:
        if opened:
            s.close()
    return {name: json.loads(_core.read_component(name, blob)) for name, blob in sorted(components.items())}
