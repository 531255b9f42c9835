"""The supervisor's end of a worker connection (asyncio).

Requests are pipelined: each gets an id and a future, responses arrive in
order. Pushes that arrive in the same event-loop turn are sent as one
``push`` request per accumulator, so a busy WebSocket costs one IPC round
trip (and one group commit) per batch, not per event.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

from headrace.errors import HeadraceError
from headrace.supervisor.ipc import FrameError, encode, read_frame_async

__all__ = ["IpcClient", "OpFailed", "PushOutcome", "WorkerUnavailable"]


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
        self._batches: dict[tuple[str, str | None], tuple[list[bytes], list[asyncio.Future[PushOutcome]]]] = {}
        self._flush_scheduled = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None

    async def connect(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.path)
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader), name=f"ipc-read-{self.label}")

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

    def push(self, accumulator: str, codec: str | None, data: bytes) -> asyncio.Future[PushOutcome]:
        """Queues one raw event; the future says whether it was accepted
        (durably) or refused and why. Never raises."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PushOutcome] = loop.create_future()
        if not self.connected:
            future.set_result((False, "unavailable", self._unavailable_text()))
            return future
        key = (accumulator, codec)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = ([], [])
        batch[0].append(data)
        batch[1].append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batches, self._batches = self._batches, {}
        for (accumulator, codec), (events, futures) in batches.items():
            request = self._send("push", [accumulator, codec, events])
            request.add_done_callback(functools.partial(_settle, futures=futures))

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
        except (OSError, FrameError) as e:
            reason = str(e)
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
        for _, futures in batches.values():
            for f in futures:
                if not f.done():
                    f.set_result((False, "unavailable", self._unavailable_text()))
        if self._writer is not None:
            self._writer.close()
        task = self._reader_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()


def _settle(request: asyncio.Future[Any], *, futures: list[asyncio.Future[PushOutcome]]) -> None:
    if request.cancelled():
        outcome: PushOutcome = (False, "unavailable", "request cancelled")
        for f in futures:
            if not f.done():
                f.set_result(outcome)
        return
    error = request.exception()
    if error is not None:
        code = error.code if isinstance(error, OpFailed) else "unavailable"
        for f in futures:
            if not f.done():
                f.set_result((False, code, str(error)))
        return
    result = request.result()
    refused = {i: (code, text) for i, code, text in result["refused"]}
    # Accepted, but the checkpoint that should hold it failed: say so.
    accepted: PushOutcome = (
        (True, None, None) if result.get("durable", True) else (True, "not_durable", result.get("checkpoint_error"))
    )
    for i, f in enumerate(futures):
        if f.done():
            continue
        r = refused.get(i)
        f.set_result(accepted if r is None else (False, r[0], r[1]))
