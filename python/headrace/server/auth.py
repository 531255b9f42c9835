"""API keys: who may do what to which tenant's graphs.

A key is ``clk_`` (kept for compatibility with the seed's tooling) followed
by 256 random bits. The server stores only its SHA-256 (a fast hash is right
for random secrets; argon2 is for human passwords and costs ~110 ms a check),
looks keys up by hash, and compares in constant time. Each key has a tenant,
a role (read < write < admin) and optionally the graphs it is limited to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import HeadraceError
from headrace.names import check_name

__all__ = ["ROLES", "AuthError", "Grant", "KeyStore", "authorize", "generate_key", "hash_key"]

PREFIX = "clk_"
ROLES = ("read", "write", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
#: The key store's schema (SQLite ``user_version``); see KeyStore._migrate.
_SCHEMA_VERSION = 1


class AuthError(HeadraceError):
    """A request that may not proceed; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Grant:
    """What a key may do."""

    key_id: str
    tenant: str
    role: str
    #: Graph names the key is limited to; empty: every graph of its tenant.
    graphs: tuple[str, ...] = ()
    label: str = ""
    created_at: float = 0.0


def generate_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def authorize(grant: Grant | None, *, tenant: str, action: str, graph: str | None = None) -> None:
    """Raises AuthError unless ``grant`` allows ``action`` (a role: read, write
    or admin) on ``tenant`` (and ``graph``). Another tenant's graphs, and graphs
    outside a key's scopes, answer 404, not 403: their existence is not revealed."""
    if grant is None:
        raise AuthError("missing or unknown API key", status=401, code="unauthorized")
    if grant.tenant != tenant or (graph is not None and grant.graphs and graph not in grant.graphs):
        raise AuthError("not found", status=404, code="not_found")
    if _RANK[grant.role] < _RANK[action]:
        raise AuthError(f"this key's role is '{grant.role}'; this needs '{action}'", status=403, code="forbidden")


class KeyRevoked(AuthError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=401, code="unauthorized")


class KeyStore:
    """Keys in a SQLite file of the server's data folder (hashes only)."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                """CREATE TABLE IF NOT EXISTS headrace_api_key (
                    key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
                    role TEXT NOT NULL, graphs TEXT NOT NULL, label TEXT NOT NULL,
                    created_at REAL NOT NULL, revoked_at REAL)"""
            )
            self._migrate()

    def _migrate(self) -> None:
        """Version 1 stores a key's graphs as a JSON list; version 0 (before)
        joined them with commas, which a name could not be told apart from."""
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version >= _SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for key_id, graphs in self._conn.execute("SELECT key_id, graphs FROM headrace_api_key").fetchall():
                scoped = [g for g in graphs.split(",") if g]
                self._conn.execute(
                    "UPDATE headrace_api_key SET graphs = ? WHERE key_id = ?", (json.dumps(scoped), key_id)
                )
            self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def create(self, tenant: str, role: str, graphs: tuple[str, ...] = (), label: str = "") -> tuple[str, Grant]:
        """A new key: returns the key (shown once, never stored) and its grant."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        check_name("tenant", tenant)
        for graph in graphs:
            check_name("graph", graph)
        key = generate_key()
        grant = Grant(secrets.token_hex(6), tenant, role, tuple(graphs), label, time.time())
        with self._lock:
            self._conn.execute(
                "INSERT INTO headrace_api_key VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (grant.key_id, hash_key(key), tenant, role, json.dumps(list(graphs)), label, grant.created_at),
            )
        return key, grant

    def ensure(self, key: str, tenant: str, role: str, label: str = "") -> Grant:
        """Registers a key chosen by the operator (e.g. from an environment
        variable) if it is not registered yet; returns its grant.

        Raises:
            ValueError: the key is malformed or the role unknown.
            KeyRevoked: the key was registered and then revoked.
        """
        if not key.startswith(PREFIX) or len(key) < len(PREFIX) + 32:
            raise ValueError(f"a key must be '{PREFIX}' followed by at least 32 random characters")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        check_name("tenant", tenant)
        existing = self.lookup(key)
        if existing is not None:
            return existing
        with self._lock:
            revoked = self._conn.execute(
                "SELECT 1 FROM headrace_api_key WHERE key_hash = ? AND revoked_at IS NOT NULL", (hash_key(key),)
            ).fetchone()
        if revoked:
            # A revoked key stays revoked, whatever the environment says.
            raise KeyRevoked("this key was revoked; it is not registered again")
        grant = Grant(secrets.token_hex(6), tenant, role, (), label, time.time())
        with self._lock:
            self._conn.execute(
                "INSERT INTO headrace_api_key VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (grant.key_id, hash_key(key), tenant, role, "[]", label, grant.created_at),
            )
        return grant

    def lookup(self, key: str | None) -> Grant | None:
        """The grant of an active key, or None."""
        if not key or not key.startswith(PREFIX):
            return None
        digest = hash_key(key)
        with self._lock:
            row = self._conn.execute(
                "SELECT key_id, key_hash, tenant, role, graphs, label, created_at FROM headrace_api_key"
                " WHERE key_hash = ? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        # The index found the row; compare again in constant time all the same.
        if row is None or not hmac.compare_digest(row[1], digest):
            return None
        return Grant(row[0], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6])

    def list(self, tenant: str | None = None) -> list[Grant]:
        query = "SELECT key_id, tenant, role, graphs, label, created_at FROM headrace_api_key WHERE revoked_at IS NULL"
        args: tuple[str, ...] = ()
        if tenant is not None:
            query += " AND tenant = ?"
            args = (tenant,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY created_at", args).fetchall()
        return [Grant(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5]) for r in rows]

    def revoke(self, key_id: str, tenant: str | None = None) -> bool:
        """Revokes a key by id (within ``tenant`` if given); False if none matched."""
        query = "UPDATE headrace_api_key SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        args: tuple[object, ...] = (time.time(), key_id)
        if tenant is not None:
            query += " AND tenant = ?"
            args = (*args, tenant)
        with self._lock:
            return self._conn.execute(query, args).rowcount == 1

    def revoked(self, key_ids: Sequence[str]) -> set[str]:
        """Which of ``key_ids`` are revoked (or no longer exist)."""
        if not key_ids:
            return set()
        marks = ", ".join("?" * len(key_ids))
        with self._lock:
            active = self._conn.execute(
                f"SELECT key_id FROM headrace_api_key WHERE revoked_at IS NULL AND key_id IN ({marks})", tuple(key_ids)
            ).fetchall()
        return set(key_ids) - {row[0] for row in active}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
