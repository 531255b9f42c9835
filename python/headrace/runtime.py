"""Running a graph in-process."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from headrace import _core
from headrace._aio import InlineAio
from headrace._durations import seconds
from headrace._options import CheckpointCodec, EngineOptions, Mode, OnCorrupt
from headrace.checkpoint import CheckpointStore, CheckpointWriter, open_store
from headrace.checkpoint.store import claim
from headrace.clock import SimClock
from headrace.errors import AccumulatorError, CheckpointError, HeadraceError, SettingError
from headrace.graph import ComputationGraph
from headrace.sources.polling import Poller, call_poll
from headrace.sources.runner import StreamRunner

__all__ = ["CheckpointCodec", "Mode", "OnCorrupt", "Runtime", "on_output"]

log = logging.getLogger("headrace")


def on_output(node: str, fn: Callable[[Any], Any]) -> _core.OnOutput:
    """A sink for ``Runtime(on_fire=...)`` that receives only terminal
    ``node``'s value: ``fn(value)`` for every successful fire in which the
    node ran, with no :class:`~headrace.FireResult` built, so a sink such as
    ``results.append`` costs one call per fire. Failed fires are raised
    (inline) or logged (thread mode) as without ``on_fire``.

    Raises:
        TypeError: ``fn`` is not callable.
        GraphDefinitionError: (when the runtime is built) ``node`` is not a
            terminal node of the graph.
    """
    return _core.OnOutput(node, fn)


class Runtime(_core.Engine):
    """Runs a :class:`~headrace.ComputationGraph` in this process.

    ``mode="inline"`` runs each push's whole path on the caller's thread and
    returns its :class:`~headrace.FireResult`; ``mode="thread"`` runs the
    processor loop on a background thread fed by a bounded queue, reports
    fires to ``on_fire``, and runs polling accumulators on their timers.

    Args:
        graph: The graph; it is validated before any event is accepted.
        mode: "inline" or "thread".
        on_fire: Called with every :class:`~headrace.FireResult` (thread mode:
            on the processor thread; exceptions it raises are logged), or
            ``hr.on_output(node, fn)`` to receive only that terminal node's value.
        capacity: Queue bound in events (thread mode).
        push_timeout: Seconds a push waits for room before raising
            :class:`~headrace.BackpressureError`; None waits as long as it takes.
        max_attempts: Tries of the same inputs after a node raises before a
            sequential boundary goes to the dead-letter list.
        retry_backoff: Seconds before a thread-mode retry when no new event
            arrives (a new event retries at once).
        dead_letter_limit: Dead letters kept; older ones are dropped and counted.
        idle_spin: How long the processor thread polls for the next event
            before it sleeps (thread mode). Waking a sleeping thread costs tens
            of microseconds; the default 50 µs spin halves push-to-fire latency
            for event streams that keep it busy, at the price of up to 50 µs of
            CPU each time it goes idle. While events have been coming a little
            further apart than this, it polls longer (twice their recent gap,
            up to 4x this) so as to catch the next one. 0 never spins.
        store: Where state is checkpointed: None (default: nothing is saved),
            "memory://NAME" (this process), "sqlite:///PATH" or
            "postgresql://...", or a CheckpointStore. With a store, the
            runtime restores the last checkpoint before it accepts any event.
        tenant: The tenant the checkpoint is stored under.
        checkpoint_every: Checkpoint after this many fires (default 1000).
        checkpoint_interval: ...and at most this long after the first change
            that is not yet saved (default "1s"); None: by count only.
        checkpoint_codec: "bincode" (default), "msgpack" or "json" (readable).
        on_corrupt: An unreadable checkpoint: "refuse" to start (default,
            raising CheckpointError naming it) or "start_empty".
        sources: Start the stream accumulators' broker sources (thread mode
            only; default True). False: stream accumulators take pushes only.
        check_checkpointable: Check, as each event is taken, that everything
            it puts into state (the boundary, a batch's buffered event, a state
            window entry, a stream accumulator's ``State.value``) can be
            checkpointed, and refuse that event alone if not: an inline push
            raises :class:`~headrace.UncheckpointableError`; in thread mode the
            event goes to the dead-letter list (stage "checkpoint") and is
            counted and logged. Without the check, one such value stops every
            checkpoint until it leaves the state. Default: on with a store.
        loop: The running event loop that async nodes and accumulators run on
            in thread mode. Default: the runtime starts a loop on a thread of
            its own, only if the graph has async callables, and stops it at
            close. (Inline, ``apush``/``afire`` run them on the caller's loop.)
            A loop passed in must be running, and ``drain()`` must not be
            called on its thread (the fire it waits for needs that loop).
        offload_sync: Inline, on a graph with async callables: ``apush``,
            ``apush_many`` and ``afire`` run the processor work on a helper
            thread, so that the caller's loop stays free while sync nodes
            run (for sync nodes that block or run long), at the cost of a
            thread hop per call (100 µs or more). Default: the work runs on
            the caller's thread, as ``push`` does, and only the async nodes
            are awaited on the caller's loop.
        clock: A :class:`~headrace.SimClock` to run on instead of the wall
            clock: timers (batch flushes, retries, checkpoint intervals) run
            in simulated time as the clock advances or as events pushed with
            ``at=`` move it, and fires start at simulated times. Polling
            accumulators are then polled by the processor on their interval
            in simulated time, and stream sources are not started.
        journal: A directory to record every input to (README: "Journal and
            replay"): each event as received with its time and source
            position, each timer step, manual fire and pause, appended off
            the hot path; ``hr.replay`` runs a graph over it. Inline, chain
            runs are off while recording.
        journal_fsync: "batch" (fsync after each background write, the
            default), "never", or a number of seconds between fsyncs.
        journal_segment_bytes: Rotate to a new segment file at this size.
        journal_keep_bytes: Delete the oldest segments beyond this many bytes
            (None: keep all).
        source_instance: A stable id of this runtime's place (the server
            gives each deployed graph one): its Kafka consumers join with
            static membership (``group.instance.id`` = ``<id>.<accumulator>``),
            so a restarted process takes its partitions back at once. Two
            live runtimes must not share one. None (the default): dynamic
            membership.
        profile: Time every node of every fire: ``FireResult.node_ns`` maps
            each node that ran to its nanoseconds (None when off; off costs
            nothing).
        record_inputs: Keep the accumulator values each fire's nodes received
            (under "sequential", the boundary that triggered it):
            ``FireResult.inputs`` (None when off; the values are referenced,
            not copied).
        chain_runs: On a graph whose fires are one straight line of sync
            calls, events go through a Python loop built for it (README:
            "Chain runs"), with the same results as one by one at about half
            the cost. False takes every event through the engine one by one
            (each fire timed alone; nodes only).
    """

    def __new__(
        cls,
        graph: ComputationGraph,
        *,
        mode: Mode = "inline",
        on_fire: Callable[[_core.FireResult], Any] | _core.OnOutput | None = None,
        capacity: int = 65536,
        push_timeout: float | str | None = None,
        max_attempts: int = 3,
        retry_backoff: float | str = 0.1,
        dead_letter_limit: int = 10_000,
        idle_spin: float | str = "50us",
        store: str | CheckpointStore | None = None,
        tenant: str = "public",
        checkpoint_every: int = 1000,
        checkpoint_interval: float | str | None = "1s",
        checkpoint_codec: CheckpointCodec = "bincode",
        on_corrupt: OnCorrupt = "refuse",
        sources: bool = True,
        check_checkpointable: bool | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        profile: bool = False,
        record_inputs: bool = False,
        offload_sync: bool = False,
        chain_runs: bool = True,
        clock: SimClock | None = None,
        journal: str | os.PathLike[str] | None = None,
        journal_fsync: Literal["batch", "never"] | float = "batch",
        journal_segment_bytes: int = 64 << 20,
        journal_keep_bytes: int | None = None,
        source_instance: str | None = None,
        _replaying: bool = False,
    ) -> Self:
        if not isinstance(graph, ComputationGraph):
            raise TypeError(f"Runtime needs a ComputationGraph, got {type(graph).__name__}")
        if on_fire is not None and not isinstance(on_fire, _core.OnOutput) and not callable(on_fire):
            raise TypeError(f"on_fire must be callable, got {on_fire!r}")
        if clock is not None and not isinstance(clock, SimClock):
            raise TypeError(f"clock must be a headrace.SimClock or None (the wall clock), got {clock!r}")
        if clock is not None and mode == "thread" and sources and any(a.kind == "stream" for a in graph.accumulators):
            raise SettingError(
                f"graph '{graph.name}': a runtime on a SimClock does not read brokers; "
                "pass sources=False and push the messages (with at=) yourself",
                setting="clock",
            )
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be a non-negative integer, got {checkpoint_every!r}")
        opened = store is not None and not isinstance(store, CheckpointStore)
        the_store = open_store(store) if store is not None else None
        writer = None
        runners: list[StreamRunner] = []
        recorder: _core.JournalWriter | None = None
        try:
            if journal is not None:
                recorder = _core.JournalWriter(
                    os.fspath(journal),
                    graph.name,
                    [a.name for a in graph.accumulators],
                    segment_bytes=journal_segment_bytes,
                    keep_bytes=journal_keep_bytes,
                    fsync=journal_fsync,
                )
            restore: dict[str, bytes] | None = None
            key = f"of graph '{graph.name}' (tenant '{tenant}')"
            if the_store is not None:
                key = f"of graph '{graph.name}' (tenant '{tenant}') in {the_store.describe()}"
                # The newest opener of (tenant, graph) wins: an older runtime's
                # saves are refused from now on (FencedError).
                claim(the_store, tenant, graph.name)
                restore = the_store.load(tenant, graph.name)
                writer = CheckpointWriter(the_store, tenant, graph.name)
            if mode == "thread" and sources:
                # Built before the engine, so that the engine knows where an
                # undecodable message goes; started once it exists.
                runners = [StreamRunner(a, writer, source_instance) for a in graph.accumulators if a.kind == "stream"]
            options = EngineOptions(
                mode=mode,
                on_fire=on_fire,
                capacity=capacity,
                push_timeout=None if push_timeout is None else seconds(push_timeout, what="push_timeout"),
                max_attempts=max_attempts,
                retry_backoff=seconds(retry_backoff, what="retry_backoff") if retry_backoff else 0.0,
                dead_letter_limit=dead_letter_limit,
                idle_spin=seconds(idle_spin, what="idle_spin") if idle_spin else 0.0,
                checkpoint_writer=writer,
                checkpoint_codec=checkpoint_codec,
                checkpoint_every=checkpoint_every,
                checkpoint_interval=None
                if checkpoint_interval is None
                else seconds(checkpoint_interval, what="checkpoint_interval"),
                restore=restore,
                checkpoint_key=key,
                on_corrupt=on_corrupt,
                on_undecodable=_UndecodableHook({r.name: r.undecodable for r in runners}) if runners else None,
                check_checkpointable=check_checkpointable,
                loop=loop,
                profile=profile,
                record_inputs=record_inputs,
                chain_runs=chain_runs,
                clock=clock,
                journal=recorder,
                replay=_replaying,
            )
            self = super().__new__(cls, graph.engine_spec(), options)
        except BaseException:
            if recorder is not None:
                recorder.close()
            if writer is not None:
                writer.close()
            if opened and the_store is not None:
                the_store.close()
            raise
        self._graph = graph
        self._writer = writer
        self._journal = recorder
        self._store = the_store if opened else None
        # Inline with async callables: apush runs the fire in a greenlet on
        # the caller's thread and awaits the coroutines on the caller's loop.
        self._aio = InlineAio(graph.name, offload_sync) if mode == "inline" and graph.has_async else None
        self._sources = runners
        self._poller = None
        if clock is not None:
            clock._attach(self)
        try:
            for runner in runners:
                runner.start(self)
            self._poller = self._start_polling()
        except BaseException:
            self.close()
            raise
        return self

    _aio: InlineAio | None
    _graph: ComputationGraph
    _writer: CheckpointWriter | None
    _journal: _core.JournalWriter | None
    _store: CheckpointStore | None
    _sources: list[StreamRunner]
    _poller: Poller | None

    def _start_polling(self) -> Poller | None:
        """Thread mode runs polling accumulators on their timers; inline mode
        has no timer (``rt.poll()`` drives them), so nothing is starting."""
        polling = [a for a in self._graph.accumulators if a.kind == "polling"]
        # On a simulated clock the processor polls them in simulated time.
        if self.mode == "thread" and polling and self.clock_time is None:
            poller = Poller(self, polling)
            poller.start()
            return poller
        for a in polling:
            self.set_health(a.name, "socket_only")
        return None

    @property
    def graph(self) -> ComputationGraph:
        return self._graph

    def poll(self, name: str) -> _core.FireResult | None:
        """Calls polling accumulator ``name``'s function once and pushes the
        result (``None`` or an unchanged value emits nothing).

        Raises:
            AccumulatorError: the poll function raised (it is also counted).
        """
        acc = self._graph.accumulator(name)
        if acc.kind != "polling":
            raise HeadraceError(f"accumulator '{name}' is a {acc.kind} accumulator, not a polling one")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise HeadraceError(
                "rt.poll() cannot run inside a running event loop; call it from a thread "
                "(e.g. await asyncio.to_thread(rt.poll, name))"
            )
        try:
            value = asyncio.run(call_poll(acc.function))
        except Exception as e:
            text = f"{type(e).__name__}: {e}"
            self.set_health(name, "disconnected", text)
            raise AccumulatorError(f"poll of accumulator '{name}' raised {text}", accumulator=name) from e
        self.set_health(name, "live")
        return self.push(name, value)

    async def apush(self, name: str, event: Any) -> _core.FireResult | None:
        """``push`` for asyncio code. Inline, on a graph with async nodes or
        accumulators, the fire runs on the caller's thread as under ``push``
        until it reaches async callables, which are awaited on the caller's
        loop (the ready ones together); the loop is free meanwhile. Calls
        from several tasks take turns in the order they were made. A fire
        that reaches no async node costs ``push`` plus a greenlet switch (a
        few µs), one that awaits async nodes also a task and two turns of
        the loop. On a graph
        without any, it is ``push``. Thread mode: ``push`` (returns once the
        event is queued).

        Cancelling the awaiting task before its turn has come: the event is
        not taken. After: the event was taken and its fire runs to its end
        (its async nodes are not cancelled), so it is fired once, never lost;
        the caller sees no result, and a failure is logged.

        Raises:
            NodeError: a node raised (or :class:`~headrace.FireTimeoutError`).
            HeadraceError: awaited by an async node of one of this runtime's
                own fires (which would wait for itself).
        """
        if self._aio is None:
            return self.push(name, event)
        return await self._aio.call(self.push, name, event)

    async def apush_many(self, name: str, events: Iterable[Any]) -> _core.FireList | None:
        """``push_many`` for asyncio code, as :meth:`apush` is ``push``."""
        if self._aio is None:
            return self.push_many(name, events)
        return await self._aio.call(self.push_many, name, list(events))

    async def afire(self) -> _core.FireResult | None:
        """``fire`` for asyncio code, as :meth:`apush` is ``push``."""
        if self._aio is None:
            return self.fire()
        return await self._aio.call(self.fire)

    def checkpoint(self, timeout: float | None = 30.0) -> None:
        """Checkpoints everything accepted so far and waits until it is durable.

        Raises:
            HeadraceError: the runtime has no store.
            UncheckpointableError: a value in state cannot be checkpointed
                (raised as soon as the checkpoint is tried, naming its path).
            CheckpointError: it could not be written within ``timeout``.
        """
        before = self.request_checkpoint()
        assert self._writer is not None  # request_checkpoint raised otherwise
        self._writer.wait(before, timeout)

    def stats(self) -> dict[str, Any]:
        """Counters, health and dead letters; with a store, also ``checkpoint``
        (last time, size, duration, failures, store health). A failing store
        shows as health "degraded" while it lasts."""
        s = super().stats()
        if self._journal is None:
            del s["journal"]
        else:
            s["journal"].update(self._journal.stats(), path=self._journal.path)
        if self._sources:
            s["sources"] = {r.name: r.stats() for r in self._sources}
        cp = self.checkpoint_health()
        if cp is not None:
            s["checkpoint"] = cp
            if cp["health"] != "ok" and s["health"] == "live":
                s["health"] = "degraded"
        return s

    def counters(self) -> _core.Counters:
        """Events taken, successful and failed fires, queue depth, pending
        boundaries, paused and health, read from the engine's counters: cheap
        enough for a heartbeat, unlike :meth:`stats` (which builds a dict per
        accumulator and per dead letter). ``health`` is the engine's; a
        failing checkpoint store shows in :meth:`checkpoint_health`."""
        return super().counters()

    def checkpoint_health(self) -> dict[str, Any] | None:
        """The checkpoint writer's stats (``stats()["checkpoint"]``), or None
        without a store."""
        return None if self._writer is None else self._writer.stats()

    def close(self) -> None:
        """Stops polling, flushes batch accumulators (firing on what they
        emit), takes a final checkpoint, and stops. Idempotent.

        Raises:
            CheckpointError: the final checkpoint could not be built (an
                :class:`~headrace.UncheckpointableError` naming the value); what
                changed since the last durable checkpoint is lost. Everything is
                stopped and released first. Leaving a ``with`` block on an
                exception logs this instead, so that it never masks that exception.
        """
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()
        sources, self._sources = self._sources, []
        for runner in sources:
            runner.stop_reading()
        try:
            super().close()
        finally:
            # After the processor stopped: everything it recorded is written.
            journal, self._journal = self._journal, None
            if journal is not None:
                journal.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        for runner in sources:
            runner.close()  # commits what the final checkpoint covered
        store, self._store = self._store, None
        if store is not None:
            store.close()
        failure = writer.final_failure() if writer is not None else None
        if failure is not None:
            raise failure

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except CheckpointError as e:
            log.error("graph '%s': while leaving on %s: %s", self.graph_name, type(exc).__name__, e)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running"
        return f"<headrace.Runtime graph={self.graph_name!r} mode={self.mode!r} {state}>"


if TYPE_CHECKING:
    from headrace.sources.target import SourceTarget

    def _feeds_sources(rt: Runtime) -> SourceTarget:
        return rt  # mypy: a Runtime is what sources push into


class _UndecodableHook:
    """Routes undecodable stream messages to their source's dead-letter topic."""

    def __init__(self, targets: dict[str, Callable[[bytes, str, int, int, str], None]]) -> None:
        self._targets = targets

    def __call__(self, accumulator: str, data: bytes, topic: str, partition: int, offset: int, error: str) -> None:
        target = self._targets.get(accumulator)
        if target is not None:
            target(data, topic, partition, offset, error)
