"""What sources push into: the few runtime methods a stream source or the
poller calls. Sources depend on this protocol, never on ``headrace.runtime``,
so the runtime can build and own them without an import cycle;
``headrace.Runtime`` satisfies it (checked by mypy in ``runtime.py``).

Sources hold their target weakly: a runtime dropped without ``close()`` is
still collected, and its sources stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["SourceTarget"]


class SourceTarget(Protocol):
    @property
    def graph_name(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    def push(self, name: str, event: Any) -> object:
        """Takes one event for accumulator ``name`` (the result is not looked at)."""
        ...

    def push_messages(self, name: str, messages: Iterable[Any]) -> list[Any]:
        """Takes a batch of broker messages; returns those that carried an error."""
        ...

    def set_health(self, name: str, health: str, error: str | None = None) -> None: ...

    def checkpoint(self, timeout: float | None = 30.0) -> None:
        """Returns once everything taken so far is durable."""
        ...

    def restored_positions(self) -> Iterable[tuple[str, str, int, int]]:
        """``(accumulator, topic, partition, next offset)`` from the restored checkpoint."""
        ...
