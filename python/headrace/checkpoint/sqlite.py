"""SQLite: the embedded default. WAL mode; ``synchronous`` FULL unless asked otherwise."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

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
SCHEMA_VERSION = 1


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
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def load(self, tenant: str, graph: str) -> dict[str, bytes]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT component, data FROM headrace_checkpoint WHERE tenant = ? AND graph = ?",
                (tenant, graph),
            ).fetchall()
        return {component: bytes(data) for component, data in rows}

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        now = time.time()
        names = frozenset(components)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
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
                self._conn.execute("ROLLBACK")
                self._names.pop((tenant, graph), None)
                raise
            self._names[(tenant, graph)] = names

    def describe(self) -> str:
        return f"sqlite:///{self.path} (synchronous={self.synchronous})"

    def close(self) -> None:
        with self._lock:
            self._conn.close()
