"""``crash_check``: SIGKILL a graph at random points, restart it from its
store, and compare its final checkpoint with an uninterrupted run's.

What "the same" means. The events are numbered 0..N-1 and fed to the graph
as positioned source messages (topic ``headrace.crash_check``, partition 0,
offset = the event's number), like a stream source's: a checkpoint saves the
state and the next position together, atomically, and a restarted child
resumes from the position its checkpoint holds. So every event reaches the
checkpointed state exactly once however the kills fall, and the final
checkpoint of the killed-and-restarted runs must equal the uninterrupted
run's on everything that is a function of the events alone:

- each accumulator's component (user state, last value, batch buffer, state
  window, event/boundary/suppressed/error counts),
- the reactor's inputs cache (the latest boundary of every accumulator) and
  the inputs' pending bursts,
- the source positions, and the paused flag.

Not compared: fire ids and fire counts, retry counters, dead letters and
``last_fired_at`` (they count attempts and carry wall-clock times). A graph
whose state depends on time (batch ``flush_interval``, polling, debounce,
throttle, ``every``) or on anything outside its checkpoint (a module-level
variable, a file, a random number) gives differences: that is what this
finds. Pass ``ignore=`` to leave out parts you know to be time-dependent.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgpack
import orjson

from headrace._options import Mode
from headrace.checkpoint import inspect
from headrace.errors import SettingError
from headrace.graph import ComputationGraph
from headrace.names import name_problem

__all__ = ["TOPIC", "CrashReport", "crash_check", "load_graph"]

#: The topic the events are numbered in (the source positions show it).
TOPIC = "headrace.crash_check"
# Reactor fields that are a function of the events (the rest count attempts or carry times).
_REACTOR_COMPARED = ("cache",)
_CHECKPOINT_DEFAULTS: dict[str, Any] = {"checkpoint_every": 25, "checkpoint_interval": "10ms"}


@dataclass
class CrashReport:
    """What :func:`crash_check` did and found."""

    graph: str
    #: Events fed (each run resumes where its checkpoint left off).
    events: int
    #: SIGKILLs delivered (fewer than asked if a run finished first).
    kills: int
    #: The seed of the kill points (pass it back to repeat them).
    seed: int
    #: Where each run started: 0 for the first, then each restart's checkpointed position.
    resumed_from: list[int] = field(default_factory=list)
    #: One line per difference between the crashed and the uninterrupted final checkpoint.
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        head = (
            f"crash_check of graph '{self.graph}': {self.events} events, {self.kills} SIGKILL(s) "
            f"(seed {self.seed}), runs resumed from {self.resumed_from}"
        )
        if self.ok:
            return head + ": final state equals the uninterrupted run's"
        shown = self.differences[:40]
        more = len(self.differences) - len(shown)
        lines = [head + f": {len(self.differences)} difference(s) (crashed vs uninterrupted):"]
        lines += [f"  {d}" for d in shown]
        if more:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


def _resolve(ref: str, what: str) -> Any:
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise SettingError(f"{what} must be 'module:attr', got {ref!r}", setting=what)
    try:
        found: Any = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as e:
        raise SettingError(f"{what} {ref!r} cannot be imported: {e}", setting=what) from e
    return found


def load_graph(graph_ref: str) -> ComputationGraph:
    """The graph ``"module:attr"`` names: a ComputationGraph, or a function
    of no arguments returning one."""
    found = _resolve(graph_ref, "graph_ref")
    if callable(found) and not isinstance(found, ComputationGraph):
        found = found()
    if not isinstance(found, ComputationGraph):
        raise SettingError(
            f"graph_ref {graph_ref!r} is a {type(found).__name__}, not a ComputationGraph", setting="graph_ref"
        )
    return found


def _encode(graph: ComputationGraph, events: Iterable[tuple[str, Any]]) -> list[tuple[str, bytes]]:
    codecs = {a.name: a.codec for a in graph.accumulators}
    out: list[tuple[str, bytes]] = []
    for i, item in enumerate(events):
        try:
            name, event = item
        except (TypeError, ValueError):
            raise SettingError(f"events[{i}] is not an (accumulator, event) pair: {item!r}", setting="events") from None
        codec = codecs.get(name)
        if codec is None:
            known = ", ".join(sorted(codecs))
            raise SettingError(f"events[{i}]: graph '{graph.name}' has no accumulator {name!r} (it has: {known})", setting="events")
        if isinstance(event, bytes):
            out.append((name, event))
        elif codec == "msgpack":
            out.append((name, bytes(msgpack.packb(event, use_bin_type=True))))
        else:
            try:
                out.append((name, orjson.dumps(event)))
            except TypeError as e:
                raise SettingError(f"events[{i}] for '{name}' cannot be encoded as JSON: {e}", setting="events") from None
    return out


class _Child:
    """One run of the graph in a child process, fed from the events file."""

    def __init__(self, args: dict[str, Any], timeout: float) -> None:
        env = dict(os.environ)
        # The child imports the graph by name: give it this process's import path.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "headrace.testing._crash_child", json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self._line()
        if not line.startswith("START "):
            self.fail(f"did not start (said {line!r})")
        self.start = int(line.split()[1])

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def fail(self, what: str) -> None:
        self.proc.kill()
        _, err = self.proc.communicate(timeout=30)
        raise AssertionError(f"crash_check: a child run {what}:\n{err[-4000:]}")

    def kill_after(self, target: int) -> bool:
        """SIGKILLs the child once it has pushed ``target`` events (or, past
        the last, while it closes); False if it finished first."""
        while True:
            line = self._line()
            if not line:  # it exited
                break
            word, _, n = line.strip().partition(" ")
            if (word == "AT" and int(n) >= target) or word == "END":
                self.proc.kill()  # SIGKILL: no cleanup, no final checkpoint
                self.proc.communicate(timeout=30)
                return True
        self.proc.wait(self.timeout)
        if self.proc.returncode != 0:
            self.fail(f"exited with status {self.proc.returncode}")
        return False

    def finish(self) -> None:
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"did not finish within {self.timeout} s")
            return
        if self.proc.returncode != 0 or "DONE" not in out:
            raise AssertionError(f"crash_check: a child run failed (status {self.proc.returncode}):\n{err[-4000:]}")


def crash_check(
    graph_ref: str,
    events: Iterable[tuple[str, Any]] | str,
    *,
    store: str,
    kills: int = 5,
    seed: int | None = None,
    mode: Mode = "thread",
    timeout: float = 120.0,
    tenant: str = "crash_check",
    ignore: Iterable[str] = (),
    runtime_options: Mapping[str, Any] | None = None,
) -> CrashReport:
    """Runs the graph ``graph_ref`` over ``events`` in a child process,
    SIGKILLs it ``kills`` times at random points, restarting it from
    ``store`` each time, and compares the final checkpoint with that of an
    uninterrupted run of the same events (see this module's docstring for
    what is compared, and why every event counts exactly once).

    Args:
        graph_ref: ``"module:attr"`` naming a ComputationGraph, or a function
            returning one; the child imports it (with this process's
            ``sys.path``), so it must not depend on state built at run time.
        events: ``(accumulator, event)`` pairs, or ``"module:attr"`` naming
            such an iterable or a function returning one. Events are encoded
            with the accumulator's codec (bytes are passed as they are).
        store: A store URL the children share (``sqlite:///...``,
            ``postgresql://...``); the runs use fresh tenants in it.
        kills: SIGKILLs to deliver, each after a random number of events
            (a kill past the last event lands while the run closes).
        seed: Seed for the kill points (default: random, shown in the report).
        mode: "thread" (default) or "inline".
        timeout: Seconds any one child run may take.
        tenant: Prefix of the two tenants used.
        ignore: Paths left out of the comparison: a component
            (``"accumulator:fills"``) or a field in one (``"accumulator:fills.boundaries"``).
        runtime_options: Other :class:`~headrace.Runtime` options for the
            children (default: ``checkpoint_every=25, checkpoint_interval="10ms"``).

    Returns:
        The :class:`CrashReport` (kills done, events, where runs resumed).

    Raises:
        AssertionError: the final states differ (the message lists each
            difference), or a child run failed.
        SettingError: a bad ``graph_ref``, ``events``, ``store`` or option.
    """
    if not isinstance(store, str) or store.startswith("memory://"):
        raise SettingError(
            f"crash_check needs a store URL that outlives a process (sqlite:///..., postgresql://...), got {store!r}",
            setting="store",
        )
    if isinstance(kills, bool) or not isinstance(kills, int) or kills < 0:
        raise SettingError(f"kills must be a non-negative integer, got {kills!r}", setting="kills")
    if mode not in ("thread", "inline"):
        raise SettingError(f"mode must be 'thread' or 'inline', got {mode!r}", setting="mode")
    options = {**_CHECKPOINT_DEFAULTS, **(runtime_options or {})}
    for reserved in ("store", "tenant", "mode", "sources", "clock", "on_fire"):
        if reserved in options:
            raise SettingError(f"crash_check sets {reserved}= itself", setting="runtime_options")
    graph = load_graph(graph_ref)
    if isinstance(events, str):
        found = _resolve(events, "events")
        events = cast(Iterable[tuple[str, Any]], found() if callable(found) else found)
    records = _encode(graph, events)
    run_id = uuid.uuid4().hex[:10]
    crashed, reference = f"{tenant}-{run_id}", f"{tenant}-ref-{run_id}"
    problem = name_problem("tenant", reference)
    if problem is not None:
        raise SettingError(problem, setting="tenant")
    seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    report = CrashReport(graph=graph.name, events=len(records), kills=0, seed=seed)

    with tempfile.TemporaryDirectory(prefix="headrace-crash-") as tmp:
        events_file = Path(tmp) / "events.msgpack"
        events_file.write_bytes(msgpack.packb(records, use_bin_type=True))
        step = max(1, len(records) // 1000)

        def child(tenant_name: str) -> _Child:
            args = {
                "graph": graph_ref,
                "events": str(events_file),
                "store": store,
                "tenant": tenant_name,
                "mode": mode,
                "options": options,
                "step": step,
            }
            return _Child(args, timeout)

        _Child.finish(child(reference))
        while report.kills < kills:
            run = child(crashed)
            report.resumed_from.append(run.start)
            if not run.kill_after(rng.randint(run.start, len(records))):
                break  # it finished before its kill: nothing left to interrupt
            report.kills += 1
        else:
            run = child(crashed)
            report.resumed_from.append(run.start)
            run.finish()

    report.differences = _differences(
        inspect(store, graph.name, crashed), inspect(store, graph.name, reference), set(ignore)
    )
    if report.differences:
        raise AssertionError(str(report))
    return report


def _comparable(checkpoint: dict[str, Any], ignore: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, body in checkpoint.items():
        if name in ignore:
            continue
        if name == "reactor" and isinstance(body, dict):
            body = {k: v for k, v in body.items() if k in _REACTOR_COMPARED}
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if f"{name}.{k}" not in ignore}
        out[name] = body
    return out


def _differences(crashed: dict[str, Any], reference: dict[str, Any], ignore: set[str]) -> list[str]:
    lines: list[str] = []
    _diff(_comparable(crashed, ignore), _comparable(reference, ignore), "", lines)
    return lines


_MISSING = object()


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys(), key=str):
            _diff(a.get(k, _MISSING), b.get(k, _MISSING), f"{path}.{k}" if path else str(k), out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {_show(a)} != {_show(b)}")


def _show(v: Any) -> str:
    if v is _MISSING:
        return "(absent)"
    text = json.dumps(v, default=str)
    return text if len(text) <= 200 else text[:200] + "…"
