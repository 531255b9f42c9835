"""Running the server: uvicorn with the limits set explicitly."""

from __future__ import annotations

import logging

import uvicorn

from headrace.server import redact
from headrace.server.app import create_app
from headrace.server.auth import KeyRevoked, KeyStore
from headrace.server.config import ServerConfig
from headrace.server.limits import header_deadline_protocol

__all__ = ["open_keys", "serve"]

log = logging.getLogger("headrace.server")


def open_keys(config: ServerConfig) -> KeyStore:
    """The server's key store, with ``admin_key`` registered if one is set."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    keys = KeyStore(config.data_dir / "keys.db")
    if config.admin_key:
        try:
            keys.ensure(config.admin_key, config.admin_tenant, "admin", label="HEADRACE_ADMIN_KEY")
        except KeyRevoked:
            log.warning("HEADRACE_ADMIN_KEY was revoked; it stays revoked (unset it, or set a new key)")
        except ValueError as e:
            keys.close()
            raise ValueError(f"HEADRACE_ADMIN_KEY: {e}") from e
    return keys


def uvicorn_config(config: ServerConfig, keys: KeyStore) -> uvicorn.Config:
    limits = config.limits
    return uvicorn.Config(
        create_app(config, keys=keys),
        host=config.host,
        port=config.port,
        http=header_deadline_protocol(limits.header_deadline),
        ws="websockets-sansio",
        ws_max_size=limits.max_frame_bytes,
        # Compressed frames defeat every byte bound: one 256 KiB read of deflated
        # frames inflated to 120 MiB of messages, all queued before reading paused.
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
        log_level="info",
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
        # The app refuses requests past max_connections with a JSON 503; this
        # backstop also counts idle keep-alive connections.
        limit_concurrency=2 * limits.max_connections,
    )


def serve(config: ServerConfig) -> None:
    """Runs the server until interrupted; workers stop with it."""
    keys = open_keys(config)
    server = uvicorn.Server(uvicorn_config(config, keys))
    redact.install()  # after uvicorn.Config has set logging up
    server.run()
