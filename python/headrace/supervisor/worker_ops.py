"""A worker's operations: one method per :class:`~.protocol.Op`, against its
Runtime and fire log, with no socket in sight (the IPC server calls them)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from headrace.checkpoint import CheckpointStore, open_store
from headrace.errors import (
    AccumulatorError,
    BackpressureError,
    FencedError,
    HeadraceError,
    NodeError,
    PayloadError,
    UncheckpointableError,
)
from headrace.packages import load_graph
from headrace.runtime import Mode, Runtime
from headrace.supervisor.firelog import FireLog
from headrace.supervisor.protocol import EXIT_FENCED, FIRES_PAGE_BYTES, Op, Refusal

__all__ = ["OpError", "WorkerOps"]

log = logging.getLogger("headrace.worker")


class OpError(Exception):
    """A request refused as a whole; ``code`` is the API's error slug."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class WorkerOps:
    rt: Runtime
    fires: FireLog
    store: CheckpointStore

    def __init__(self, config: dict[str, Any]) -> None:
        """Loads and checks the package's graph (nothing starts yet)."""
        self.config = config
        self.busy_since: float | None = None
        #: Why the store cannot be written (from the checkpoint writer's
        #: health, refreshed by every ping), or None.
        self.store_error: str | None = None
        self.push_timeout = float(config.get("push_timeout", 5.0))
        self.loaded = load_graph(Path(config["package_dir"]))
        self.loaded.validate()
        self.accumulators = {a.name for a in self.loaded.accumulators}
        self.table: dict[str, Callable[[Any], Any]] = {
            Op.PUSH: self.push,
            Op.INJECT: self.inject,
            Op.FIRE: self.fire,
            Op.DESCRIBE: self.describe,
            Op.PAUSE: self.pause,
            Op.RESUME: self.resume,
            Op.STATE: self.state,
            Op.PING: self.ping,
            Op.STATS: self.stats,
            Op.FIRES: self.fires_page,
        }

    @property
    def mode(self) -> Mode:
        """Inline when nothing but pushes drives the graph: the socket's reader
        thread then runs the accumulator and the nodes itself, saving two
        hand-offs of the interpreter lock between threads (tens of µs each).
        Sources, timers and flush intervals need the processor thread."""
        kinds = {a.kind for a in self.loaded.accumulators}
        return "inline" if kinds <= {"passthrough", "state"} else "thread"

    def start(self) -> None:
        """Claims the graph in the store (fencing any older worker), restores
        its checkpoint and starts it (and its sources)."""
        config = self.config
        self.fires = FireLog(Path(config["fire_log"]), int(config.get("fire_log_size", 1000)))
        self.store = _ExitWhenFenced(open_store(config["store"]))
        journal = config.get("journal") or {}
        self.rt = Runtime(
            self.loaded,
            mode=self.mode,
            # Static membership: a restarted worker takes its partitions back at once.
            source_instance=f"headrace.{config['tenant']}.{self.loaded.name}",
            journal=journal.get("path"),
            journal_fsync=journal.get("fsync", "batch"),
            journal_keep_bytes=journal.get("keep_bytes"),
            journal_segment_bytes=journal.get("segment_bytes", 64 << 20),
            on_fire=self.fires.on_fire,
            store=self.store,
            tenant=config["tenant"],
            checkpoint_every=int(config.get("checkpoint_every", 1000)),
            checkpoint_interval=config.get("checkpoint_interval", "1s"),
            on_corrupt=config.get("on_corrupt", "refuse"),
            # An ack says "durable": an event no checkpoint could hold is
            # refused alone rather than stop every checkpoint after it.
            check_checkpointable=True,
            # For the fire log.
            profile=True,
            record_inputs=True,
        )
        self.started_at = time.time()

    def close(self) -> None:
        try:
            self.rt.close()  # final checkpoint
        finally:
            self.fires.close()
            self.store.close()

    # --- operations -------------------------------------------------------

    def push(self, arg: list[Any]) -> dict[str, Any]:
        """Pushes raw events in order. A bad payload refuses that event only;
        a full queue, a stop or an unwritable fire log or store refuses it and
        everything after it, so the producer can resend the tail in order."""
        name, codec, events = arg
        self._check_accumulator(name)
        unwritable = self.unwritable()
        if unwritable is not None:
            code, text = unwritable
            return {"accepted": 0, "refused": [Refusal(i, code, text) for i in range(len(events))]}
        self._received()
        refused: list[Refusal] = []
        push = self.rt.push_bytes
        timeout = self.push_timeout
        self.busy_since = time.monotonic()
        for i, data in enumerate(events):
            try:
                push(name, data, codec=codec, timeout=timeout)
            except (NodeError, AccumulatorError):
                pass  # inline: accepted; the failure is in the fire log and stats
            except PayloadError as e:
                refused.append(Refusal(i, "bad_payload", str(e)))
            except UncheckpointableError as e:
                # Refused alone: it entered no state, so every other event's
                # checkpoint (and ack) stays durable.
                refused.append(Refusal(i, "not_checkpointable", str(e)))
            except BackpressureError as e:
                refused.extend(Refusal(j, "backpressure", str(e)) for j in range(i, len(events)))
                break
            except HeadraceError as e:
                refused.extend(Refusal(j, "unavailable", str(e)) for j in range(i, len(events)))
                break
        self.busy_since = None
        return {"accepted": len(events) - len(refused), "refused": refused}

    def inject(self, arg: list[Any]) -> dict[str, Any]:
        name, value = arg
        self._check_accumulator(name)
        unwritable = self.unwritable()
        if unwritable is not None:
            return {"accepted": 0, "refused": [Refusal(0, *unwritable)]}
        self._received()
        self.busy_since = time.monotonic()
        try:
            self.rt.push(name, value, timeout=self.push_timeout)
        except (NodeError, AccumulatorError):
            pass  # inline: accepted; the failure is in the fire log and stats
        except UncheckpointableError as e:
            return {"accepted": 0, "refused": [Refusal(0, "not_checkpointable", str(e))]}
        except BackpressureError as e:
            return {"accepted": 0, "refused": [Refusal(0, "backpressure", str(e))]}
        finally:
            self.busy_since = None
        return {"accepted": 1, "refused": []}

    def fire(self, arg: dict[str, Any] | None) -> dict[str, Any]:
        """force_fire (no argument) or fire_with (set these inputs, then fire)."""
        values = (arg or {}).get("fire_with") or {}
        for name in values:
            self._check_accumulator(name)
        # Fire ids count every attempt; fire_count only successful fires.
        before = (self.fires.last_record() or {}).get("id", 0)
        self._received()
        for name, value in values.items():
            with contextlib.suppress(NodeError, AccumulatorError):
                self.rt.push(name, value, timeout=self.push_timeout)
        with contextlib.suppress(NodeError):
            self.rt.fire()
        self.rt.drain(timeout=30)
        last = self.fires.last_record()
        return {"fired": last is not None and last["id"] > before, "fire": last}

    def describe(self, arg: Any) -> dict[str, Any]:
        """The graph's shape, for the health API (JSON-safe)."""
        g = self.loaded
        known = self.accumulators | {n.name for n in g.nodes}
        info = {
            "graph": g.name,
            "reaction_mode": g.criteria.kind,
            "criteria_members": list(g.criteria.members),
            "input_strategy": g.input_strategy,
            "accumulators": [{"name": a.name, "kind": a.kind, "config": a.config} for a in g.accumulators],
            "nodes": [
                {"name": n.name, "inputs": n.inputs(known), "routes": {label: list(t) for label, t in n.routes}}
                for n in g.nodes
            ],
            "order": g.validate(),
        }
        result: dict[str, Any] = orjson.loads(orjson.dumps(info, default=str))
        return result

    def pause(self, arg: Any) -> dict[str, Any]:
        self.rt.pause()
        return {"paused": True}

    def resume(self, arg: Any) -> dict[str, Any]:
        self.rt.resume()
        return {"paused": False}

    def state(self, arg: Any) -> dict[str, Any]:
        s = self.rt.stats()
        last = self.fires.last_record()
        return {
            "paused": s["paused"],
            "health": s["health"],
            "fire_count": s["fire_count"],
            "last_fired_at": s["last_fired_at"],
            "inputs": last["inputs"] if last else {},
            "last_fire": last,
        }

    def ping(self, arg: Any) -> dict[str, Any]:
        # Every second: the engine's counters, not the whole stats() dict.
        c = self.rt.counters()
        since = self.busy_since
        checkpoint = self.rt.checkpoint_health() or {}
        self.store_error = checkpoint.get("last_error") if checkpoint.get("health", "ok") != "ok" else None
        return {
            "queue_depth": c.queue_depth,
            "events": c.events,
            "fire_count": c.fires,
            # Inline: how long the current push has been running (a stuck node).
            "busy_for": 0.0 if since is None else time.monotonic() - since,
            "problem": self.problem(),
        }

    def stats(self, arg: Any) -> dict[str, Any]:
        s = self.rt.stats()
        s["worker"] = {"pid": os.getpid(), "started_at": self.started_at}
        s["histograms"] = {
            "fire_duration": self.fires.fire_duration.snapshot(),
            "push_to_fire": self.fires.push_to_fire.snapshot(),
        }
        s["fire_log"] = {"health": "failing" if self.fires.error else "ok", "error": self.fires.error}
        problem = self.problem()
        if problem is not None:
            s["last_error"] = problem
            if s["health"] == "live":
                s["health"] = "degraded"
        return s

    def fires_page(self, arg: Any) -> Any:
        """``fires``: with an int ``N``, the newest N fires (a list, at most
        FIRES_PAGE_BYTES of records). With ``{"limit": N, "before": ID,
        "max_bytes": B}`` (all optional), one page: ``{"items": [...],
        "next": ID or None}``, newest first, fires with an id below
        ``before``; ``next`` is the ``before`` of the following page."""
        if not isinstance(arg, dict):
            return self.fires.recent(int(arg or 100), FIRES_PAGE_BYTES)
        limit = int(arg.get("limit") or 100)
        before = arg.get("before")
        max_bytes = min(int(arg.get("max_bytes") or FIRES_PAGE_BYTES), FIRES_PAGE_BYTES)
        if limit < 1 or max_bytes < 1 or (before is not None and not isinstance(before, int)):
            raise OpError("fires: limit and max_bytes must be positive, before an integer fire id", "bad_request")
        items, after = self.fires.page(limit, before, max_bytes)
        return {"items": items, "next": after}

    # --- health -------------------------------------------------------------

    def unwritable(self) -> tuple[str, str] | None:
        """(code, message) while new events cannot be made durable."""
        if self.fires.error is not None:
            return "fire_log_unavailable", self.fires.error + "; resend later"
        if self.store_error is not None:
            return "store_unavailable", self.store_error + "; resend later"
        return None

    def problem(self) -> str | None:
        unwritable = self.unwritable()
        return None if unwritable is None else unwritable[1]

    def _received(self) -> None:
        if self.fires.received_at is None:
            self.fires.received_at = time.time()

    def _check_accumulator(self, name: str) -> None:
        if name not in self.accumulators:
            raise OpError(
                f"graph '{self.loaded.name}' has no accumulator '{name}' (it has: {', '.join(sorted(self.accumulators))})",
                "unknown_accumulator",
            )


class _ExitWhenFenced:
    """The worker's store: a save refused because a newer worker of the graph
    claimed the store ends this (stale) worker at once, before it can do
    anything else."""

    def __init__(self, store: CheckpointStore) -> None:
        self._store = store

    def claim(self, tenant: str, graph: str) -> int:
        take = getattr(self._store, "claim")  # every store the server accepts fences
        return int(take(tenant, graph))

    def load(self, tenant: str, graph: str) -> dict[str, bytes]:
        return self._store.load(tenant, graph)

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        try:
            self._store.save(tenant, graph, components)
        except FencedError as e:
            log.critical("%s; this worker is stale and exits now", e)
            logging.shutdown()
            os._exit(EXIT_FENCED)

    def describe(self) -> str:
        return self._store.describe()

    def close(self) -> None:
        self._store.close()
