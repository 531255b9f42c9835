"""One graph's worker process: ``python -m headrace.supervisor.worker CONFIG_JSON``.

It loads the package, claims the graph in the checkpoint store (from then on
an older worker of the graph cannot write it), restores the checkpoint (the
Runtime does that before it accepts anything), then listens on its Unix
socket and says ``ready`` on its status pipe (see :mod:`.protocol`; stdout
and stderr belong to the package's code and are only drained by the
supervisor).

It never outlives its supervisor: the kernel kills it when the supervisor
dies (``PR_SET_PDEATHSIG``), even inside a node, and a closed stdin (the
supervisor exited) makes it checkpoint and stop. Processes a node forked
share its process group, which the supervisor kills when the worker ends.

Acknowledgements are durable: a push is answered once a checkpoint that
includes it is committed (:mod:`.ipc_server`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from typing import Any

import orjson

from headrace._logging import install_rate_limit
from headrace.errors import HeadraceError
from headrace.packages.manifest import ManifestError
from headrace.supervisor import sandbox
from headrace.supervisor.ipc_server import IpcServer, guarded
from headrace.supervisor.protocol import EXIT_LOAD, EXIT_START, EXIT_THREAD, Op, say
from headrace.supervisor.worker_ops import WorkerOps

log = logging.getLogger("headrace.worker")

_PR_SET_PDEATHSIG = 1
_TERM: list[bool] = []  # SIGTERM received


def die_with_supervisor(supervisor_pid: int | None) -> None:
    """Asks the kernel to signal this process when its parent dies, then
    checks that the parent is still the supervisor (it may have died before
    the request took effect). The signal ends the worker and its process
    group at once, so what its nodes forked goes with it (the kernel's
    parent-death signal reaches only this process); a group the handler
    could not reach is killed by the next server on this data dir.

    Must run after any change of credentials (a setuid clears the request),
    so it is called after the worker's confinement step, if any."""
    if not sys.platform.startswith("linux"):
        return
    signal.signal(_PARENT_DIED, _end_with_forks)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, _PARENT_DIED, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if supervisor_pid is not None and os.getppid() != supervisor_pid:
        os._exit(EXIT_START)  # the supervisor is already gone


#: The parent-death signal: caught (SIGKILL could not take the forks along).
_PARENT_DIED = signal.SIGUSR2


def _end_with_forks(signum: int, frame: object) -> None:
    # Runs on the main thread, which only waits once the worker serves, so
    # it runs at once (within one 0.2 s wait at most).
    if os.getpgrp() == os.getpid():  # spawned by a supervisor: the group is ours alone
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


class _Status:
    """The status pipe to the supervisor (stdout if started by hand)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = sys.stdout.fileno() if fd is None else fd
        if fd is not None:
            os.set_inheritable(fd, False)  # processes a node starts do not get it

    def say(self, event: str, **fields: Any) -> None:
        say(self.fd, event, **fields)


def main(argv: list[str]) -> int:
    config = orjson.loads(argv[0])
    # Confined first, before any package code is imported (its uid is already
    # the tenant's: the supervisor spawned it so).
    sandbox.apply(config.get("sandbox"))
    # After the confinement: a change of credentials clears the request.
    die_with_supervisor(config.get("supervisor_pid"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    install_rate_limit(logging.getLogger())
    status = _Status(config.get("status_fd"))
    stopping = threading.Event()  # set by the stop op, stdin EOF, a dead thread
    # The handler only records the signal (setting an Event could deadlock on
    # its lock); the serving loop acts on it.
    signal.signal(signal.SIGTERM, lambda *_: _TERM.append(True))
    try:
        ops = WorkerOps(config)
    except ManifestError as e:
        status.say("error", code="bad_manifest", error=str(e), problems=list(e.problems))
        return EXIT_LOAD
    except HeadraceError as e:
        status.say("error", code="bad_graph", error=f"{type(e).__name__}: {e}")
        return EXIT_LOAD
    except Exception as e:  # noqa: BLE001 - the package's own code raised
        status.say("error", code="package_error", error=f"{type(e).__name__}: {e}")
        return EXIT_LOAD
    if config.get("check"):
        status.say("ok", graph=ops.loaded.name, accumulators=sorted(ops.accumulators))
        return 0
    try:
        ops.start()
    except Exception as e:  # noqa: BLE001 - a store, a fire log, or the package's code
        status.say("error", code="start_failed", error=f"{type(e).__name__}: {e}")
        return EXIT_START
    return serve(ops, config["socket"], status, stopping)


def serve(ops: WorkerOps, path: str, status: _Status, stopping: threading.Event) -> int:
    fatal: list[str] = []

    def on_fatal(why: str) -> None:
        fatal.append(why)
        stopping.set()

    def stop(arg: Any) -> dict[str, Any]:
        stopping.set()
        return {"stopping": True}

    ops.table[Op.STOP] = stop
    if os.path.exists(path):
        os.unlink(path)
    server = IpcServer(ops, path, on_fatal)
    server.start()
    guarded(lambda: _watch_parent(stopping), "headrace-parent", on_fatal).start()
    status.say("ready", pid=os.getpid(), restored_fire_count=ops.rt.stats()["fire_count"])
    while not stopping.wait(0.2) and not _TERM:
        if not ops.fires.thread_alive:
            on_fatal("the fire log's writer thread died")
    server.close()
    if fatal:
        log.error("worker ending: %s", "; ".join(fatal))
        status.say("error", code="worker_thread", error="; ".join(fatal))
    ops.close()
    return EXIT_THREAD if fatal else 0


def _watch_parent(stopping: threading.Event) -> None:
    # stdin is a pipe from the supervisor: EOF means it closed it (or is gone).
    try:
        while sys.stdin.buffer.read(1):
            pass
    except (OSError, ValueError):
        pass
    log.info("supervisor gone; checkpointing and stopping")
    stopping.set()


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Everything is checkpointed and closed: skip interpreter finalisation,
    # which would trip over the daemon thread blocked reading stdin.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
