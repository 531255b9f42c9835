"""The worker's end of its Unix socket: an accept loop and, per connection, a
reader thread that runs requests in order and an acker thread that answers
those that changed state, in order, after one group commit for all of them.
Replies that need no commit (reads, requests refused as a whole) are sent by
the reader at once, ahead of any still waiting for a commit: a refusal while
the store is down must not wait for the store.

No thread here may die silently: every thread body is guarded, and a thread
that ends on an unexpected exception calls ``on_fatal``, which ends the
worker so that the supervisor restarts it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from headrace.errors import FencedError, HeadraceError
from headrace.supervisor.ipc import FrameError, encode, read_frame
from headrace.supervisor.protocol import DURABLE, MAX_REPLY_BYTES
from headrace.supervisor.sandbox import from_parent
from headrace.supervisor.worker_ops import OpError, WorkerOps

__all__ = ["IpcServer"]

log = logging.getLogger("headrace.worker")

#: How long an ack waits for an unwritable fire log before it says so.
FIRE_LOG_ACK_WAIT = 2.0


def guarded(target: Callable[[], None], name: str, on_fatal: Callable[[str], None]) -> threading.Thread:
    """A daemon thread whose unexpected death is reported to ``on_fatal``."""

    def run() -> None:
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - reported, then the worker ends
            log.exception("thread %s died", name)
            on_fatal(f"thread {name} died: {type(e).__name__}: {e}")

    return threading.Thread(target=run, name=name, daemon=True)


class IpcServer:
    def __init__(self, ops: WorkerOps, path: str, on_fatal: Callable[[str], None]) -> None:
        self.ops = ops
        self.on_fatal = on_fatal
        self.stopping = False
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(16)

    def start(self) -> None:
        guarded(self._accept, "headrace-ipc-accept", self.on_fatal).start()

    def close(self) -> None:
        self.stopping = True
        self._server.close()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self._server.accept()
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.1)  # e.g. out of file descriptors: try again
                continue
            if not from_parent(conn):
                conn.close()
                continue
            Connection(self.ops, conn, self.on_fatal).start()


class _Entry(NamedTuple):
    durable: bool
    req_id: int
    ok: bool
    result: Any


class Connection:
    """One supervisor connection."""

    def __init__(self, ops: WorkerOps, conn: socket.socket, on_fatal: Callable[[str], None]) -> None:
        self.ops = ops
        self.conn = conn
        self.on_fatal = on_fatal
        self.cond = threading.Condition()
        self.send_lock = threading.Lock()
        self.pending: list[_Entry] = []
        self.closed = False

    def start(self) -> None:
        guarded(self._read, "headrace-ipc-read", self.on_fatal).start()
        guarded(self._ack, "headrace-ipc-ack", self.on_fatal).start()

    def _read(self) -> None:
        try:
            while True:
                message = read_frame(self.conn)
                if message is None:
                    break
                entry = self._run(message)
                if not entry.durable:
                    self._send(self._frame(entry, None))
                    continue
                with self.cond:
                    self.pending.append(entry)
                    self.cond.notify()
        except (OSError, FrameError, ValueError) as e:
            # A broken frame ends this connection only; the supervisor reconnects.
            log.warning("ipc connection dropped: %s", e)
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify()

    def _run(self, message: Any) -> _Entry:
        try:
            req_id, op, arg = message
        except (TypeError, ValueError):
            raise FrameError(f"a request must be [id, op, arg], got {type(message).__name__}") from None
        handler = self.ops.table.get(op)
        try:
            if handler is None:
                raise OpError(f"unknown operation '{op}'", "bad_request")
            result = handler(arg)
            # A push refused whole changed nothing: no commit to wait for.
            changed = op in DURABLE and not (isinstance(result, dict) and result.get("accepted") == 0)
            return _Entry(changed, req_id, True, result)
        except OpError as e:
            return _Entry(False, req_id, False, {"error": str(e), "code": e.code})
        except FencedError:
            raise  # the store wrapper exits first; never answered as a refusal
        except HeadraceError as e:
            return _Entry(False, req_id, False, {"error": str(e), "code": "refused"})
        except Exception as e:  # noqa: BLE001 - every request gets an answer
            return _Entry(False, req_id, False, {"error": f"{type(e).__name__}: {e}", "code": "worker_error"})

    def _ack(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.closed:
                    self.cond.wait()
                batch, self.pending = self.pending, []
                closed = self.closed
            if batch:
                failure = self._commit()
                if not self._send(b"".join(self._frame(entry, failure) for entry in batch)):
                    return
            if closed and not batch:
                self.conn.close()
                return

    def _send(self, data: bytes) -> bool:
        try:
            with self.send_lock:
                self.conn.sendall(data)
        except OSError:
            return False
        return True

    def _commit(self) -> str | None:
        """Makes everything the batch did durable; the reason it is not, or None."""
        failure = None
        try:
            # No timeout: while the store is down, acks wait (and producers
            # with them; new pushes are refused); health shows the store failing.
            self.ops.rt.checkpoint(timeout=None)
        except HeadraceError as e:
            # The checkpoint cannot be built (e.g. a state value of an
            # unsupported type): accepted, not durable; say so.
            failure = str(e)
            log.error("acknowledging without a durable checkpoint: %s", e)
        # The fires these events caused ran before the checkpoint was taken:
        # log them durably before saying so, retrying a while if the fire log
        # cannot be written; past that, the ack says what failed.
        deadline = time.monotonic() + FIRE_LOG_ACK_WAIT
        delay = 0.05
        while not self.ops.fires.flush():
            if time.monotonic() >= deadline:
                return failure or self.ops.fires.error
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        return failure

    @staticmethod
    def _frame(entry: _Entry, failure: str | None) -> bytes:
        result = entry.result
        if entry.durable and failure is not None and isinstance(result, dict):
            result = {**result, "durable": False, "checkpoint_error": failure}
        frame = encode([entry.req_id, entry.ok, result])
        if len(frame) > MAX_REPLY_BYTES:
            text = f"the reply is {len(frame)} bytes, over the {MAX_REPLY_BYTES}-byte limit; ask for less"
            frame = encode([entry.req_id, False, {"error": text, "code": "reply_too_large"}])
        return frame
