"""The one exception hierarchy of headrace. Rust raises these same classes."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccumulatorError",
    "BackpressureError",
    "CheckpointError",
    "FencedError",
    "FireTimeoutError",
    "GraphDefinitionError",
    "HeadraceError",
    "InvalidNameError",
    "JournalError",
    "MissingDependencyError",
    "NodeError",
    "PayloadError",
    "SettingError",
    "StoreUnavailableError",
    "UncheckpointableError",
]


class HeadraceError(Exception):
    """Base class of every error headrace raises on its own account."""


class GraphDefinitionError(HeadraceError, ValueError):
    """The graph is invalid. ``problems`` lists each problem, naming its culprits."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]


class SettingError(HeadraceError, ValueError):
    """A runtime or graph setting outside its allowed values (a misspelt mode,
    codec or strategy, a negative duration); ``setting`` names it."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class PayloadError(HeadraceError, ValueError):
    """Bytes pushed to an accumulator could not be decoded."""

    def __init__(
        self,
        message: str,
        *,
        accumulator: str,
        offset: int | None = None,
        codec: str | None = None,
    ) -> None:
        super().__init__(message)
        self.accumulator = accumulator
        self.offset = offset
        self.codec = codec


class AccumulatorError(HeadraceError):
    """An accumulator's function raised; the original exception is ``__cause__``.

    The event that caused it is kept in the runtime's dead-letter list.
    """

    def __init__(self, message: str, *, accumulator: str) -> None:
        super().__init__(message)
        self.accumulator = accumulator


class NodeError(HeadraceError):
    """A node raised during a fire; the original exception is ``__cause__``.

    ``fire`` is the failed :class:`headrace.FireResult`.
    """

    def __init__(self, message: str, *, graph: str, node: str, fire: Any = None) -> None:
        super().__init__(message)
        self.graph = graph
        self.node = node
        self.fire = fire


class FireTimeoutError(NodeError):
    """A fire overran a deadline: the graph's ``fire_timeout`` (``deadline ==
    "fire"``) or node ``node``'s own ``timeout`` (``deadline == "node"``).

    ``node`` is the node that overran, ``limit`` the deadline's length and
    ``overrun`` how far past it the node was seen to finish, in seconds (0 for
    an async node, cancelled at the deadline). The nodes after it were
    skipped; the fire failed like a raising node (inputs kept, retried,
    dead-lettered after ``max_attempts``).
    """

    def __init__(
        self,
        message: str,
        *,
        graph: str,
        node: str,
        deadline: str,
        limit: float,
        overrun: float,
        fire: Any = None,
    ) -> None:
        super().__init__(message, graph=graph, node=node, fire=fire)
        self.deadline = deadline
        self.limit = limit
        self.overrun = overrun


class BackpressureError(HeadraceError):
    """The runtime's queue is full and the event was not accepted; push it again."""

    def __init__(self, message: str, *, capacity: int | None = None) -> None:
        super().__init__(message)
        self.capacity = capacity


class CheckpointError(HeadraceError):
    """State could not be checkpointed or restored: an unsupported value type
    (named with its path), or a corrupted, truncated or unreadable checkpoint
    (named with its key)."""


class UncheckpointableError(CheckpointError):
    """A value cannot be checkpointed: ``path`` says where it sits (e.g.
    ``event['ts']``), ``value_type`` what it is.

    Raised by an inline ``push`` whose event was refused under
    ``check_checkpointable`` (``accumulator`` names where it was pushed; the
    event entered no state and is listed in the dead letters as a stand-in), and
    by ``Runtime.checkpoint()`` or ``close()`` when a checkpoint was not taken
    because of such a value (``accumulator`` is None).
    """

    def __init__(self, message: str, *, path: str, value_type: str, accumulator: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.value_type = value_type
        self.accumulator = accumulator


class FencedError(CheckpointError):
    """A newer runtime or worker of the same (tenant, graph) opened the store
    after this one: this one's checkpoints are refused by the store itself,
    so that a stale process can never overwrite what the newer one saved.
    Close this runtime; ``generation`` is the one it held, ``current`` the
    store's."""

    def __init__(self, message: str, *, tenant: str, graph: str, generation: int, current: int | None) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.graph = graph
        self.generation = generation
        self.current = current


class StoreUnavailableError(CheckpointError):
    """The checkpoint store cannot be written (disk full, read-only, locked
    for too long); the message names the store and the cause. Retried by the
    writer; nothing acknowledged is lost."""


class InvalidNameError(HeadraceError, ValueError):
    """A tenant, graph, accumulator or version name that does not match
    :data:`headrace.names.NAME_PATTERN` (names become file and folder names)."""

    def __init__(self, message: str, *, kind: str, value: object, pattern: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.value = value
        self.pattern = pattern


class MissingDependencyError(HeadraceError, ImportError):
    """An optional feature needs a package that is not installed; the message
    names the ``pip install`` that adds it."""


class JournalError(HeadraceError):
    """An input journal could not be written or read: a path that is not a
    directory, another graph's journal, a full append buffer, a failed write,
    or damage a torn last write cannot explain. For damage, ``path`` names the
    segment file and ``offset`` the byte where it starts."""

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
