"""An in-process store: checkpoints survive a Runtime, not the process."""

from __future__ import annotations

import threading

__all__ = ["MemoryStore"]

_SPACES: dict[str, dict[tuple[str, str], dict[str, bytes]]] = {}
_LOCK = threading.Lock()


class MemoryStore:
    """Stores named ``memory://NAME`` share their checkpoints within the process."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        with _LOCK:
            self._space = _SPACES.setdefault(name, {})

    def load(self, tenant: str, graph: str) -> dict[str, bytes]:
        with _LOCK:
            return dict(self._space.get((tenant, graph), {}))

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        with _LOCK:
            self._space[(tenant, graph)] = dict(components)

    def describe(self) -> str:
        return f"memory://{self.name}"

    def close(self) -> None:
        pass

    @staticmethod
    def clear(name: str) -> None:
        """Forgets every checkpoint of store ``name``."""
        with _LOCK:
            _SPACES.pop(name, None)
