"""Awaiting async nodes and accumulators for the engine.

Thread mode: the engine calls :func:`run` from the processor thread, and the
coroutines run on an event loop of another thread (the runtime's own
:class:`LoopThread` or one passed in), so that loop is never blocked.

Inline ``apush``/``afire`` (:class:`InlineAio`): the call runs on the caller's
own thread, inside a greenlet. When a fire reaches a wave of async nodes (or an
async accumulator), :func:`run` switches out of that greenlet, with the
engine's frames suspended as they are, back to the ``apush`` coroutine, which
awaits the wave on the caller's loop and then switches back in with the
results. So no thread is involved, the caller's loop is free while async nodes
run, and a fire that reaches no async node costs what ``push`` costs.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import greenlet

from headrace.errors import HeadraceError

OK, RAISED, TIMED_OUT = 0, 1, 2

T = TypeVar("T")
Ended = list[tuple[int, Any]]

_log = logging.getLogger("headrace")


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


async def _gather(coros: Sequence[Coroutine[Any, Any, Any]], budgets: Sequence[float | None]) -> Ended:
    return list(await asyncio.gather(*(_one(c, b) for c, b in zip(coros, budgets, strict=True))))


DONE, FAILED, WAIT = 0, 1, 2


class _Worker(greenlet.greenlet):
    """The greenlet an inline runtime's calls run in, on one loop's thread,
    one call at a time: it runs each call to its end and switches back
    ``(DONE, value)`` or ``(FAILED, exception)``; :func:`run` switches back
    ``(WAIT, coros, budgets)`` from inside one. Kept from call to call: a new
    greenlet costs about 10 µs, a switch well under one."""

    def __init__(self) -> None:
        super().__init__(_serve)
        # Set once a wave was cut short (the loop is going away): the call
        # ends without awaiting more, and so does the greenlet.
        self.abandoned = False

    def back(self, value: Any) -> Any:
        """Switches to the greenlet that last switched in (the ``apush``)."""
        parent = self.parent
        assert parent is not None
        return parent.switch(value)


def _serve(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[int, Any]:
    me = greenlet.getcurrent()
    assert isinstance(me, _Worker)
    while True:
        out: tuple[int, Any]
        try:
            out = (DONE, function(*args))
        except greenlet.GreenletExit:
            raise
        except BaseException as e:
            out = (FAILED, e)
        del function, args  # hold nothing of the runtime between calls
        if me.abandoned:
            return out
        function, args = me.back(out)


class _Turns:
    """A FIFO lock for one loop's tasks, handed straight to the next waiter
    on release; taking a free one does not suspend the caller."""

    def __init__(self) -> None:
        self.busy = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if not self.busy:
            self.busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the turn just as it was cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still busy: its turn now
                return
        self.busy = False


class _Lane:
    """One runtime's calls from one event loop: they take turns, each run in
    the lane's worker greenlet."""

    def __init__(self) -> None:
        self.lock = _Turns()
        self.worker: _Worker | None = None

    def start(self, function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
        worker = self.worker
        if worker is None or worker.dead:
            worker = self.worker = _Worker()
        # Nodes see the caller's context variables, as they do under push.
        worker.gr_context = contextvars.copy_context()
        worker.parent = greenlet.getcurrent()
        out: tuple[Any, ...] = worker.switch(function, args)
        return out

    def resume(self, ended: Ended | BaseException) -> tuple[Any, ...]:
        worker = self.worker
        assert worker is not None
        worker.parent = greenlet.getcurrent()
        out: tuple[Any, ...] = worker.throw(ended) if isinstance(ended, BaseException) else worker.switch(ended)
        return out


# The loop lent to a helper thread by an offloaded apush (see InlineAio).
_lent = threading.local()


def lent() -> object | None:
    """Whether an inline call on this thread may await coroutines, and how:
    the worker greenlet of the ``apush`` it runs in, or the loop lent to an
    offloaded one; None otherwise (asked by the engine)."""
    current = greenlet.getcurrent()
    if type(current) is _Worker:
        return current
    loop: asyncio.AbstractEventLoop | None = getattr(_lent, "loop", None)
    return loop


def run(
    loop: Any, coros: Sequence[Coroutine[Any, Any, Any]], budgets: Sequence[float | None]
) -> Ended:
    """Awaits ``coros`` together (each cancelled after its budget in seconds)
    and waits for all: ``(OK, value)``, ``(RAISED, exception)`` or
    ``(TIMED_OUT, None)`` for each, in order. Inside an ``apush``'s worker
    greenlet, the ``apush`` awaits them on its loop; elsewhere this thread
    waits while they run on ``loop``, another thread's."""
    current = greenlet.getcurrent()
    try:
        if isinstance(current, _Worker):
            if current.abandoned:
                raise HeadraceError("the event loop of this apush is going away: its fire cannot await async nodes")
            ended: Ended = current.back((WAIT, coros, budgets))
            return ended
        return asyncio.run_coroutine_threadsafe(_gather(coros, budgets), loop).result()
    except BaseException:
        if isinstance(current, _Worker):
            current.abandoned = True
        for c in coros:
            c.close()  # never awaited (or cut short): close it rather than warn
        raise


class InlineAio:
    """One inline runtime's ``apush``/``afire``: calls run one at a time, in
    the order they were made (a FIFO lock per event loop), each on the
    caller's thread in a worker greenlet whose async waves the caller awaits.

    Cancelling an ``apush`` while it waits for its turn: the event is not
    taken. Once its turn has come, the event is taken and its fire runs to
    its end even if the caller is cancelled meanwhile (its async nodes are
    not cancelled); the cancelled caller does not see the result, and a
    failure is logged. So an accepted event is fired once, never lost.
    """

    def __init__(self, graph: str, offload: bool) -> None:
        self._graph = graph
        self._offload = offload
        self._lanes: dict[asyncio.AbstractEventLoop, _Lane] = {}
        # Tasks running the async nodes of the current fire.
        self._awaiting: set[asyncio.Task[Any]] = set()
        # Fires whose callers were cancelled, kept until they end.
        self._orphans: set[asyncio.Future[Any]] = set()

    def _lane(self, loop: asyncio.AbstractEventLoop) -> _Lane:
        lane = self._lanes.get(loop)
        if lane is None:
            for gone in [lp for lp in self._lanes if lp.is_closed()]:
                del self._lanes[gone]
            lane = self._lanes[loop] = _Lane()
        return lane

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        lane = self._lane(loop)
        lock = lane.lock
        if lock.busy and asyncio.current_task() in self._awaiting:
            raise HeadraceError(
                f"graph '{self._graph}': apush/afire awaited by an async node of one of its own fires "
                'would wait for itself; in inline mode a fire cannot start another (use mode="thread")'
            )
        await lock.acquire()  # cancelled here: the event was not taken
        if self._offload:
            return await self._on_helper_thread(loop, lock, function, *args)
        try:
            out = lane.start(function, args)
        except BaseException:
            lock.release()
            raise
        if out[0] != WAIT:
            lock.release()
            result: T = _result(out)
            return result
        # The fire reached async callables: a task of its own awaits them (and
        # whatever waves follow), which a cancelled caller leaves running. It
        # hands the outcome over in a plain future: one loop turn sooner than
        # awaiting (a shield of) the task.
        outcome = loop.create_future()
        task = loop.create_task(self._drive(lane, out, outcome))
        try:
            return await outcome  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if outcome.cancelled():
                self._orphan(task)
            raise

    async def _drive(self, lane: _Lane, out: tuple[Any, ...], outcome: asyncio.Future[Any]) -> None:
        try:
            while out[0] == WAIT:
                ended: Ended | BaseException
                try:
                    ended = await self._await_wave(out[1], out[2])
                except BaseException as e:
                    # Cancelled from outside (its loop is closing): the call
                    # goes on without this wave, which failed.
                    ended = e
                out = lane.resume(ended)
        except BaseException as e:
            out = (FAILED, e)
        finally:
            lane.lock.release()
        if outcome.cancelled():
            if out[0] == FAILED:
                _log.warning("graph '%s': the fire of a cancelled apush failed: %s", self._graph, out[1])
        elif out[0] == FAILED:
            outcome.set_exception(out[1])
        else:
            outcome.set_result(out[1])

    async def _await_wave(self, coros: Sequence[Coroutine[Any, Any, Any]], budgets: Sequence[float | None]) -> Ended:
        """Awaits one wave, remembering which tasks run its nodes (an apush
        from one of them would wait for itself)."""
        if len(coros) == 1:
            # One coroutine needs no task of its own: this one runs it.
            me = asyncio.current_task()
            assert me is not None
            self._awaiting.add(me)
            try:
                return [await _one(coros[0], budgets[0])]
            finally:
                self._awaiting.discard(me)
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(_one(c, b)) for c, b in zip(coros, budgets, strict=True)]
        self._awaiting.update(tasks)
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            self._awaiting.difference_update(tasks)

    async def _on_helper_thread(
        self, loop: asyncio.AbstractEventLoop, lock: _Turns, function: Callable[..., T], *args: Any
    ) -> T:
        """``offload_sync``: the call runs on a helper thread, the coroutines
        it awaits on ``loop``; the lock is held until it has ended."""
        future = loop.run_in_executor(None, _call_with_loop, loop, function, *args)
        future.add_done_callback(lambda _: lock.release())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self._orphan(future)
            raise

    def _orphan(self, future: asyncio.Future[Any]) -> None:
        """A cancelled caller's fire goes on: keep it until it ends (a task
        logs its own failure; a helper thread's is logged here)."""
        if future.done():
            return
        self._orphans.add(future)

        def done(f: asyncio.Future[Any]) -> None:
            self._orphans.discard(f)
            if isinstance(f, asyncio.Task) or f.cancelled():
                return
            if (error := f.exception()) is not None:
                _log.warning("graph '%s': the fire of a cancelled apush failed: %s", self._graph, error)

        future.add_done_callback(done)


def _result(out: tuple[Any, ...]) -> Any:
    if out[0] == FAILED:
        raise out[1]
    return out[1]


def _call_with_loop(loop: asyncio.AbstractEventLoop, function: Callable[..., T], *args: Any) -> T:
    """Calls ``function(*args)`` on a helper thread, lending it ``loop`` for
    async callables (an offloaded apush)."""
    _lent.loop = loop
    try:
        return function(*args)
    finally:
        _lent.loop = None


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
