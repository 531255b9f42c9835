"""Open WebSockets end when their key is revoked.

A key is checked once, at the handshake; a socket can stay open for days. So
every open socket is registered under its key id, and a revocation closes the
key's sockets: at once when it comes through the API, and within
:data:`POLL_INTERVAL` seconds when it comes from elsewhere (``headrace keys
revoke`` on the data dir of a running server), found by a watcher that asks
the key store which of the open sockets' keys are revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable

from headrace.server.auth import KeyStore

__all__ = ["CLOSE_CODE", "CLOSE_REASON", "POLL_INTERVAL", "OpenSockets", "until_revoked"]

log = logging.getLogger("headrace.server")

#: Seconds between checks of the key store for revocations made outside the API.
POLL_INTERVAL = 0.25
#: WebSocket close code and reason sent when the socket's key is revoked
#: (1008: policy violation).
CLOSE_CODE = 1008
CLOSE_REASON = "API key revoked"


class OpenSockets:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._revoked: dict[str, set[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def holding(self, key_id: str) -> AsyncIterator[asyncio.Event]:
        """Registers a socket of ``key_id``; the event is set when the key is revoked."""
        event = asyncio.Event()
        self._revoked.setdefault(key_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._revoked.get(key_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._revoked[key_id]

    def revoke(self, key_id: str) -> None:
        for event in self._revoked.get(key_id, ()):
            event.set()

    async def watch(self) -> None:
        """Runs until cancelled: finds revocations made outside the API."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if not self._revoked:
                continue
            try:
                revoked = await asyncio.to_thread(self.keys.revoked, list(self._revoked))
            except Exception:
                log.exception("checking for revoked keys failed; retrying")
                continue
            for key_id in revoked:
                self.revoke(key_id)


async def until_revoked(revoked: asyncio.Event, work: Awaitable[None]) -> bool:
    """Runs ``work`` until it ends or ``revoked`` is set (then cancels it);
    True if the key was revoked."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(revoked.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return revoked.is_set()
