"""Everything on the wire between the supervisor and a worker.

Two channels, neither shared with the package's own output:

- **Status lines** on a dedicated pipe (the worker's fd ``status_fd``, never
  its stdout or stderr, which belong to user code and are only drained and
  logged): one JSON object per line, ``ready`` once the checkpoint is
  restored and the socket listens, or ``error`` / ``ok`` from a start or an
  upload check. :func:`say` writes one, :func:`parse` reads one.
- **Requests** on the worker's Unix socket, framed by :mod:`.ipc`:
  ``[id, op, arg]`` answered by ``[id, ok, result]``, matched by id. :class:`Op`
  names every operation; :data:`DURABLE` those answered only after a
  checkpoint covering them, in request order; other replies (reads,
  requests refused as a whole) go out at once, possibly ahead of those.

Every frame is bounded by bytes: push batches by :data:`MAX_BATCH_BYTES`
(the client splits them), replies by :data:`MAX_REPLY_BYTES` (a larger one
is answered with the error ``reply_too_large``; ``fires`` pages instead),
and either side drops a connection that sends a frame over
:data:`~headrace.supervisor.ipc.MAX_FRAME`, after which the supervisor
reconnects (or restarts the worker).
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

__all__ = [
    "DURABLE",
    "EXIT_FENCED",
    "EXIT_LOAD",
    "EXIT_START",
    "EXIT_THREAD",
    "FIRES_PAGE_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_REPLY_BYTES",
    "Op",
    "Refusal",
    "parse",
    "say",
]


class Op(StrEnum):
    PUSH = "push"
    INJECT = "inject"
    FIRE = "fire"
    PAUSE = "pause"
    RESUME = "resume"
    STATE = "state"
    STATS = "stats"
    FIRES = "fires"
    PING = "ping"
    DESCRIBE = "describe"
    STOP = "stop"


#: Operations whose answer waits for a checkpoint covering them.
DURABLE = frozenset({Op.PUSH, Op.INJECT, Op.PAUSE, Op.RESUME, Op.FIRE})

#: A push request carries at most this many bytes of events (one event larger
#: than this still goes alone): no frame comes near the frame limit.
MAX_BATCH_BYTES = 8 * 1024 * 1024
#: The largest reply a worker sends; above it the request gets ``reply_too_large``.
MAX_REPLY_BYTES = 16 * 1024 * 1024
#: Default and upper bound of one page of ``fires`` (bytes of fire records).
FIRES_PAGE_BYTES = 4 * 1024 * 1024

#: Worker exit codes the supervisor reads: the package cannot load, the
#: runtime could not start, a newer worker of the graph took over the store
#: (fenced), a worker thread died (the supervisor restarts the worker).
EXIT_LOAD = 3
EXIT_START = 4
EXIT_FENCED = 5
EXIT_THREAD = 6


class Refusal(NamedTuple):
    """One refused event of a push: its index in the batch, a code, a message."""

    at: int
    code: str
    text: str


def say(fd: int, event: str, **fields: Any) -> None:
    """Writes one status line to ``fd`` (a pipe to the supervisor)."""
    data = orjson.dumps({"event": event, **fields}, default=str) + b"\n"
    while data:
        data = data[os.write(fd, data) :]


def parse(line: bytes) -> dict[str, Any]:
    """One status line as a dict (empty if it is not one)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
