"""PostgreSQL, through psycopg 3 and a small connection pool. The schema is
created (and migrated) on first use; each checkpoint is one transaction."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from psycopg_pool import ConnectionPool

__all__ = ["PostgresStore"]

SCHEMA_VERSION = 1
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

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM headrace_checkpoint WHERE tenant = %s AND graph = %s", (tenant, graph))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO headrace_checkpoint (tenant, graph, component, data) VALUES (%s, %s, %s, %s)",
                    [(tenant, graph, c, d) for c, d in components.items()],
                )

    def describe(self) -> str:
        return _redacted(self._url)

    def close(self) -> None:
        self._pool.close()
