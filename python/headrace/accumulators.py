"""Accumulator declarations: the boundary between the outside world and a graph.

Each decorator turns a function into an :class:`Accumulator`, a plain
description that a :class:`~headrace.ComputationGraph` lists. The function's
name is the accumulator's name unless ``name=`` is given.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, overload

from headrace._durations import seconds
from headrace.errors import GraphDefinitionError
from headrace.names import name_problem

__all__ = [
    "Accumulator",
    "AccumulatorKind",
    "InputStrategy",
    "State",
    "batch_accumulator",
    "passthrough",
    "passthrough_accumulator",
    "polling_accumulator",
    "state_accumulator",
    "stream_accumulator",
]

AccumulatorKind = Literal["passthrough", "stream", "polling", "batch", "state"]
#: How an accumulator's boundaries reach fires: ``"latest"`` (updates collapse,
#: nodes see the newest), ``"sequential"`` (a fire per boundary, in order) or
#: ``"burst"`` (updates collapse, nodes see the list of every boundary since
#: the last successful fire).
InputStrategy = Literal["latest", "sequential", "burst"]
INPUT_STRATEGIES: tuple[InputStrategy, ...] = ("latest", "sequential", "burst")
Codec = Literal["json", "msgpack"]
F = TypeVar("F", bound=Callable[..., Any])


class _NoState:
    """Marks a stream accumulator declared without state (None is a valid initial state)."""

    def __repr__(self) -> str:
        return "<no state>"


_NO_STATE: Any = _NoState()


class State:
    """Mutable state handed to a stream accumulator as its second argument.

    Assign to ``.value``; the runtime keeps it (and checkpoints it with the
    stream's offsets).
    """

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"State({self.value!r})"


@dataclass(frozen=True)
class Accumulator:
    """A declared accumulator. Calling it calls the wrapped function."""

    name: str
    kind: AccumulatorKind
    function: Callable[..., Any]
    codec: Codec = "json"
    #: Kind-specific settings: interval, max_buffer_size, flush_interval,
    #: capacity, and for streams type, topic, group, broker, config.
    config: Mapping[str, Any] = field(default_factory=dict)
    #: Initial value of the stream accumulator's :class:`State`, if it has one.
    initial_state: Any = None
    has_state: bool = False
    #: This accumulator's input strategy; ``None``: the graph's ``input_strategy``.
    input: InputStrategy | None = None
    #: False for :func:`passthrough` (declared without a function): the event
    #: itself is the boundary and the engine makes no Python call for it;
    #: ``function`` is then the identity.
    has_function: bool = True
    #: Seconds without a boundary after which the accumulator is ``stale``
    #: (its health, and the reactor ``degraded``); None: never.
    max_age: float | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        """The engine awaits this function (``async def``; a polling
        accumulator's is called by its poller, not by the engine)."""
        return self.kind != "polling" and inspect.iscoroutinefunction(self.function)

    def new_state(self) -> State | None:
        """A fresh :class:`State` for one runtime (runtimes never share state)."""
        return State(copy.deepcopy(self.initial_state)) if self.has_state else None

    def engine_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "function": self.function if self.has_function else None,
            "codec": self.codec,
            "config": dict(self.config),
            "state": self.new_state(),
            "input": self.input,
            "is_async": self.is_async,
            "max_age": self.max_age,
        }


def _positional_arity(fn: Callable[..., Any], name: str) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise GraphDefinitionError(f"accumulator '{name}': cannot read the function's signature: {e}") from e
    count = 0
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return -1  # *args/**kwargs: accepts anything
        if p.kind == p.KEYWORD_ONLY:
            if p.default is p.empty:
                raise GraphDefinitionError(
                    f"accumulator '{name}': keyword-only parameter '{p.name}' needs a default"
                )
            continue
        if p.default is p.empty:
            count += 1
    return count


def _check_arity(fn: Callable[..., Any], name: str, expected: int, shape: str) -> None:
    arity = _positional_arity(fn, name)
    if arity not in (-1, expected):
        raise GraphDefinitionError(
            f"accumulator '{name}' must take {shape}; its function takes {arity} required argument(s)"
        )


def _name_of(fn: Callable[..., Any], name: str | None) -> str:
    result = name if name is not None else getattr(fn, "__name__", None)
    if not isinstance(result, str) or not result.isidentifier():
        raise GraphDefinitionError(
            f"accumulator name must be a Python identifier (it is used as a node parameter), got {result!r}"
        )
    if (problem := name_problem("accumulator", result)) is not None:
        raise GraphDefinitionError(problem)
    return result


def _codec(codec: str, name: str) -> Codec:
    if codec not in ("json", "msgpack"):
        raise GraphDefinitionError(f"accumulator '{name}': codec must be 'json' or 'msgpack', got {codec!r}")
    return codec  # type: ignore[return-value]


def _input(value: Any, name: str) -> InputStrategy | None:
    if value is not None and value not in INPUT_STRATEGIES:
        raise GraphDefinitionError(
            f"accumulator '{name}': input must be 'latest', 'sequential' or 'burst' (or None for the "
            f"graph's input_strategy), got {value!r}"
        )
    return value  # type: ignore[no-any-return]


def _positive_int(value: Any, what: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GraphDefinitionError(f"accumulator '{name}': {what} must be a positive integer, got {value!r}")
    return value


def _duration(value: Any, what: str, name: str) -> float:
    try:
        return seconds(value, what=f"accumulator '{name}': {what}")
    except ValueError as e:
        raise GraphDefinitionError(str(e)) from None


def _flag(value: Any, what: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise GraphDefinitionError(f"accumulator '{name}': {what} must be true or false, got {value!r}")
    return value


def start_position(value: Any, name: str) -> str | float:
    """A stream's ``start`` as the source reads it: "committed", "earliest",
    "latest", or epoch seconds."""
    if value is None:
        return "committed"
    if value in ("committed", "earliest", "latest"):
        return str(value)
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
    if isinstance(when, datetime):
        return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise GraphDefinitionError(
        f"accumulator '{name}': start must be 'committed', 'earliest', 'latest' or a time "
        f"(a datetime, an ISO 8601 string or epoch seconds), got {value!r}"
    )


def aged(acc: Accumulator, max_age: str | float | None) -> Accumulator:
    """``acc`` with ``max_age`` (every kind takes one; None keeps it as it is)."""
    if max_age is None:
        return acc
    return dataclasses.replace(acc, max_age=_duration(max_age, "max_age", acc.name))


@overload
def passthrough_accumulator(fn: F, /) -> Accumulator: ...
@overload
def passthrough_accumulator(
    *,
    name: str | None = None,
    codec: Codec = "json",
    input: InputStrategy | None = None,
    max_age: str | float | None = None,
) -> Callable[[F], Accumulator]: ...


def passthrough_accumulator(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    codec: Codec = "json",
    input: InputStrategy | None = None,  # noqa: A002 - the issue's spelling
    max_age: str | float | None = None,
) -> Accumulator | Callable[[Callable[..., Any]], Accumulator]:
    """Declares a passthrough accumulator: ``fn(event)`` returns the boundary
    (or ``None`` to emit nothing).

    Every kind takes ``input=``: ``"latest"``, ``"sequential"`` or ``"burst"``
    overrides the graph's ``input_strategy`` for this accumulator; and
    ``max_age=`` ("2s"): after that long without a boundary its health is
    ``stale`` and the reactor ``degraded`` until the next one."""

    def wrap(f: Callable[..., Any]) -> Accumulator:
        n = _name_of(f, name)
        _check_arity(f, n, 1, "one argument (the event)")
        return aged(Accumulator(n, "passthrough", f, _codec(codec, n), input=_input(input, n)), max_age)

    return wrap(fn) if fn is not None else wrap


def _forward(event: Any) -> Any:
    return event


def passthrough(
    name: str,
    *,
    codec: Codec = "json",
    input: InputStrategy | None = None,  # noqa: A002
    max_age: str | float | None = None,
) -> Accumulator:
    """Declares a passthrough accumulator without a function: each event (as
    pushed, or decoded from bytes) is the boundary as it is, and a ``None``
    event emits nothing, as ``lambda event: event`` would. The engine makes no
    Python call for it, so it is the cheapest way in for events that are
    already in the shape the nodes want.

    Example::

        book = hr.passthrough("book")
        graph = hr.ComputationGraph("spread", accumulators=[book])
    """
    if not isinstance(name, str):
        raise GraphDefinitionError(f"passthrough() takes the accumulator's name as a string, got {name!r}")
    n = _name_of(_forward, name)
    acc = Accumulator(n, "passthrough", _forward, _codec(codec, n), input=_input(input, n), has_function=False)
    return aged(acc, max_age)


def stream_accumulator(
    *,
    type: str = "kafka",  # noqa: A002 - the seed's spelling
    topic: str,
    group: str | None = None,
    broker: str = "KAFKA_BROKER",
    state: Any = _NO_STATE,
    config: Mapping[str, Any] | None = None,
    dead_letter_topic: str | None = None,
    start: str | float | datetime | None = None,
    static_membership: bool = True,
    name: str | None = None,
    codec: Codec = "json",
    input: InputStrategy | None = None,  # noqa: A002
    max_age: str | float | None = None,
) -> Callable[[Callable[..., Any]], Accumulator]:
    """Declares a stream accumulator fed by a broker topic (and by pushes).

    Undecodable messages are counted and logged and, with
    ``dead_letter_topic``, forwarded there (with their origin in headers).

    ``broker`` names a variable resolved from ``HEADRACE_VAR_<broker>`` when
    the source starts; ``group`` defaults to ``<name>_group``. With ``state=``
    the function is ``fn(event, state)`` and receives a :class:`State`
    initialised to a copy of that value.

    ``start``: where a partition starts when the checkpoint holds no position
    for it (a checkpointed position always wins): ``"committed"`` (the
    default: the group's committed offset, else the beginning),
    ``"earliest"``, ``"latest"``, or a time (a datetime, an ISO 8601 string
    or epoch seconds: the first message whose timestamp is at or after it).

    ``static_membership=False``: join the group as a dynamic member even
    where the runtime has a stable place (``Runtime(source_instance=...)``,
    which the server gives every deployed graph).
    """

    def wrap(f: Callable[..., Any]) -> Accumulator:
        n = _name_of(f, name)
        has_state = state is not _NO_STATE
        if has_state:
            _check_arity(f, n, 2, "two arguments (event, state) because it declares state=")
        else:
            _check_arity(f, n, 1, "one argument (the event)")
        if not isinstance(topic, str) or not topic:
            raise GraphDefinitionError(f"accumulator '{n}': topic must be a non-empty string")
        settings = {
            "type": type,
            "topic": topic,
            "group": group if group is not None else f"{n}_group",
            "broker": broker,
            "config": dict(config or {}),
            "dead_letter_topic": dead_letter_topic,
            "start": start_position(start, n),
            "static_membership": _flag(static_membership, "static_membership", n),
        }
        acc = Accumulator(
            n, "stream", f, _codec(codec, n), settings, state if has_state else None, has_state, _input(input, n)
        )
        return aged(acc, max_age)

    return wrap


def polling_accumulator(
    *,
    interval: str | float,
    name: str | None = None,
    input: InputStrategy | None = None,  # noqa: A002
    max_age: str | float | None = None,
) -> Callable[[Callable[..., Any]], Accumulator]:
    """Declares a polling accumulator: in thread mode a timer calls ``fn()``
    (sync or ``async def``) every ``interval``; a ``None`` result, or one equal
    to the last emitted value, emits nothing."""

    def wrap(f: Callable[..., Any]) -> Accumulator:
        n = _name_of(f, name)
        _check_arity(f, n, 0, "no arguments")
        settings = {"interval": _duration(interval, "interval", n)}
        return aged(Accumulator(n, "polling", f, "json", settings, input=_input(input, n)), max_age)

    return wrap


def batch_accumulator(
    *,
    flush_interval: str | float | None = None,
    max_buffer_size: int | None = None,
    name: str | None = None,
    codec: Codec = "json",
    input: InputStrategy | None = None,  # noqa: A002
    max_age: str | float | None = None,
) -> Callable[[Callable[..., Any]], Accumulator]:
    """Declares a batch accumulator: events are buffered and ``fn(events)``
    sees the buffered list when it flushes — after each successful fire, when
    ``max_buffer_size`` events are buffered, ``flush_interval`` after the
    oldest buffered event (thread mode), and at shutdown. Every event reaches
    exactly one flush, and every flushed boundary one successful fire: under
    the ``latest`` strategy a batch whose boundary has not fired yet does not
    flush again (that would overwrite it) but keeps buffering, past
    ``max_buffer_size`` if need be, until the next successful fire. With
    ``input="burst"`` nothing is held: each flush's result is one element of
    the list the next successful fire delivers, and the buffer never grows
    past ``max_buffer_size``."""

    def wrap(f: Callable[..., Any]) -> Accumulator:
        n = _name_of(f, name)
        _check_arity(f, n, 1, "one argument (the list of buffered events)")
        settings = {
            "flush_interval": None if flush_interval is None else _duration(flush_interval, "flush_interval", n),
            "max_buffer_size": None if max_buffer_size is None else _positive_int(max_buffer_size, "max_buffer_size", n),
        }
        return aged(Accumulator(n, "batch", f, _codec(codec, n), settings, input=_input(input, n)), max_age)

    return wrap


def state_accumulator(
    *,
    capacity: int,
    name: str | None = None,
    codec: Codec = "json",
    input: InputStrategy | None = None,  # noqa: A002
    max_age: str | float | None = None,
) -> Callable[[Callable[..., Any]], Accumulator]:
    """Declares a state accumulator: ``fn(event)`` returns a value (or ``None``
    to skip the event) and the boundary is the list of the last ``capacity``
    values, oldest first."""

    def wrap(f: Callable[..., Any]) -> Accumulator:
        n = _name_of(f, name)
        _check_arity(f, n, 1, "one argument (the event)")
        settings = {"capacity": _positive_int(capacity, "capacity", n)}
        return aged(Accumulator(n, "state", f, _codec(codec, n), settings, input=_input(input, n)), max_age)

    return wrap
