"""The package registry: which version of which graph each tenant runs.

Rows live in ``server.db`` in the data folder; each version's files are
extracted under ``packages/<tenant>/<graph>/<version>-<id>/``, with the
uploaded archive kept beside them.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["PackageRecord", "Registry"]


@dataclass(frozen=True)
class PackageRecord:
    tenant: str
    graph: str
    package: str
    version: str
    path: str
    sha256: str
    size: int
    uploaded_at: float
    #: Accumulator names, comma-separated (known before the worker first runs).
    accumulators: str = ""

    def public(self) -> dict[str, Any]:
        """What the API shows (never the server's paths)."""
        d = asdict(self)
        del d["path"]
        d["accumulators"] = [a for a in self.accumulators.split(",") if a]
        return d


class Registry:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS headrace_package (
                tenant TEXT NOT NULL, graph TEXT NOT NULL, package TEXT NOT NULL, version TEXT NOT NULL,
                path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, uploaded_at REAL NOT NULL,
                accumulators TEXT NOT NULL, PRIMARY KEY (tenant, graph))"""
        )

    def put(self, record: PackageRecord) -> PackageRecord | None:
        """Registers ``record``; returns the version it replaces, if any."""
        with self._lock:
            old = self._get(record.tenant, record.graph)
            self._db.execute(
                "INSERT OR REPLACE INTO headrace_package VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.tenant,
                    record.graph,
                    record.package,
                    record.version,
                    record.path,
                    record.sha256,
                    record.size,
                    record.uploaded_at,
                    record.accumulators,
                ),
            )
            return old

    def get(self, tenant: str, graph: str) -> PackageRecord | None:
        with self._lock:
            return self._get(tenant, graph)

    def _get(self, tenant: str, graph: str) -> PackageRecord | None:
        row = self._db.execute(
            "SELECT * FROM headrace_package WHERE tenant = ? AND graph = ?", (tenant, graph)
        ).fetchone()
        return PackageRecord(*row) if row else None

    def list(self, tenant: str | None = None) -> list[PackageRecord]:
        with self._lock:
            if tenant is None:
                rows = self._db.execute("SELECT * FROM headrace_package ORDER BY tenant, graph").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM headrace_package WHERE tenant = ? ORDER BY graph", (tenant,)
                ).fetchall()
        return [PackageRecord(*r) for r in rows]

    def delete(self, tenant: str, graph: str) -> PackageRecord | None:
        with self._lock:
            old = self._get(tenant, graph)
            self._db.execute("DELETE FROM headrace_package WHERE tenant = ? AND graph = ?", (tenant, graph))
            return old

    def close(self) -> None:
        with self._lock:
            self._db.close()
