"""One graph's worker process: ``python -m headrace.supervisor.worker CONFIG_JSON``.

It loads the package, restores the graph's checkpoint (the Runtime does that
before it accepts anything), then listens on its Unix socket and says
``{"event": "ready"}`` on stdout. The supervisor holds the worker's stdin:
when it closes (the supervisor exited or died), the worker checkpoints and
stops, so workers never outlive their supervisor.

Acknowledgements are durable: a push is answered once a checkpoint that
includes it is committed. The connection's acker thread commits once for
every push that arrived while the previous commit ran (group commit), so
throughput does not pay one commit per event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from headrace.graph import ComputationGraph
from headrace.errors import AccumulatorError, BackpressureError, HeadraceError, NodeError, PayloadError
from headrace.packages import load_graph
from headrace.packages.manifest import ManifestError
from headrace.runtime import Runtime
from headrace.supervisor import sandbox
from headrace.supervisor.firelog import FireLog, record_inputs
from headrace.supervisor.ipc import FrameError, encode, read_frame

log = logging.getLogger("headrace.worker")

#: Exit codes the supervisor reads: the package cannot load (do not retry
#: faster than the breaker allows), or the runtime could not start.
EXIT_LOAD = 3
EXIT_START = 4


def _say(event: str, **fields: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps({"event": event, **fields}) + b"\n")
    sys.stdout.buffer.flush()


class Worker:
    rt: Runtime
    fires: FireLog
    graph: ComputationGraph

    def __init__(self, config: dict[str, Any]) -> None:
        """Loads and checks the package's graph (nothing starts yet)."""
        self.config = config
        self.stopping = threading.Event()
        self.busy_since: float | None = None
        self.push_timeout = float(config.get("push_timeout", 5.0))
        self.loaded = load_graph(Path(config["package_dir"]))
        self.loaded.validate()
        self.accumulators = {a.name for a in self.loaded.accumulators}

    @property
    def mode(self) -> str:
        """Inline when nothing but pushes drives the graph: the socket's reader
        thread then runs the accumulator and the nodes itself, saving two
        hand-offs of the interpreter lock between threads (tens of µs each).
        Sources, timers and flush intervals need the processor thread."""
        kinds = {a.kind for a in self.loaded.accumulators}
        return "inline" if kinds <= {"passthrough", "state"} else "thread"

    def start(self) -> None:
        """Restores the checkpoint and starts the graph (and its sources)."""
        config = self.config
        self.fires = FireLog(Path(config["fire_log"]), int(config.get("fire_log_size", 1000)))
        self.graph = record_inputs(self.loaded, self.fires.inputs)
        self.rt = Runtime(
            self.graph,
            mode=self.mode,
            on_fire=self.fires.on_fire,
            store=config["store"],
            tenant=config["tenant"],
            checkpoint_every=int(config.get("checkpoint_every", 1000)),
            checkpoint_interval=config.get("checkpoint_interval", "1s"),
        )
        self.started_at = time.time()

    # --- operations -------------------------------------------------------

    def op_push(self, arg: list[Any]) -> dict[str, Any]:
        """Pushes raw events in order. A bad payload refuses that event only;
        a full queue or a stop refuses it and everything after it, so the
        producer can resend the tail in order."""
        name, codec, events = arg
        self._check_accumulator(name)
        self._received()
        refused: list[list[Any]] = []
        push = self.rt.push_bytes
        timeout = self.push_timeout
        self.busy_since = time.monotonic()
        for i, data in enumerate(events):
            try:
                push(name, data, codec=codec, timeout=timeout)
            except (NodeError, AccumulatorError):
                pass  # inline: accepted; the failure is in the fire log and stats
            except PayloadError as e:
                refused.append([i, "bad_payload", str(e)])
            except BackpressureError as e:
                refused.extend([j, "backpressure", str(e)] for j in range(i, len(events)))
                break
            except HeadraceError as e:
                refused.extend([j, "unavailable", str(e)] for j in range(i, len(events)))
                break
        self.busy_since = None
        return {"accepted": len(events) - len(refused), "refused": refused}

    def op_inject(self, arg: list[Any]) -> dict[str, Any]:
        name, value = arg
        self._check_accumulator(name)
        self._received()
        self.busy_since = time.monotonic()
        try:
            self.rt.push(name, value, timeout=self.push_timeout)
        except (NodeError, AccumulatorError):
            pass  # inline: accepted; the failure is in the fire log and stats
        except BackpressureError as e:
            return {"accepted": 0, "refused": [[0, "backpressure", str(e)]]}
        finally:
            self.busy_since = None
        return {"accepted": 1, "refused": []}

    def op_fire(self, arg: dict[str, Any] | None) -> dict[str, Any]:
        """force_fire (no argument) or fire_with (set these inputs, then fire)."""
        values = (arg or {}).get("fire_with") or {}
        for name in values:
            self._check_accumulator(name)
        before = self.rt.stats()["fire_count"]
        self._received()
        for name, value in values.items():
            with contextlib.suppress(NodeError, AccumulatorError):
                self.rt.push(name, value, timeout=self.push_timeout)
        with contextlib.suppress(NodeError):
            self.rt.fire()
        self.rt.drain(timeout=30)
        last = self.fires.last_record()
        return {"fired": last is not None and last["id"] > before, "fire": last}

    def op_describe(self, arg: Any) -> dict[str, Any]:
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

    def op_pause(self, arg: Any) -> dict[str, Any]:
        self.rt.pause()
        return {"paused": True}

    def op_resume(self, arg: Any) -> dict[str, Any]:
        self.rt.resume()
        return {"paused": False}

    def op_state(self, arg: Any) -> dict[str, Any]:
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

    def op_ping(self, arg: Any) -> dict[str, Any]:
        s = self.rt.stats()
        events = sum(a["events"] for a in s["accumulators"].values())
        since = self.busy_since
        return {
            "queue_depth": s["queue_depth"],
            "events": events,
            "fire_count": s["fire_count"],
            # Inline: how long the current push has been running (a stuck node).
            "busy_for": 0.0 if since is None else time.monotonic() - since,
        }

    def op_stats(self, arg: Any) -> dict[str, Any]:
        s = self.rt.stats()
        s["worker"] = {"pid": os.getpid(), "started_at": self.started_at}
        s["histograms"] = {
            "fire_duration": self.fires.fire_duration.snapshot(),
            "push_to_fire": self.fires.push_to_fire.snapshot(),
        }
        return s

    def op_fires(self, arg: Any) -> list[Any]:
        return self.fires.recent(int(arg or 100))

    def op_stop(self, arg: Any) -> dict[str, Any]:
        self.stopping.set()
        return {"stopping": True}

    def _received(self) -> None:
        if self.fires.received_at is None:
            self.fires.received_at = time.time()

    def _check_accumulator(self, name: str) -> None:
        if name not in self.accumulators:
            raise _OpError(
                f"graph '{self.loaded.name}' has no accumulator '{name}' (it has: {', '.join(sorted(self.accumulators))})",
                "unknown_accumulator",
            )

    # --- serving ----------------------------------------------------------

    def serve(self, path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(16)
        threading.Thread(target=self._accept, args=(server,), name="headrace-ipc-accept", daemon=True).start()
        threading.Thread(target=self._watch_parent, name="headrace-parent", daemon=True).start()
        _say("ready", pid=os.getpid(), restored_fire_count=self.rt.stats()["fire_count"])
        self.stopping.wait()
        self.shutdown()
        server.close()

    def _accept(self, server: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if not sandbox.from_parent(conn):
                conn.close()
                continue
            Connection(self, conn).start()

    def _watch_parent(self) -> None:
        # stdin is a pipe from the supervisor: EOF means it is gone.
        try:
            while sys.stdin.buffer.read(1):
                pass
        except (OSError, ValueError):
            pass
        log.info("supervisor gone; checkpointing and stopping")
        self.stopping.set()

    def shutdown(self) -> None:
        try:
            self.rt.close()  # final checkpoint
        finally:
            self.fires.close()


class _OpError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


#: Operations whose answer must wait for a checkpoint covering them.
_DURABLE = {"push", "inject", "pause", "resume", "fire"}


class Connection:
    """One supervisor connection: a reader thread runs requests in order, an
    acker thread answers them in the same order, after a group commit for
    those that change state."""

    def __init__(self, worker: Worker, conn: socket.socket) -> None:
        self.worker = worker
        self.conn = conn
        self.cond = threading.Condition()
        self.pending: list[tuple[bool, int, bool, Any]] = []
        self.closed = False
        self.ops: dict[str, Callable[[Any], Any]] = {
            name[3:]: getattr(worker, name) for name in dir(worker) if name.startswith("op_")
        }

    def start(self) -> None:
        threading.Thread(target=self._read, name="headrace-ipc-read", daemon=True).start()
        threading.Thread(target=self._ack, name="headrace-ipc-ack", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                message = read_frame(self.conn)
                if message is None:
                    break
                req_id, op, arg = message
                handler = self.ops.get(op)
                try:
                    if handler is None:
                        raise _OpError(f"unknown operation '{op}'", "bad_request")
                    entry = (op in _DURABLE, req_id, True, handler(arg))
                except _OpError as e:
                    entry = (False, req_id, False, {"error": str(e), "code": e.code})
                except HeadraceError as e:
                    entry = (False, req_id, False, {"error": str(e), "code": "refused"})
                except Exception as e:  # noqa: BLE001 - every request gets an answer
                    entry = (False, req_id, False, {"error": f"{type(e).__name__}: {e}", "code": "worker_error"})
                with self.cond:
                    self.pending.append(entry)
                    self.cond.notify()
        except (OSError, FrameError) as e:
            log.warning("ipc connection dropped: %s", e)
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify()

    def _ack(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.closed:
                    self.cond.wait()
                batch, self.pending = self.pending, []
                closed = self.closed
            if batch:
                failure = None
                if any(entry[0] for entry in batch):
                    try:
                        # No timeout: while the store is down, acks wait (and
                        # producers with them); health shows the store failing.
                        self.worker.rt.checkpoint(timeout=None)
                    except HeadraceError as e:
                        # The checkpoint cannot be built (e.g. a state value of
                        # an unsupported type): accepted, not durable; say so.
                        failure = str(e)
                        log.error("acknowledging without a durable checkpoint: %s", e)
                    # The fires these events caused ran before the checkpoint
                    # was taken: log them durably before saying so.
                    self.worker.fires.flush()
                frames = []
                for durable, req_id, ok, result in batch:
                    if durable and failure is not None and isinstance(result, dict):
                        result = {**result, "durable": False, "checkpoint_error": failure}
                    frames.append(encode([req_id, ok, result]))
                try:
                    self.conn.sendall(b"".join(frames))
                except OSError:
                    return
            if closed and not batch:
                self.conn.close()
                return


def main(argv: list[str]) -> int:
    config = orjson.loads(argv[0])
    # Confined first, before any package code is imported (its uid is already the tenant's).
    sandbox.apply(config.get("sandbox"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: worker_ref[0].stopping.set() if worker_ref else sys.exit(0))
    worker_ref: list[Worker] = []
    try:
        worker = Worker(config)
    except ManifestError as e:
        _say("error", code="bad_manifest", error=str(e), problems=list(e.problems))
        return EXIT_LOAD
    except HeadraceError as e:
        _say("error", code="bad_graph", error=f"{type(e).__name__}: {e}")
        return EXIT_LOAD
    except Exception as e:  # noqa: BLE001 - the package's own code raised
        _say("error", code="package_error", error=f"{type(e).__name__}: {e}")
        return EXIT_LOAD
    worker_ref.append(worker)
    if config.get("check"):
        _say("ok", graph=worker.loaded.name, accumulators=sorted(worker.accumulators))
        return 0
    try:
        worker.start()
    except HeadraceError as e:
        _say("error", code="start_failed", error=f"{type(e).__name__}: {e}")
        return EXIT_START
    worker.serve(config["socket"])
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Everything is checkpointed and closed: skip interpreter finalisation,
    # which would trip over the daemon thread blocked reading stdin.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
