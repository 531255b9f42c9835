"""An in-process store: checkpoints survive a Runtime, not the process.

Fenced like the others (see :mod:`headrace.checkpoint.store`): within one
process, the newest runtime to open a graph of a ``memory://NAME`` store wins.
"""

from __future__ import annotations

import threading

from headrace.checkpoint.store import fenced_error

__all__ = ["MemoryStore"]


class _Space:
    def __init__(self) -> None:
        self.checkpoints: dict[tuple[str, str], dict[str, bytes]] = {}
        self.generations: dict[tuple[str, str], int] = {}


_SPACES: dict[str, _Space] = {}
_LOCK = threading.Lock()


class MemoryStore:
    """Stores named ``memory://NAME`` share their checkpoints within the process."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self._claimed: dict[tuple[str, str], int] = {}
        with _LOCK:
            self._space = _SPACES.setdefault(name, _Space())

    def claim(self, tenant: str, graph: str) -> int:
        with _LOCK:
            generation = self._space.generations.get((tenant, graph), 0) + 1
            self._space.generations[(tenant, graph)] = generation
            self._claimed[(tenant, graph)] = generation
            return generation

    def load(self, tenant: str, graph: str) -> dict[str, bytes]:
        with _LOCK:
            return dict(self._space.checkpoints.get((tenant, graph), {}))

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        with _LOCK:
            claimed = self._claimed.get((tenant, graph))
            current = self._space.generations.get((tenant, graph))
            if claimed is not None and claimed != current:
                raise fenced_error(self.describe(), tenant, graph, claimed, current)
            self._space.checkpoints[(tenant, graph)] = dict(components)

    def discard(self, tenant: str, graph: str) -> None:
        """Deletes the graph's checkpoint and fences every runtime writing it."""
        with _LOCK:
            self._space.checkpoints.pop((tenant, graph), None)
            if (tenant, graph) in self._space.generations:
                self._space.generations[(tenant, graph)] += 1

    def describe(self) -> str:
        return f"memory://{self.name}"

    def close(self) -> None:
        pass

    @staticmethod
    def clear(name: str) -> None:
        """Forgets every checkpoint of store ``name``."""
        with _LOCK:
            _SPACES.pop(name, None)
