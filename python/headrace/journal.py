"""The input journal's storage: append records to segment files, read them back.

A journal is a directory of segment files (``00000000000000000001.hrj``, named
by the seq of their first record). Each record is framed by its length and a
CRC-32C, so that a write torn by a crash is detected and dropped, never
misread. :class:`JournalWriter` appends from a background thread (the
appending call only copies the record into a bounded buffer);
:func:`read_journal` iterates the records in order.

Payloads are bytes in, bytes out: their encoding is the caller's.

Example::

    from headrace.journal import JournalWriter, read_journal

    with JournalWriter("journal/", "prices", ["quotes", "trades"]) as w:
        w.append_event(0, b'{"bid": 1.5}', time_ns=1_700_000_000_000_000_000)
    for entry in read_journal("journal/"):
        print(entry.seq, entry.time, entry.accumulator, entry.payload)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypeAlias, cast

from headrace import _core
from headrace._core import MAX_RECORD_BYTES, JournalWriter

__all__ = ["MAX_RECORD_BYTES", "JournalEntry", "JournalReader", "JournalWriter", "read_journal"]

Kind: TypeAlias = Literal["event", "advance", "settle", "fire", "pause"]
#: Where a stream source's message came from: ``(topic, partition, offset)``.
Position: TypeAlias = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One record of a journal.

    Attributes:
        seq: Its sequence number: 1 for a journal's first record, then one more
            for each record, across segments.
        time_ns: Event (or clock) time in nanoseconds since the Unix epoch.
        kind: ``"event"`` (an input), ``"advance"`` (a clock step: the timers
            due by then ran, no input), ``"settle"`` (the processor settled
            here), ``"fire"`` (a manual fire) or ``"pause"`` (payload ``b"\\x01"``:
            paused, ``b"\\x00"``: resumed).
        accumulator: The event's accumulator, by name; None unless an event.
        payload: The event as it was received (empty unless an event).
        position: ``(topic, partition, offset)`` of a stream source's message, or None.
    """

    seq: int
    time_ns: int
    kind: Kind
    accumulator: str | None
    payload: bytes
    position: Position | None

    @property
    def time(self) -> float:
        """``time_ns`` as epoch seconds."""
        return self.time_ns / 1e9


class JournalReader(Iterator[JournalEntry]):
    """The records of a journal directory, oldest first (see :func:`read_journal`).

    Once exhausted, :attr:`status` tells how the journal ended. Damage that a
    torn last write cannot explain raises :class:`headrace.errors.JournalError`
    naming the segment file and byte offset.
    """

    def __init__(self, path: str | os.PathLike[str], from_seq: int = 0) -> None:
        self._reader = _core.read_journal(os.fspath(path), from_seq)

    def __iter__(self) -> JournalReader:
        return self

    def __next__(self) -> JournalEntry:
        seq, time_ns, kind, accumulator, payload, position = next(self._reader)
        return JournalEntry(seq, time_ns, cast(Kind, kind), accumulator, payload, position)

    @property
    def status(self) -> Literal["clean", "torn"] | None:
        """None while reading; ``"clean"`` if every segment ended on a whole
        record, ``"torn"`` if a torn last write was dropped (see :attr:`torn`)."""
        return cast(Literal["clean", "torn"] | None, self._reader.status)

    @property
    def torn(self) -> tuple[str, int] | None:
        """``(segment file, byte offset)`` of the dropped torn write, or None."""
        return self._reader.torn

    @property
    def graph(self) -> str | None:
        """The graph the journal belongs to (None before the first segment is read)."""
        return self._reader.graph

    @property
    def accumulators(self) -> list[str] | None:
        """The accumulator names of the segment being read."""
        return self._reader.accumulators


def read_journal(path: str | os.PathLike[str], from_seq: int = 0) -> JournalReader:
    """Reads the journal directory ``path`` from seq ``from_seq`` on.

    Segments wholly before ``from_seq`` are not opened. A torn last record
    (a crash during a write) ends the iteration cleanly, with ``status ==
    "torn"``; corruption anywhere else raises ``JournalError``.

    Raises:
        JournalError: ``path`` is missing or not a directory, or a segment is
            corrupt (``path`` and ``offset`` on the exception say where).
    """
    return JournalReader(path, from_seq)
