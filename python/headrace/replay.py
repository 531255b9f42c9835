"""Replaying recorded inputs: run a graph over a journal (``Runtime(...,
journal=...)``), a JSON-lines or msgpack file of ``(time, accumulator,
event)``, or any iterable of those, as fast as possible on a
:class:`~headrace.SimClock`, and get the fires.

A journal replays the run it recorded: events with the times and the order the
processor took them, timers at the steps they ran, manual fires and pauses,
and for ``latest`` and ``burst`` inputs the points where the processor settled
(so updates the live run collapsed into one fire collapse again). The replay
fires what the live run fired, with the same outputs in the same order
(``tests/test_replay.py`` records thread-mode runs with timers, retries and
collapsed updates, and checks it).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from headrace import _core
from headrace._options import Mode
from headrace.clock import SimClock, TimeLike
from headrace.errors import HeadraceError
from headrace.graph import ComputationGraph
from headrace.journal import JournalEntry, read_journal
from headrace.runtime import Runtime
from headrace.sources.kafka_range import KafkaRange
from headrace.testing._run import drive, run_graph, taking_failures

__all__ = ["KafkaRange", "Source", "replay"]

#: What can be replayed: a journal directory, a ``.jsonl`` or ``.msgpack``
#: file, a :class:`KafkaRange`, or ``(time, accumulator, event)`` triples.
Source = str | os.PathLike[str] | KafkaRange | Iterable[tuple[TimeLike, str, Any]]

# Journal records handed to the engine at a time.
_CHUNK = 10_000


def replay(
    graph: ComputationGraph,
    source: Source,
    *,
    mode: Mode = "inline",
    until: TimeLike | None = None,
    **runtime_options: Any,
) -> list[_core.FireResult]:
    """Runs ``graph`` over ``source`` on a simulated clock and returns every
    fire, in order. A fire whose node raised is in the list with its
    ``error``.

    Args:
        source: A journal directory, a ``.jsonl``/``.ndjson`` file of
            ``[time, accumulator, event]`` lines (or objects with those
            keys), a ``.msgpack`` file of such arrays, or an iterable of
            triples (times are epoch seconds or datetimes), or a
            :class:`KafkaRange` (messages at their timestamps, into the stream
            accumulator reading that topic, decoded with its codec).
        until: Advance the clock here after the last input, running the
            timers due by then.
        mode: "inline" (default) or "thread", for files and triples (a
            journal replays inline: the live processor's order is in it).
        runtime_options: Any other :class:`~headrace.Runtime` option
            (``max_attempts``, ``retry_backoff``, ...): give the ones the
            recorded run used.

    Raises:
        HeadraceError: the journal names an accumulator the graph does not have.
        JournalError: the journal is corrupt (a torn last record is dropped).
    """
    for reserved in ("clock", "on_fire", "journal"):
        if reserved in runtime_options:
            raise TypeError(f"replay sets {reserved}= itself")
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return _replay_journal(graph, read_journal(source), until, runtime_options)
    if isinstance(source, KafkaRange):
        return _replay_range(graph, source, mode, until, runtime_options)
    triples = _read_file(Path(source)) if isinstance(source, (str, os.PathLike)) else iter(source)
    return run_graph(graph, triples, until=until, mode=mode, **runtime_options)


def _replay_journal(
    graph: ComputationGraph,
    entries: Iterator[JournalEntry],
    until: TimeLike | None,
    options: dict[str, Any],
) -> list[_core.FireResult]:
    first = next(entries, None)
    fires: list[_core.FireResult] = []
    clock = SimClock()
    if first is not None:
        clock._advance_ns(first.time_ns - clock.nanos)
    known = {a.name for a in graph.accumulators}
    rt = Runtime(graph, clock=clock, on_fire=fires.append, _replaying=True, **options)

    def feed() -> None:
        chunk: list[tuple[str, int, str | None, bytes]] = []
        for entry in itertools.chain([first] if first is not None else [], entries):
            if entry.kind == "event" and entry.accumulator not in known:
                raise HeadraceError(
                    f"the journal has an event for accumulator {entry.accumulator!r}, which graph "
                    f"'{graph.name}' does not have (it has: {', '.join(sorted(known))})"
                )
            chunk.append((entry.kind, entry.time_ns, entry.accumulator, entry.payload))
            # A chunk ends only after a record that settles what came before
            # it, so that events the live run collapsed stay together.
            if len(chunk) >= _CHUNK and entry.kind != "event":
                rt._replay(chunk)
                chunk = []
        if chunk:
            rt._replay(chunk)

    drive(rt, clock, feed, until)
    return fires


def _replay_range(
    graph: ComputationGraph, source: KafkaRange, mode: Mode, until: TimeLike | None, options: dict[str, Any]
) -> list[_core.FireResult]:
    name = source.accumulator
    if name is None:
        readers = [a.name for a in graph.accumulators if a.kind == "stream" and a.config.get("topic") == source.topic]
        if len(readers) != 1:
            raise HeadraceError(
                f"graph '{graph.name}' has {len(readers) or 'no'} stream accumulator(s) reading topic "
                f"'{source.topic}'{': ' + ', '.join(readers) if readers else ''}; name one with KafkaRange(accumulator=...)"
            )
        name = readers[0]
    elif name not in {a.name for a in graph.accumulators}:
        raise HeadraceError(f"graph '{graph.name}' has no accumulator '{name}'")
    messages = source.messages()
    first = next(messages, None)
    fires: list[_core.FireResult] = []
    clock = SimClock(first.time if first is not None else None)
    rt = Runtime(graph, mode=mode, clock=clock, on_fire=fires.append, sources=False, **options)

    def feed() -> None:
        for m in itertools.chain([first] if first is not None else [], messages):
            if m.time > clock.now():
                clock.set(m.time)  # the timers due before the message run first
            taking_failures(lambda: rt.push_bytes(name, m.value))

    drive(rt, clock, feed, until)
    return fires


def _read_file(path: Path) -> Iterator[tuple[TimeLike, str, Any]]:
    if path.suffix in (".jsonl", ".ndjson"):
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield _triple(json.loads(line), path, number)
    elif path.suffix in (".msgpack", ".mpk"):
        import msgpack

        with path.open("rb") as f:
            for number, item in enumerate(msgpack.Unpacker(f, raw=False), 1):
                yield _triple(item, path, number)
    else:
        raise HeadraceError(
            f"cannot replay {path}: give a journal directory, a .jsonl/.ndjson file or a .msgpack file"
        )


def _triple(item: Any, path: Path, number: int) -> tuple[TimeLike, str, Any]:
    if isinstance(item, dict) and {"time", "accumulator", "event"} <= item.keys():
        return item["time"], item["accumulator"], item["event"]
    if isinstance(item, list) and len(item) == 3 and isinstance(item[1], str):
        return item[0], item[1], item[2]
    raise HeadraceError(
        f"{path}: record {number} is not [time, accumulator, event] (or an object with those keys): {item!r:.200}"
    )
