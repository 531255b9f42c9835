"""One recorded fire, run again node by node: each node's arguments, output
and time, to debug a deployed graph from its journal.

The inputs are the ones the replay recorded for that fire (which are the live
run's: a replay fires what the live run fired); the nodes are called again,
here, in execution order. A node with side effects or hidden state does them
again, and may answer differently.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Any

from headrace import _core
from headrace.errors import HeadraceError
from headrace.graph import ComputationGraph

__all__ = ["NodeStep", "trace_fire"]


@dataclass(frozen=True)
class NodeStep:
    """One node of the traced fire."""

    node: str
    #: Its arguments, by parameter name.
    args: dict[str, Any]
    output: Any = None
    #: The route it chose (a routing node), else None.
    route: str | None = None
    error: str | None = None
    #: Nanoseconds its call took here.
    ns: int = 0
    #: Not run: a routing node upstream chose another branch, or an input failed.
    skipped: bool = False


def trace_fire(graph: ComputationGraph, fire: _core.FireResult) -> list[NodeStep]:
    """Runs ``fire``'s nodes again on the inputs it recorded (the fire must
    come from a runtime or replay with ``record_inputs=True``)."""
    if fire.inputs is None:
        raise HeadraceError(f"fire {fire.id} kept no inputs: replay with record_inputs=True")
    nodes = {n.name: n for n in graph.nodes}
    values: dict[str, Any] = dict(fire.inputs)
    skipped: set[str] = set()
    steps: list[NodeStep] = []
    for name in graph.validate():
        node = nodes[name]
        wired = [p for p in (*node.params, *node.optional) if p in values or p in nodes]
        if name in skipped or any(p in skipped for p in wired):
            skipped.add(name)
            steps.append(NodeStep(name, {}, skipped=True))
            continue
        args = {p: values.get(p) for p in wired}
        started = time.perf_counter_ns()
        try:
            out = node.function(**args)
            if inspect.isawaitable(out):
                out = asyncio.run(_awaited(out))
        except Exception as e:  # noqa: BLE001 - a node may raise anything; the trace shows it
            steps.append(NodeStep(name, args, error=f"{type(e).__name__}: {e}", ns=time.perf_counter_ns() - started))
            skipped.add(name)
            continue
        ns = time.perf_counter_ns() - started
        route = None
        if isinstance(out, _core.Route):
            route, out = out.label, out.value
            chosen = {t for label, targets in node.routes if label == route for t in targets}
            skipped |= {t for _, targets in node.routes for t in targets if t not in chosen}
        values[name] = out
        steps.append(NodeStep(name, args, out, route, ns=ns))
    return steps


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
