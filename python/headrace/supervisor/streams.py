"""A worker's stdout and stderr: drained as fast as it writes, kept bounded.

Both belong to the package's code (the supervisor's own messages travel on a
separate status pipe), so anything may come out of them: megabytes from one
node, a single line with no newline. A pipe nobody reads blocks the writer,
and a blocked print inside a node wedges the graph; so each stream is read
continuously in chunks, lines longer than :data:`MAX_LINE` are cut, the last
:data:`TAIL_LINES` lines are kept for error reports, and lines go to the
server log at most :data:`LINES_PER_SECOND` a second per worker (the rest
are counted and the count is logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

__all__ = ["LINES_PER_SECOND", "MAX_LINE", "TAIL_LINES", "OutputTail", "drain"]

#: Characters kept of one line (the rest is replaced by a marker).
MAX_LINE = 2048
#: Lines kept for last_error and exit reports.
TAIL_LINES = 40
#: Lines forwarded to the server log per second and worker.
LINES_PER_SECOND = 50
_CHUNK = 64 * 1024


class OutputTail:
    """The bounded tail of a worker's output, and the rate limit of its logging."""

    def __init__(self, logger: logging.Logger) -> None:
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.logger = logger
        self.total_bytes = 0
        self._second = 0
        self._logged = 0
        self._dropped = 0

    def line(self, raw: bytes, stream: str) -> None:
        text = raw[: MAX_LINE * 4].decode("utf-8", "replace").rstrip()
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + f" … [line cut at {MAX_LINE} characters]"
        self.lines.append(text)
        now = int(time.monotonic())
        if now != self._second:
            if self._dropped:
                self.logger.warning("%d lines of output not logged in the last second (rate limit)", self._dropped)
            self._second, self._logged, self._dropped = now, 0, 0
        if self._logged < LINES_PER_SECOND:
            self._logged += 1
            self.logger.info("%s: %s", stream, text)
        else:
            self._dropped += 1

    def text(self, n: int = 3) -> str:
        return " | ".join(list(self.lines)[-n:])


async def drain(reader: asyncio.StreamReader, tail: OutputTail, stream: str) -> None:
    """Reads ``reader`` to its end, feeding whole lines (and cut-off pieces
    of over-long ones) to ``tail``; holds at most one chunk and one line."""
    partial = b""
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            break
        tail.total_bytes += len(chunk)
        data = partial + chunk
        *lines, partial = data.split(b"\n")
        for line in lines:
            tail.line(line, stream)
        if len(partial) > MAX_LINE * 4:
            tail.line(partial, stream)  # a line without end: report what came
            partial = b""
    if partial:
        tail.line(partial, stream)
