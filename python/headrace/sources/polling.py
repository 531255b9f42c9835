"""The polling source of thread mode: one asyncio loop on its own thread calls
every polling accumulator's function on its interval and pushes the result.

Polls run off the processor thread, so a slow query never stalls the graph;
sync functions run in the loop's executor, so one slow poll never delays another.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from headrace.sources.target import SourceTarget

if TYPE_CHECKING:
    from headrace.accumulators import Accumulator

__all__ = ["Poller", "call_poll"]

log = logging.getLogger("headrace")


async def call_poll(fn: Callable[[], Any]) -> Any:
    """Calls a poll function, sync or async, from inside an event loop."""
    if inspect.iscoroutinefunction(fn):
        return await fn()
    result = await asyncio.get_running_loop().run_in_executor(None, fn)
    if inspect.isawaitable(result):
        return await result
    return result


class Poller:
    """Holds its runtime weakly: a runtime dropped without close() is still
    collected, and its poller stops at the next tick."""

    def __init__(self, runtime: SourceTarget, accumulators: list[Accumulator]) -> None:
        self._runtime = weakref.ref(runtime)
        self._graph_name = runtime.graph_name
        self._accumulators = accumulators
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"headrace-poll-{self._graph_name}", daemon=True
        )
        # A runtime dropped without close() stops its poller at once, not a tick later.
        weakref.finalize(runtime, self._signal_stop)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def stop(self, timeout: float = 5.0) -> None:
        self._signal_stop()
        self._thread.join(timeout)

    def _signal_stop(self) -> None:
        """Asks the loop to stop, from any thread; never waits."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or loop.is_closed():
            return
        try:
            if threading.current_thread() is self._thread:
                stop.set()
            else:
                loop.call_soon_threadsafe(stop.set)
        except RuntimeError:
            pass  # the loop closed meanwhile

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        tasks = [asyncio.create_task(self._every(acc)) for acc in self._accumulators]
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _every(self, acc: Accumulator) -> None:
        loop = asyncio.get_running_loop()
        interval = float(acc.config["interval"])
        due = loop.time()
        while True:
            if not await self.poll_once(acc):
                self._signal_stop()
                return
            due += interval
            delay = due - loop.time()
            if delay < 0:
                # The poll overran its interval: skip the missed ticks rather than burst.
                due = loop.time()
                delay = 0.0
            await asyncio.sleep(delay)

    async def poll_once(self, acc: Accumulator) -> bool:
        """Polls once and pushes the result. Returns False once the runtime is gone."""
        if self._runtime() is None:
            return False
        try:
            value = await call_poll(acc.function)
        except Exception as e:  # noqa: BLE001 - a poll may raise anything; the next tick still runs
            text = f"{type(e).__name__}: {e}"
            log.warning("poll of accumulator '%s' (graph '%s') raised %s", acc.name, self._graph_name, text)
            rt = self._runtime()
            if rt is not None:
                rt.set_health(acc.name, "disconnected", text)
            return rt is not None
        rt = self._runtime()
        if rt is None:
            return False
        rt.set_health(acc.name, "live")
        try:
            rt.push(acc.name, value)
        except Exception as e:  # noqa: BLE001 - closed runtime or backpressure: log, keep polling
            log.warning("poll result of accumulator '%s' not accepted: %s", acc.name, e)
        return True
