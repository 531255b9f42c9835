"""A PostgreSQL role per tenant, so a tenant's workers can touch only its own rows.

The server connects with the store URL it was given (it owns the tables); for
each tenant it creates a login role ``headrace_t_<hash>`` with a fresh random
password (per server start), grants it the checkpoint table, and a row-level
security policy limits the role to rows whose ``tenant`` is that tenant. The
worker gets the store URL with the role as user and the password in its
environment (``PGPASSWORD``, read by libpq), never on its command line.
The table owner (the server's role) is not subject to the policies.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from headrace.checkpoint.postgres import PostgresStore

__all__ = ["TENANT_TABLES", "cannot_create_roles", "provision_tenant_role", "role_name"]

#: Tables a tenant's workers write, each with a ``tenant`` column under row-level security.
TENANT_TABLES = ("headrace_checkpoint", "headrace_fence")


def role_name(tenant: str) -> str:
    return "headrace_t_" + hashlib.sha256(tenant.encode()).hexdigest()[:20]


def cannot_create_roles(url: str) -> str | None:
    """Why the server's role cannot provision tenant roles, or None if it can."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
    except psycopg.OperationalError:
        # Unreachable now: each worker's start provisions its role, and fails (and is retried) until it can.
        return None
    if row is None or not (row[0] or row[1]):
        return "the store's PostgreSQL role lacks CREATEROLE, so tenants cannot get roles of their own"
    return None


def provision_tenant_role(url: str, tenant: str) -> tuple[str, str]:
    """Creates or refreshes ``tenant``'s role; returns (worker URL without a
    password, the role's new password)."""
    PostgresStore(url).close()  # the tables exist (and are current) before they are granted
    role = role_name(tenant)
    password = secrets.token_urlsafe(24)
    ident = sql.Identifier(role)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn, conn.transaction():
        # One tenant's roles are set up by one server at a time.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (role,))
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION").format(ident)
            )
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = row[0] if row else "public"
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), ident))
        conn.execute(sql.SQL("GRANT SELECT ON headrace_schema TO {}").format(ident))
        for table in TENANT_TABLES:
            table_id = sql.Identifier(table)
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(table_id, ident))
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table_id))
            exists = conn.execute(
                "SELECT 1 FROM pg_policies WHERE schemaname = %s AND tablename = %s AND policyname = %s",
                (schema, table, role),
            ).fetchone()
            if exists is None:
                conn.execute(
                    sql.SQL("CREATE POLICY {} ON {} TO {} USING (tenant = {}) WITH CHECK (tenant = {})").format(
                        ident, table_id, ident, sql.Literal(tenant), sql.Literal(tenant)
                    )
                )
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, "")), password
