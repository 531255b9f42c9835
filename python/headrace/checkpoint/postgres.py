"""PostgreSQL, through psycopg 3 and a small connection pool. The schema is
created (and migrated) on first use; each checkpoint is one transaction.

Writes are fenced (see :mod:`headrace.checkpoint.store`): a save first reads
the graph's ``headrace_fence`` row ``FOR SHARE`` in its own transaction, so a
concurrent claim (an UPDATE of that row) waits for the save to commit, and a
save after a claim sees the new generation and is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from headrace.checkpoint.store import fenced_error, unavailable_error

__all__ = ["PostgresStore"]

SCHEMA_VERSION = 2
_MIGRATIONS = {
    1: [
        """
        CREATE TABLE IF NOT EXISTS headrace_checkpoint (
            tenant     TEXT NOT NULL,
            graph      TEXT NOT NULL,
            component  TEXT NOT NULL,
            data       BYTEA NOT NULL,
            written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant, graph, component)
        )
        """,
    ],
    2: [
        """
        CREATE TABLE IF NOT EXISTS headrace_fence (
            tenant     TEXT NOT NULL,
            graph      TEXT NOT NULL,
            generation BIGINT NOT NULL,
            PRIMARY KEY (tenant, graph)
        )
        """,
    ],
}


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


class PostgresStore:
    def __init__(
        self, url: str, *, connect_timeout: float = 10.0, checkout_timeout: float = 2.0, max_size: int = 2
    ) -> None:
        """``checkout_timeout`` bounds how long a save waits for a connection:
        short, so that an outage shows in health within seconds (saves are
        retried by the writer meanwhile)."""
        self._url = url
        #: The generation this store claimed per graph: its saves need it.
        self._claimed: dict[tuple[str, str], int] = {}
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=checkout_timeout,
            kwargs={"connect_timeout": max(1, int(connect_timeout))},
            # After a server restart, pooled connections are dead: check on checkout.
            check=ConnectionPool.check_connection,
            open=False,
        )
        self._pool.open(wait=True, timeout=connect_timeout)
        self._migrate()

    def _migrate(self) -> None:
        with self._pool.connection() as conn:
            # A tenant's role (see postgres_roles) may read the schema version, not change it.
            if conn.execute("SELECT to_regclass('headrace_schema')").fetchone() != (None,):
                row = conn.execute("SELECT max(version) FROM headrace_schema").fetchone()
                if row is not None and row[0] == SCHEMA_VERSION:
                    return
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS headrace_schema (version INTEGER NOT NULL)")
            # Serialise concurrent first starts of several servers.
            conn.execute("LOCK TABLE headrace_schema IN EXCLUSIVE MODE")
            row = conn.execute("SELECT max(version) FROM headrace_schema").fetchone()
            current = row[0] if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{_redacted(self._url)}: checkpoint schema version {current} is newer than this headrace ({SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO headrace_schema (version) VALUES (%s)", (version,))

    def load(self, tenant: str, graph: str) -> dict[str, bytes]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT component, data FROM headrace_checkpoint WHERE tenant = %s AND graph = %s",
                (tenant, graph),
            ).fetchall()
        return {component: bytes(data) for component, data in rows}

    def claim(self, tenant: str, graph: str) -> int:
        """Takes the next generation of (tenant, graph): from now on, saves of
        any store that claimed an older one are refused."""
        with self._errors("claim"), self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO headrace_fence (tenant, graph, generation) VALUES (%s, %s, 1)"
                " ON CONFLICT (tenant, graph) DO UPDATE SET generation = headrace_fence.generation + 1"
                " RETURNING generation",
                (tenant, graph),
            ).fetchone()
        assert row is not None
        self._claimed[(tenant, graph)] = int(row[0])
        return int(row[0])

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        with self._errors("save"), self._pool.connection() as conn, conn.transaction():
            claimed = self._claimed.get((tenant, graph))
            if claimed is not None:
                row = conn.execute(
                    "SELECT generation FROM headrace_fence WHERE tenant = %s AND graph = %s FOR SHARE",
                    (tenant, graph),
                ).fetchone()
                current = None if row is None else int(row[0])
                if current != claimed:
                    raise fenced_error(self.describe(), tenant, graph, claimed, current)
            conn.execute("DELETE FROM headrace_checkpoint WHERE tenant = %s AND graph = %s", (tenant, graph))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO headrace_checkpoint (tenant, graph, component, data) VALUES (%s, %s, %s, %s)",
                    [(tenant, graph, c, d) for c, d in components.items()],
                )

    def discard(self, tenant: str, graph: str) -> None:
        """Deletes the graph's checkpoint and fences every process writing it."""
        with self._errors("discard"), self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM headrace_checkpoint WHERE tenant = %s AND graph = %s", (tenant, graph))
            conn.execute(
                "UPDATE headrace_fence SET generation = generation + 1 WHERE tenant = %s AND graph = %s",
                (tenant, graph),
            )

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (psycopg.errors.DiskFull, psycopg.errors.ReadOnlySqlTransaction, PoolTimeout) as e:
            raise unavailable_error(self.describe(), what, e) from e

    def describe(self) -> str:
        return _redacted(self._url)

    def close(self) -> None:
        self._pool.close()
