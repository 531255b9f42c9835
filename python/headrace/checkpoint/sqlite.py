"""SQLite: the embedded default. WAL mode; ``synchronous`` FULL unless asked otherwise.

Writes are fenced (see :mod:`headrace.checkpoint.store`): a ``claim`` bumps
the graph's generation in ``headrace_fence``, and a save commits only while
that row still holds the generation this store claimed. The check and the
write share one ``BEGIN IMMEDIATE`` transaction, so a claim by another
process cannot slip in between.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from headrace.checkpoint.store import fenced_error, unavailable_error

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS headrace_checkpoint (
    tenant     TEXT NOT NULL,
    graph      TEXT NOT NULL,
    component  TEXT NOT NULL,
    data       BLOB NOT NULL,
    written_at REAL NOT NULL,
    PRIMARY KEY (tenant, graph, component)
)
"""
_FENCE = """
CREATE TABLE IF NOT EXISTS headrace_fence (
    tenant     TEXT NOT NULL,
    graph      TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (tenant, graph)
)
"""
SCHEMA_VERSION = 2


class SqliteStore:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL", busy_timeout: float = 30.0) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"sqlite synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        # The component names last written per graph: while they stay the same
        # (the usual case) a save is one upsert, with no DELETE of stale ones.
        self._names: dict[tuple[str, str], frozenset[str]] = {}
        #: The generation this store claimed per graph: its saves need it.
        self._claimed: dict[tuple[str, str], int] = {}
        # One connection, used from the caller's thread (load) and the writer's
        # (save); the lock serialises them. sqlite3 releases the GIL while it works.
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: checkpoint schema version {version} is newer than this headrace ({SCHEMA_VERSION})"
                )
            self._conn.execute(_SCHEMA)
            self._conn.execute(_FENCE)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def load(self, tenant: str, graph: str) -> dict[str, bytes]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT component, data FROM headrace_checkpoint WHERE tenant = ? AND graph = ?",
                (tenant, graph),
            ).fetchall()
        return {component: bytes(data) for component, data in rows}

    def claim(self, tenant: str, graph: str) -> int:
        """Takes the next generation of (tenant, graph): from now on, saves of
        any store that claimed an older one are refused."""
        with self._lock, self._errors("claim"):
            row = self._conn.execute(
                "INSERT INTO headrace_fence (tenant, graph, generation) VALUES (?, ?, 1)"
                " ON CONFLICT (tenant, graph) DO UPDATE SET generation = generation + 1"
                " RETURNING generation",
                (tenant, graph),
            ).fetchone()
            self._claimed[(tenant, graph)] = int(row[0])
            return int(row[0])

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        now = time.time()
        names = frozenset(components)
        with self._lock, self._errors("save"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_fence(tenant, graph)
                if self._names.get((tenant, graph)) != names:
                    self._conn.execute(
                        "DELETE FROM headrace_checkpoint WHERE tenant = ? AND graph = ?", (tenant, graph)
                    )
                self._conn.executemany(
                    "INSERT INTO headrace_checkpoint (tenant, graph, component, data, written_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, graph, component)"
                    " DO UPDATE SET data = excluded.data, written_at = excluded.written_at",
                    [(tenant, graph, c, d, now) for c, d in components.items()],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full) may have rolled back already: a
                # second ROLLBACK would hide the cause behind "cannot rollback".
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._names.pop((tenant, graph), None)
                raise
            self._names[(tenant, graph)] = names

    def discard(self, tenant: str, graph: str) -> None:
        """Deletes the graph's checkpoint and fences every process writing it."""
        with self._lock, self._errors("discard"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM headrace_checkpoint WHERE tenant = ? AND graph = ?", (tenant, graph))
                self._conn.execute(
                    "UPDATE headrace_fence SET generation = generation + 1 WHERE tenant = ? AND graph = ?",
                    (tenant, graph),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._names.pop((tenant, graph), None)

    def _check_fence(self, tenant: str, graph: str) -> None:
        claimed = self._claimed.get((tenant, graph))
        if claimed is None:
            return  # never claimed: an unfenced writer (tools, tests)
        row = self._conn.execute(
            "SELECT generation FROM headrace_fence WHERE tenant = ? AND graph = ?", (tenant, graph)
        ).fetchone()
        current = None if row is None else int(row[0])
        if current != claimed:
            raise fenced_error(self.describe(), tenant, graph, claimed, current)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as e:
            raise unavailable_error(self.describe(), what, e) from e

    def describe(self) -> str:
        return f"sqlite:///{self.path} (synchronous={self.synchronous})"

    def close(self) -> None:
        with self._lock:
            self._conn.close()
