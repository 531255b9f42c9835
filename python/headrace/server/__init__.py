"""The headrace server: API keys and tenants (more arrives with the HTTP API)."""

from headrace.server.auth import (
    ROLES,
    AuthError,
    Grant,
    KeyStore,
    authorize,
    generate_key,
    hash_key,
)

__all__ = ["ROLES", "AuthError", "Grant", "KeyStore", "authorize", "generate_key", "hash_key"]
