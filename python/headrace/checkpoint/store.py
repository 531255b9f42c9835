"""The store protocol, fencing, and opening a store from a URL.

Fencing: two processes must never write the same graph's checkpoint (a
stale worker's final checkpoint would land on top of what its replacement
acknowledged). So every runtime with a store first *claims* the graph: the
store bumps a generation number kept beside the checkpoint, and every later
save of that store commits only while the generation is still the one it
claimed, checked inside the save's own transaction. The newest opener wins;
an older one's saves raise :class:`~headrace.errors.FencedError`. Stores
written outside headrace may omit ``claim`` (their writes are not fenced).
"""

from __future__ import annotations

import errno
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from headrace.errors import FencedError, MissingDependencyError, StoreUnavailableError

__all__ = ["CheckpointStore", "claim", "fenced_error", "open_store", "unavailable_error"]


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpoints live, keyed by (tenant, graph, component).

    A checkpoint is a complete set of components: ``save`` replaces the
    graph's previous set in one transaction, so state and the stream
    positions that go with it never disagree.
    """

    def load(self, tenant: str, graph: str) -> dict[str, bytes]:
        """The graph's components (empty if it has never been checkpointed)."""
        ...

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        """Replaces the graph's components, atomically and durably."""
        ...

    def describe(self) -> str:
        """Where this store is, for logs and errors (no secrets)."""
        ...

    def close(self) -> None: ...


def claim(store: CheckpointStore, tenant: str, graph: str) -> int | None:
    """Claims (tenant, graph) on ``store`` if it supports fencing: the
    generation taken, or None for a store without ``claim``."""
    take = getattr(store, "claim", None)
    return None if take is None else int(take(tenant, graph))


def fenced_error(where: str, tenant: str, graph: str, generation: int, current: int | None) -> FencedError:
    return FencedError(
        f"checkpoint of graph '{graph}' (tenant '{tenant}') refused by {where}: another runtime or worker "
        f"opened this graph after this one (this one holds generation {generation}, the store is at "
        f"{'none (discarded)' if current is None else current}); close this one",
        tenant=tenant,
        graph=graph,
        generation=generation,
        current=current,
    )


def unavailable_error(where: str, what: str, cause: BaseException) -> StoreUnavailableError:
    """A store failure named plainly: which store, what it was doing, why."""
    text = str(cause) or type(cause).__name__
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC or "full" in text.lower():
        text = f"the disk holding it is full ({text})"
    return StoreUnavailableError(f"checkpoint store {where} cannot {what}: {text}")


def open_store(target: str | CheckpointStore) -> CheckpointStore:
    """A store from a URL: ``memory`` / ``memory://name`` (in this process),
    ``sqlite:///relative.db`` / ``sqlite:////absolute.db`` (``?synchronous=NORMAL``
    to trade the last commit for speed; FULL by default), or
    ``postgresql://user@host:port/db``. A store object is returned as is."""
    if not isinstance(target, str):
        if isinstance(target, CheckpointStore):
            return target
        raise TypeError(f"store must be a URL or a CheckpointStore, got {type(target).__name__}")
    if target == "memory":
        target = "memory://default"
    parts = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        from headrace.checkpoint.memory import MemoryStore

        return MemoryStore(parts.netloc or parts.path or "default")
    if parts.scheme == "sqlite":
        from headrace.checkpoint.sqlite import SqliteStore

        # sqlite:///relative.db -> "relative.db"; sqlite:////abs.db -> "/abs.db"
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError(f"store URL {target!r} names no database file (e.g. sqlite:///state.db)")
        return SqliteStore(path, synchronous=query.get("synchronous", "FULL"))
    if parts.scheme in ("postgresql", "postgres"):
        try:
            from headrace.checkpoint.postgres import PostgresStore
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith("psycopg"):
                raise
            raise MissingDependencyError(
                f"a PostgreSQL store needs psycopg (module {e.name!r} is not installed): pip install 'headrace[postgres]'"
            ) from e

        return PostgresStore(target)
    raise ValueError(
        f"unknown store URL {target!r}: use memory://NAME, sqlite:///PATH or postgresql://..."
    )
