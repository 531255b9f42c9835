"""Chain runners: a graph's fires over a run of events, as one Python loop.

A graph whose every fire is the same straight line of sync calls (no routes,
no cutoff, no deadlines, no burst input, one terminal node) can fire for a
whole run of pushed events without the engine deciding anything between two
events, as long as nothing waits in it (see ``processor/chain.rs``). The
engine then hands the run to a runner built here once per accumulator: a
function whose loop calls the accumulator and the nodes directly, so that
each call is a Python-to-Python call (the cheapest kind), and appends each
fire's terminal value to a list. The engine does the bookkeeping of the whole
run afterwards.

The runner stops at the first exception and says where it was raised, with the
event and its boundary, so the engine takes that one event the ordinary way
with what already ran: nothing is called twice, and a failed fire is retried
and dead-lettered exactly as on the ordinary path.

Generated from plain data only: names never enter the source (functions,
constants and messages are bound as default arguments), so no graph, node or
accumulator name can inject code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: Where a runner stopped: the iterator itself raised (not an event's failure).
ITERATION = -2
#: Where a runner stopped: the accumulator function raised.
ACCUMULATOR = -1

#: An argument: the run's boundary, another accumulator's value (constant
#: during a run, given as its index in ``consts``), or a node's output (by plan
#: position).
Arg = tuple[str, int]

Failure = tuple[int, Any, Any, BaseException]
#: (events with no boundary, last boundary that fired, failure or None)
Outcome = tuple[int, Any, "Failure | None"]


def build(
    accumulate: Callable[..., Any] | None,
    state: Any,
    nodes: Sequence[tuple[Callable[..., Any], Sequence[Arg], str]],
    terminal: int,
    route: type,
) -> Callable[[Iterator[Any], list[Any], tuple[Any, ...]], Outcome]:
    """The runner for one accumulator's events.

    ``accumulate``: its function (None: the event is the boundary), called
    with ``state`` too when that is not None. ``nodes``: in plan order,
    ``(function, args, name)``. ``terminal``: plan position of the node whose
    value each fire appends. ``route``: ``headrace.Route``, which a node
    without routes must not return (the ordinary path raises the same error).
    """
    env: dict[str, Any] = {"_route": route, "_TypeError": TypeError}
    params = ["_route=_route", "_TypeError=_TypeError"]
    body: list[str] = []

    def bind(name: str, value: Any) -> str:
        env[name] = value
        params.append(f"{name}={name}")
        return name

    if accumulate is None:
        take = "b = e"
    elif state is None:
        take = f"b = {bind('_acc', accumulate)}(e)"
    else:
        take = f"b = {bind('_acc', accumulate)}(e, {bind('_state', state)})"
    consts = sorted({i for _, args, _ in nodes for kind, i in args if kind == "const"})
    const_names = {i: f"c{i}" for i in consts}
    body += [
        "            stage = -1",
        f"            {take}",
        "            if b is None:",
        "                suppressed += 1",
        "                stage = -2",
        "                continue",
    ]
    for pos, (function, args, name) in enumerate(nodes):
        f = bind(f"_n{pos}", function)
        message = bind(
            f"_m{pos}", f"node '{name}' returned a Route but declares no routes (use @graph.node(routes=[...]))"
        )
        shown = ", ".join(
            "b" if kind == "boundary" else const_names[i] if kind == "const" else f"v{i}" for kind, i in args
        )
        body += [
            f"            stage = {pos}",
            f"            v{pos} = {f}({shown})",
            f"            if v{pos}.__class__ is _route:",
            f"                raise _TypeError({message})",
        ]
    body += [f"            append(v{terminal})", "            last = b", "            stage = -2"]
    unpack = f"    ({''.join(const_names[i] + ', ' for i in consts)}) = consts" if consts else "    del consts"
    source = "\n".join(
        [
            f"def run(it, out, consts, *, {', '.join(params)}):",
            unpack,
            "    append = out.append",
            "    suppressed = 0",
            "    stage = -2",
            "    e = b = last = None",
            "    try:",
            "        for e in it:",
            *body,
            "    except BaseException as exc:",
            "        return suppressed, last, (stage, e, b, exc)",
            "    return suppressed, last, None",
        ]
    )
    exec(compile(source, "<headrace chain runner>", "exec"), env)
    run: Callable[[Iterator[Any], list[Any], tuple[Any, ...]], Outcome] = env["run"]
    return run
