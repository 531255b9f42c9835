"""Awaiting async nodes and accumulators for the engine.

The engine calls :func:`run` from the thread that drives the processor (the
processor thread, or the helper thread of an ``apush``); the coroutines run on
an event loop of another thread (the runtime's own :class:`LoopThread`, one
passed in, or the loop of the ``apush`` caller), so that loop is never blocked.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

OK, RAISED, TIMED_OUT = 0, 1, 2


async def _one(coro: Coroutine[Any, Any, Any], budget: float | None) -> tuple[int, Any]:
    try:
        if budget is None:
            return OK, await coro
        # asyncio.timeout, not wait_for: a node's own TimeoutError stays its own.
        cm = asyncio.timeout(budget)
        try:
            async with cm:
                return OK, await coro
        except TimeoutError:
            if cm.expired():
                return TIMED_OUT, None
            raise
    except Exception as e:
        return RAISED, e


async def _gather(coros: Sequence[Coroutine[Any, Any, Any]], budgets: Sequence[float | None]) -> list[tuple[int, Any]]:
    return list(await asyncio.gather(*(_one(c, b) for c, b in zip(coros, budgets, strict=True))))


def run(
    loop: asyncio.AbstractEventLoop, coros: Sequence[Coroutine[Any, Any, Any]], budgets: Sequence[float | None]
) -> list[tuple[int, Any]]:
    """Awaits ``coros`` together on ``loop`` (each cancelled after its budget
    in seconds) and waits for all: ``(OK, value)``, ``(RAISED, exception)`` or
    ``(TIMED_OUT, None)`` for each, in order."""
    try:
        future = asyncio.run_coroutine_threadsafe(_gather(coros, budgets), loop)
    except BaseException:
        for c in coros:
            c.close()  # never awaited: close it rather than warn
        raise
    return future.result()


class LoopThread:
    """An event loop running on a daemon thread of its own, for the runtime's
    async nodes when no loop is passed in."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        self.loop.run_forever()

    def stop(self) -> None:
        """Stops the loop (after cancelling what still runs) and closes it."""
        if self.loop.is_closed():
            return

        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()

