"""The StreamBackend protocol and what it trades in (its registry is
``registry.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from headrace.errors import HeadraceError

__all__ = [
    "Assignment",
    "MessageError",
    "Partition",
    "StreamBackend",
    "StreamConfig",
    "StreamError",
    "resolve_broker",
]


class StreamError(HeadraceError):
    """A stream source cannot connect or read (the source keeps retrying)."""


@dataclass(frozen=True)
class StreamConfig:
    accumulator: str
    type: str
    topic: str
    group: str
    #: The resolved broker address, and the variable it came from.
    broker: str
    broker_variable: str
    #: Extra settings passed through to the client (librdkafka's, for Kafka).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Where a partition with no checkpointed position starts: "committed"
    #: (the group's committed offset, else the beginning), "earliest",
    #: "latest", or a time as epoch seconds (the first message at or after it).
    start: str | float = "committed"


#: (topic, partition)
Partition = tuple[str, int]


@dataclass
class Assignment:
    """Callbacks a backend calls on its consuming thread when partitions move.

    ``assigned(partitions)`` returns the offsets to start from (absent: the
    broker's committed offset); ``revoked(partitions)`` returns once everything
    read from them is checkpointed and committed.
    """

    assigned: Callable[[list[Partition]], dict[Partition, int]]
    revoked: Callable[[list[Partition]], None]


@dataclass(frozen=True)
class MessageError:
    """What a message that carried an error means to its source, as a backend's
    optional ``message_error(message)`` says (without one: ``error().str()``,
    logged)."""

    #: Logged as a warning; None: routine, not logged (Kafka's end of partition).
    text: str | None
    #: Health text: the source is disconnected (its topic was deleted, ...).
    lost: str | None = None


class StreamBackend(Protocol):
    def connect(self, assignment: Assignment) -> None:
        """Subscribes; raises StreamError naming what is wrong (e.g. a missing topic)."""
        ...

    def receive(self, max_messages: int, timeout: float) -> list[Any]:
        """Up to ``max_messages`` messages: objects with value(), topic(),
        partition(), offset() and error()."""
        ...

    def commit(self, positions: Mapping[Partition, int]) -> None:
        """Commits next offsets to the broker (only ever after they are checkpointed)."""
        ...

    def connected(self) -> bool:
        """False once the client reports the broker lost; True again when it is back."""
        ...

    def close(self) -> None: ...


def resolve_broker(variable: str, accumulator: str) -> str:
    """The broker address from ``HEADRACE_VAR_<variable>`` (or, as the seed
    tutorials spell it, ``CLOACINA_VAR_<variable>``)."""
    for prefix in ("HEADRACE_VAR_", "CLOACINA_VAR_"):
        value = os.environ.get(prefix + variable)
        if value:
            return value
    raise HeadraceError(
        f"stream accumulator '{accumulator}': broker variable '{variable}' is not set; "
        f"set HEADRACE_VAR_{variable} (or CLOACINA_VAR_{variable}) to the broker address, e.g. 127.0.0.1:9092"
    )
