"""Loading a package's graph and applying its manifest.

As in the seed, the manifest's settings override the code's declarations: an
accumulator declared as passthrough in code becomes a Kafka stream when
package.toml says so, and ``reaction_mode``/``input_strategy`` replace the
graph's own.
"""

from __future__ import annotations

import dataclasses

import importlib
import sys
from pathlib import Path
from typing import Any

from headrace.accumulators import (
    _NO_STATE,
    Accumulator,
    aged,
    batch_accumulator,
    passthrough,
    passthrough_accumulator,
    polling_accumulator,
    state_accumulator,
    stream_accumulator,
)
from headrace.errors import GraphDefinitionError
from headrace.graph import ComputationGraph
from headrace.packages.manifest import AccumulatorEntry, Manifest, ManifestError, parse_manifest

__all__ = ["apply_manifest", "load_graph"]


def load_graph(root: Path, manifest: Manifest | None = None) -> ComputationGraph:
    """Imports the package's entry graph (with ``root`` on the import path) and
    applies the manifest to it."""
    manifest = manifest or parse_manifest((root / "package.toml").read_text(encoding="utf-8"))
    module_name = manifest.entry_module
    # A module of the same name from another package must not be reused.
    for name in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ManifestError([f"metadata.entry: importing '{module_name}' failed: {type(e).__name__}: {e}"]) from e
    finally:
        sys.path.remove(str(root))
    graph = getattr(module, manifest.entry_attribute, None)
    if not isinstance(graph, ComputationGraph):
        raise ManifestError(
            [f"metadata.entry: '{manifest.entry}' is {type(graph).__name__}, not a headrace.ComputationGraph"]
        )
    if graph.name != manifest.graph_name:
        raise ManifestError(
            [f"metadata.graph_name: '{manifest.graph_name}', but the entry's graph is named '{graph.name}'"]
        )
    return apply_manifest(graph, manifest)


def _redeclare(acc: Accumulator, entry: AccumulatorEntry) -> Accumulator:
    cfg: dict[str, Any] = {**(acc.config if acc.kind == entry.accumulator_type else {}), **entry.config}
    fn, name = acc.function, acc.name
    kind = entry.accumulator_type
    strategy: Any = entry.input or acc.input  # checked by the decorator
    if kind == "passthrough":
        if not acc.has_function:
            return passthrough(name, codec=acc.codec, input=strategy)
        return passthrough_accumulator(name=name, codec=acc.codec, input=strategy)(fn)
    if not acc.has_function:
        raise GraphDefinitionError(
            f"accumulator '{name}' is declared without a function (hr.passthrough), so it cannot be a {kind} accumulator"
        )
    if kind == "stream":
        return stream_accumulator(
            type=str(cfg.get("type", "kafka")),
            topic=cfg["topic"],
            group=cfg.get("group"),
            broker=str(cfg.get("broker", "KAFKA_BROKER")),
            state=acc.initial_state if acc.has_state else _NO_STATE,
            config=cfg.get("config") or {},
            dead_letter_topic=cfg.get("dead_letter_topic"),
            start=cfg.get("start"),
            static_membership=cfg.get("static_membership", True),
            name=name,
            codec=acc.codec,
            input=strategy,
        )(fn)
    if kind == "polling":
        if "interval" not in cfg:
            raise GraphDefinitionError("config.interval is required for a polling accumulator")
        return polling_accumulator(interval=cfg["interval"], name=name, input=strategy)(fn)
    if kind == "batch":
        return batch_accumulator(
            flush_interval=cfg.get("flush_interval"),
            max_buffer_size=cfg.get("max_buffer_size"),
            name=name,
            codec=acc.codec,
            input=strategy,
        )(fn)
    if "capacity" not in cfg:
        raise GraphDefinitionError("config.capacity is required for a state accumulator")
    return state_accumulator(capacity=cfg["capacity"], name=name, codec=acc.codec, input=strategy)(fn)


def apply_manifest(graph: ComputationGraph, manifest: Manifest) -> ComputationGraph:
    """A new graph with the manifest's declarations in place of the code's."""
    names = [a.name for a in graph.accumulators]
    problems = []
    entries: dict[str, AccumulatorEntry] = {}
    # A passthrough the code does not declare needs no code: the manifest
    # declares it, without a function (the event is the boundary).
    # Only one some node reads, so that a misspelt name is an error, not a
    # silently added input nothing uses.
    read = {p for n in graph.nodes for p in (*n.params, *n.optional)} - {n.name for n in graph.nodes}
    added: list[Accumulator] = []
    for i, entry in enumerate(manifest.accumulators):
        if entry.name not in names:
            if entry.accumulator_type == "passthrough" and entry.name in read:
                added.append(passthrough(entry.name, input=entry.input, max_age=entry.max_age))  # type: ignore[arg-type]  # checked by the manifest
                continue
            problems.append(
                f"metadata.accumulators[{i}].name: the graph has no accumulator '{entry.name}' (it has: {', '.join(names)});"
                " only a passthrough that a node reads by that name may be declared in package.toml alone"
            )
        entries[entry.name] = entry
    accumulators = []
    for acc in graph.accumulators:
        declared = entries.get(acc.name)
        if declared is None:
            accumulators.append(acc)
            continue
        index = next(i for i, e in enumerate(manifest.accumulators) if e.name == acc.name)
        try:
            redeclared = _redeclare(acc, declared)
            max_age = declared.max_age if declared.max_age is not None else acc.max_age
            accumulators.append(aged(redeclared, max_age))
        except GraphDefinitionError as e:
            problems.append(f"metadata.accumulators[{index}]: {e}")
    accumulators += added
    if problems:
        raise ManifestError(problems)
    criteria = graph.criteria
    if manifest.reaction_mode is not None:
        criteria = dataclasses.replace(graph.criteria, kind=manifest.reaction_mode)  # type: ignore[arg-type]
    result = ComputationGraph(
        graph.name, accumulators, criteria, manifest.input_strategy or graph.input_strategy  # type: ignore[arg-type]
    )
    for node in graph.nodes:
        routes = {label: list(targets) for label, targets in node.routes} if node.routes else None
        result.node(name=node.name, routes=routes)(node.function)
    return result
