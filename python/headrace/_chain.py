"""Chain runners: a graph's fires over a run of events, as one Python loop.

A graph whose every fire is the same straight line of sync calls (no routes,
no cutoff, no deadlines, no burst input, one terminal node) can fire for a
whole run of pushed events without the engine deciding anything between two
events, as long as nothing waits in it (see ``processor/chain.rs``). The
engine then hands the run to a runner built here once per accumulator: a
function whose loop calls the accumulator and the nodes directly, so that
each call is a Python-to-Python call (the cheapest kind), and appends each
fire's terminal value to a list (inline ``push_many``, whose ``FireList`` holds
them) or only counts the fires (thread mode, where nobody keeps them). With
``on_output``, the loop hands each value to the sink as the engine would. The
engine does the bookkeeping of the whole run afterwards.

The runner stops at the first exception and says where it was raised, with the
event and its boundary, so the engine takes that one event the ordinary way
with what already ran: nothing is called twice, and a failed fire is retried
and dead-lettered exactly as on the ordinary path.

A third runner takes one event (inline ``push``, and each event of
``push_pairs``) with the same calls and no loop.

Generated from plain data only: names never enter the source (functions,
constants and messages are bound as closure variables of a factory), so no
graph, node or accumulator name can inject code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Where a runner stopped: the iterator itself raised (not an event's failure).
ITERATION = -2
#: Where a runner stopped: the accumulator function raised.
ACCUMULATOR = -1
#: Where a runner stopped: the boundary cannot be checkpointed (the failure
#: slot holds the check's ``(path, type name, message)``).
REFUSED = -3

#: An argument: ("boundary", 0) for the run's boundary, ("const", i) for
#: accumulator i's value (constant during a run, passed in ``consts`` in
#: index order), ("node", j) for the output of the node at plan position j.
Arg = tuple[str, int]

#: (stage, event, boundary, exception): stage is a node's plan position,
#: ACCUMULATOR or ITERATION.
Failure = tuple[int, Any, Any, BaseException]
#: (events with no boundary, fires, last boundary that fired, failure or None)
Outcome = tuple[int, int, Any, "Failure | None"]
Runner = Callable[[Iterable[Any], "list[Any] | None", tuple[Any, ...], "list[int] | None", "list[Any] | None"], Outcome]
#: One event: SUPPRESSED, (value, boundary) when it fired, or (stage,
#: boundary, exception) when something raised.
One = Callable[[Any, tuple[Any, ...], "list[int] | None", "list[Any] | None"], Any]

#: What the single-event runner returns for an event that gave no boundary.
SUPPRESSED = object()

log = logging.getLogger("headrace")


def sink_failed(graph: str) -> Callable[[BaseException], None]:
    """Logs a raising ``on_output`` sink as the engine does; the fire stands."""

    def failed(exc: BaseException) -> None:
        log.error("on_output callback of graph '%s' raised %s: %s", graph, type(exc).__name__, exc)

    return failed


@dataclass(frozen=True)
class Chain:
    """One accumulator's view of a chain graph, as the engine describes it.

    ``accumulate``: its function (None: the event is the boundary), called
    with ``state`` too when that is not None. ``nodes``: in plan order,
    ``(function, args, message)``, the message being what the node raises
    when it returns a ``Route`` (it declares no routes). ``terminal``: plan position of the node whose
    value each fire gives. ``route``: ``headrace.Route``, which a node without
    routes must not return (the ordinary path raises the same error).
    ``sink``: the ``on_output`` function, or None. ``check``
    (``check_checkpointable``): returns None for a boundary that can be
    checkpointed, else why not; such a boundary stops the run before any node.
    """

    accumulate: Callable[..., Any] | None
    state: Any
    nodes: Sequence[tuple[Callable[..., Any], Sequence[Arg], str]]
    terminal: int
    route: type
    sink: Callable[[Any], Any] | None
    graph: str
    check: Callable[[Any], Any] | None


def build(chain: Chain, clock: Callable[[], int] | None = None, record_inputs: bool = False) -> tuple[Runner, Runner, One]:
    """The runners for one accumulator's events: one appending each fire's
    value to ``out``, one only counting the fires (``out`` is None), and one
    for a single event.

    With a ``clock`` (``profile=True``: the engine's own, in ticks it scales
    to nanoseconds), the appending and single-event runners also append to
    ``stamps`` a read of it before the first node and after each node of
    every fire (and one when a node raises), which give each node's time as
    the engine's own laps do; with ``record_inputs``, each fire's boundary to
    ``seen``. Nobody reads a fire of the counting runner, so it records
    nothing.
    """
    shape = _Shape(chain)
    keep: Runner = shape.make(_loop(shape, keep=True, profile=clock is not None, record=record_inputs), clock)
    count: Runner = shape.make(_loop(shape, keep=False, profile=False, record=False), None)
    one: One = shape.make(_one(shape, profile=clock is not None, record=record_inputs), clock)
    return keep, count, one


class _Shape:
    """What the runners call, bound once as the closure variables of a factory."""

    def __init__(self, chain: Chain) -> None:
        self.env: dict[str, Any] = {"_route": chain.route, "_TypeError": TypeError, "_SUPPRESSED": SUPPRESSED}
        self.check = None if chain.check is None else self.bind("_check", chain.check)
        if chain.accumulate is None:
            self.take = "b = e"
        elif chain.state is None:
            self.take = f"b = {self.bind('_acc', chain.accumulate)}(e)"
        else:
            self.take = f"b = {self.bind('_acc', chain.accumulate)}(e, {self.bind('_state', chain.state)})"
        self.consts = sorted({i for _, args, _ in chain.nodes for kind, i in args if kind == "const"})
        self.calls: list[tuple[str, str, str]] = []
        for pos, (function, args, text) in enumerate(chain.nodes):
            f = self.bind(f"_n{pos}", function)
            shown = ", ".join("b" if kind == "boundary" else f"c{i}" if kind == "const" else f"v{i}" for kind, i in args)
            self.calls.append((f, shown, self.bind(f"_m{pos}", text)))
        self.terminal = chain.terminal
        self.sink = None if chain.sink is None else self.bind("_sink", chain.sink)
        self.sink_failed = None if chain.sink is None else self.bind("_sink_failed", sink_failed(chain.graph))

    def bind(self, name: str, value: Any) -> str:
        self.env[name] = value
        return name

    def unpack(self, indent: str) -> list[str]:
        if not self.consts:
            return []
        return [f"{indent}({''.join(f'c{i}, ' for i in self.consts)}) = consts"]

    def fire(self, profile: bool, record: bool) -> list[str]:
        """The nodes of one fire on boundary ``b``, then the sink."""
        lines = ["seen_append(b)"] if record else []
        if profile:
            lines.append("stamp(_clock())")
        for pos, (f, shown, message) in enumerate(self.calls):
            lines += [
                f"stage = {pos}",
                f"v{pos} = {f}({shown})",
                f"if v{pos}.__class__ is _route:",
                f"    raise _TypeError({message})",
            ]
            if profile:
                lines.append("stamp(_clock())")
        if self.sink is not None:
            lines += [
                "try:",
                f"    {self.sink}(v{self.terminal})",
                "except BaseException as exc:",
                f"    {self.sink_failed}(exc)",
            ]
        return lines

    def make(self, function: list[str], clock: Callable[[], int] | None) -> Any:
        env = dict(self.env, _clock=clock)
        names = sorted(env)
        source = "\n".join([f"def factory({', '.join(names)}):", *("    " + line for line in function), "    return run"])
        namespace: dict[str, Any] = {}
        exec(compile(source, "<headrace chain runner>", "exec"), namespace)
        return namespace["factory"](**env)


def _loop(shape: _Shape, *, keep: bool, profile: bool, record: bool) -> list[str]:
    body = [
        "stage = -1",
        shape.take,
        "if b is None:",
        "    suppressed += 1",
        "    stage = -2",
        "    continue",
        *(
            [f"refused = {shape.check}(b)", "if refused is not None:", f"    stage = {REFUSED}", "    break"]
            if shape.check
            else []
        ),
        *shape.fire(profile, record),
        f"append(v{shape.terminal})" if keep else "fired += 1",
        "last = b",
        "stage = -2",
    ]
    fired = "len(out)" if keep else "fired"
    return [
        "def run(it, out, consts, stamps=None, seen=None):",
        *shape.unpack("    "),
        "    append = out.append" if keep else "    fired = 0",
        *(["    stamp = stamps.append"] if profile else []),
        *(["    seen_append = seen.append"] if record else []),
        "    suppressed = 0",
        "    stage = -2",
        "    e = b = last = None",
        "    try:",
        "        for e in it:",
        *(" " * 12 + line for line in body),
        "    except BaseException as exc:",
        *(["        if stage >= 0:", "            stamp(_clock())"] if profile else []),
        f"        return suppressed, {fired}, last, (stage, e, b, exc)",
        *([f"    if stage == {REFUSED}:", f"        return suppressed, {fired}, last, (stage, e, b, refused)"] if shape.check else []),
        f"    return suppressed, {fired}, last, None",
    ]


def _one(shape: _Shape, *, profile: bool, record: bool) -> list[str]:
    return [
        "def run(e, consts, stamps=None, seen=None):",
        *shape.unpack("    "),
        *(["    stamp = stamps.append"] if profile else []),
        *(["    seen_append = seen.append"] if record else []),
        "    stage = -1",
        "    b = None",
        "    try:",
        f"        {shape.take}",
        "        if b is None:",
        "            return _SUPPRESSED",
        *(
            [f"        refused = {shape.check}(b)", "        if refused is not None:", f"            return {REFUSED}, b, refused"]
            if shape.check
            else []
        ),
        *("        " + line for line in shape.fire(profile, record)),
        "    except BaseException as exc:",
        *(["        if stage >= 0:", "            stamp(_clock())"] if profile else []),
        "        return stage, b, exc",
        f"    return v{shape.terminal}, b",
    ]


#: Where a pairs runner stopped: a name no accumulator of the graph has.
UNKNOWN = -4
#: Where a pairs runner stopped: an item that is not a (name, event) pair.
NOT_A_PAIR = -5

#: (per accumulator: (no boundary, boundaries), the values after, and where
#: it stopped: (stage, accumulator, item, event, boundary, value before,
#: exception or refusal), or None)
PairsOutcome = tuple[tuple[tuple[int, int], ...], tuple[Any, ...], Any]


@dataclass(frozen=True)
class PairsChain:
    """A chain graph whose accumulators all take part (``push_pairs``): each
    accumulator as ``(name, accumulate, state)`` in index order, all criteria
    members with sequential inputs. ``chain``'s nodes read accumulators only
    as ``("const", i)`` (during a run every input is a local of the loop);
    its own ``accumulate`` and ``state`` are not used."""

    accs: Sequence[tuple[str, Callable[..., Any] | None, Any]]
    when_all: bool
    chain: Chain


def build_pairs(pairs: PairsChain) -> Callable[..., PairsOutcome]:
    """The runner for ``push_pairs``: ``run(it, out, trig, values, missing)``
    takes ``(name, event)`` pairs while each fires alone (or only fills an
    input under ``when_all``), appending each fire's value to ``out`` and the
    index of the accumulator that triggered it to ``trig``. ``values``: every
    accumulator's current value; ``missing``: members without one."""
    shape = _Shape(pairs.chain)
    n = len(pairs.accs)
    lines = [
        "def run(it, out, trig, values, missing):",
        f"    ({''.join(f'c{i}, ' for i in range(n))}) = values",
        "    append = out.append",
        "    tappend = trig.append",
        *(f"    sup{i} = bd{i} = 0" for i in range(n)),
        "    stage = -2",
        "    k = -1",
        "    p = e = b = old = refused = None",
        "    try:",
        "        for p in it:",
        f"            stage = {NOT_A_PAIR}",
        "            name, e = p",
    ]
    for i, (name, accumulate, state) in enumerate(pairs.accs):
        key = shape.bind(f"_k{i}", name)
        if accumulate is None:
            take = "b = e"
        elif state is None:
            take = f"b = {shape.bind(f'_acc{i}', accumulate)}(e)"
        else:
            take = f"b = {shape.bind(f'_acc{i}', accumulate)}(e, {shape.bind(f'_state{i}', state)})"
        branch = [
            f"k = {i}",
            "stage = -1",
            take,
            "if b is None:",
            f"    sup{i} += 1",
            "    stage = -2",
            "    continue",
            *(
                [f"refused = {shape.check}(b)", "if refused is not None:", f"    stage = {REFUSED}", "    break"]
                if shape.check
                else []
            ),
            f"old = c{i}",
            *([f"if c{i} is None:", "    missing -= 1"] if pairs.when_all else []),
            f"c{i} = b",
            *(["if missing:", f"    bd{i} += 1", "    stage = -2", "    continue"] if pairs.when_all else []),
            *shape.fire(False, False),
            f"append(v{shape.terminal})",
            f"tappend({i})",
            f"bd{i} += 1",
            "stage = -2",
        ]
        lines.append(f"            {'if' if i == 0 else 'elif'} name is {key} or name == {key}:")
        lines += [" " * 16 + line for line in branch]
    counts = f"({''.join(f'(sup{i}, bd{i}), ' for i in range(n))})"
    after = f"({''.join(f'c{i}, ' for i in range(n))})"
    lines += [
        "            else:",
        f"                stage = {UNKNOWN}",
        "                break",
        "    except BaseException as exc:",
        f"        return {counts}, {after}, (stage, k, p, e, b, old, exc)",
        "    if stage != -2:",
        f"        return {counts}, {after}, (stage, k, p, e, b, old, refused)",
        f"    return {counts}, {after}, None",
    ]
    run: Callable[..., PairsOutcome] = shape.make(lines, None)
    return run
