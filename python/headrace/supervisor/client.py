"""The supervisor's end of a worker connection (asyncio).

Requests are pipelined: each gets an id and a future, responses are matched
by id. Pushes that arrive in the same event-loop turn are sent as one
``push`` request per accumulator, so a busy WebSocket costs one IPC round
trip (and one group commit) per batch, not per event. A batch is sent as
soon as it holds :data:`~.protocol.MAX_BATCH_BYTES` of events, so no request
comes near the frame limit however many large events arrive at once.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

from headrace.errors import HeadraceError
from headrace.supervisor.ipc import FrameError, encode, read_frame_async
from headrace.supervisor.protocol import MAX_BATCH_BYTES, Op

__all__ = ["IpcClient", "OpFailed", "PushBatch", "PushOutcome", "WorkerUnavailable"]


class WorkerUnavailable(HeadraceError):
    """The graph's worker is not running (starting, restarting, or stopped)."""


class OpFailed(HeadraceError):
    """The worker refused a request; ``code`` says why."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


#: (accepted, code or None, message or None): a refusal's reason, or for an
#: accepted event "not_durable" when no checkpoint could hold it.
PushOutcome = tuple[bool, str | None, str | None]


class IpcClient:
    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self.label = label
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._batches: dict[tuple[str, str | None], PushBatch] = {}
        self._flush_scheduled = False
        self._pushes_in_flight = 0
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None

    async def connect(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.path)
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader), name=f"ipc-read-{self.label}")

    @property
    def closed_reason(self) -> str | None:
        return self._closed_reason

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._closed_reason is None

    async def call(self, op: str, arg: Any = None, timeout: float | None = 30.0) -> Any:
        """Sends one request and returns its result.

        Raises:
            WorkerUnavailable: the connection is closed or closes first.
            OpFailed: the worker answered with an error.
            TimeoutError: no answer within ``timeout``.
        """
        future = self._send(op, arg)
        if timeout is None:
            return await future
        return await asyncio.wait_for(future, timeout)

    def push(self, accumulator: str, codec: str | None, data: bytes) -> tuple[PushBatch, int]:
        """Queues one raw event; returns its batch and its index in it. The
        batch's ``done`` resolves when the worker answers, and ``outcome(i)``
        says whether event i was accepted (durably) or refused and why. Never
        raises. One future per batch, not per event: this is the hot path."""
        if not self.connected:
            return PushBatch.refused(self._unavailable_text()), 0
        key = (accumulator, codec)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = PushBatch(asyncio.get_running_loop())
        batch.events.append(data)
        batch.size += len(data)
        if batch.size >= MAX_BATCH_BYTES:
            # Full: send it now; later events start a new batch.
            del self._batches[key]
            self._send_batch(accumulator, codec, batch)
        elif self._pushes_in_flight == 0:
            # Nothing in flight: send now, a loop turn sooner.
            self._flush()
        elif not self._flush_scheduled:
            # Batch what arrives in this loop turn into one request.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return batch, len(batch.events) - 1

    def _flush(self) -> None:
        self._flush_scheduled = False
        batches, self._batches = self._batches, {}
        for (accumulator, codec), batch in batches.items():
            self._send_batch(accumulator, codec, batch)

    def _send_batch(self, accumulator: str, codec: str | None, batch: PushBatch) -> None:
        request = self._send(Op.PUSH, [accumulator, codec, batch.events])
        self._pushes_in_flight += 1
        request.add_done_callback(functools.partial(self._settled, batch=batch))

    def _settled(self, request: asyncio.Future[Any], *, batch: PushBatch) -> None:
        self._pushes_in_flight -= 1
        batch.settle(request)

    def _send(self, op: str, arg: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.connected:
            future.set_exception(WorkerUnavailable(self._unavailable_text()))
            return future
        req_id = next(self._ids)
        self._waiting[req_id] = future
        assert self._writer is not None
        self._writer.write(encode([req_id, op, arg]))
        return future

    def _unavailable_text(self) -> str:
        return f"the worker of {self.label} is not running" + (
            f" ({self._closed_reason})" if self._closed_reason else ""
        )

    async def _read(self, reader: asyncio.StreamReader) -> None:
        reason = "connection closed"
        try:
            while True:
                message = await read_frame_async(reader)
                if message is None:
                    break
                req_id, ok, result = message
                future = self._waiting.pop(req_id, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(result)
                else:
                    future.set_exception(OpFailed(result.get("error", "failed"), result.get("code", "failed")))
        except (OSError, FrameError, ValueError, TypeError, AttributeError) as e:
            reason = f"bad reply from the worker: {e}" if not isinstance(e, OSError) else str(e)
        finally:
            self.close(reason)

    def close(self, reason: str = "closed") -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(WorkerUnavailable(self._unavailable_text()))
        batches, self._batches = self._batches, {}
        for batch in batches.values():
            batch.resolve((False, "unavailable", self._unavailable_text()), {})
        if self._writer is not None:
            self._writer.close()
        task = self._reader_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()


class PushBatch:
    """Events sent to the worker in one push request."""

    __slots__ = ("_default", "_refused", "done", "events", "size")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.events: list[bytes] = []
        self.size = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self._default: PushOutcome = (True, None, None)
        self._refused: dict[int, PushOutcome] = {}

    @classmethod
    def refused(cls, text: str) -> PushBatch:
        batch = cls(asyncio.get_running_loop())
        batch.resolve((False, "unavailable", text), {})
        return batch

    def outcome(self, index: int) -> PushOutcome:
        """Event ``index``'s outcome (once ``done``)."""
        return self._refused.get(index, self._default)

    def resolve(self, default: PushOutcome, refused: dict[int, PushOutcome]) -> None:
        if not self.done.done():
            self._default, self._refused = default, refused
            self.done.set_result(None)

    def settle(self, request: asyncio.Future[Any]) -> None:
        """Takes the worker's answer (or failure) to the push request."""
        if request.cancelled():
            self.resolve((False, "unavailable", "request cancelled"), {})
            return
        error = request.exception()
        if error is not None:
            code = error.code if isinstance(error, OpFailed) else "unavailable"
            self.resolve((False, code, str(error)), {})
            return
        result = request.result()
        # Accepted, but the checkpoint that should hold it failed: say so.
        default: PushOutcome = (
            (True, None, None)
            if result.get("durable", True)
            else (True, "not_durable", result.get("checkpoint_error"))
        )
        self.resolve(default, {i: (False, code, text) for i, code, text in result["refused"]})
