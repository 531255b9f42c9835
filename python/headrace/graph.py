"""Computation graphs: reactor criteria plus a DAG of Python node functions.

The graph is described here once, as plain data; the Rust core validates it
and compiles it into an execution plan (see :meth:`ComputationGraph.validate`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from headrace import _core
from headrace._durations import seconds
from headrace.accumulators import INPUT_STRATEGIES, Accumulator, InputStrategy
from headrace.errors import GraphDefinitionError
from headrace.names import name_problem

__all__ = ["ComputationGraph", "Criteria", "InputStrategy", "Node", "every", "when_all", "when_any"]

# The allowed spellings; the Rust core checks them (`Plan::compile` and the spec
# reader), so they are not checked again here.
CriteriaKind = Literal["when_any", "when_all", "every"]
Duration = str | float
F = TypeVar("F", bound=Callable[..., Any])
AccumulatorRef = Accumulator | str


@dataclass(frozen=True)
class Criteria:
    """When the reactor fires. Empty ``members`` means every accumulator
    (for ``when_any``/``when_all``). Durations are in seconds."""

    kind: CriteriaKind
    members: tuple[str, ...] = ()
    #: Fire once the members have been quiet this long, on the newest values.
    debounce: float | None = None
    #: At most one fire per this long: the first at once, later updates
    #: collapsed into one trailing fire at the window's end.
    throttle: float | None = None
    #: Also fire on this schedule, with the current inputs.
    every: float | None = None

    def spec(self) -> dict[str, Any]:
        """The criteria as the engine reads them."""
        return {
            "kind": self.kind,
            "members": list(self.members),
            "debounce": self.debounce,
            "throttle": self.throttle,
            "every": self.every,
        }

    def __str__(self) -> str:
        timed = [f"{k}={v}s" for k, v in (("debounce", self.debounce), ("throttle", self.throttle), ("every", self.every)) if v]
        return f"{self.kind}({', '.join([*self.members, *timed])})"


def _names(accs: Iterable[AccumulatorRef], what: str) -> tuple[str, ...]:
    names = []
    for a in accs:
        if isinstance(a, Accumulator):
            names.append(a.name)
        elif isinstance(a, str):
            names.append(a)
        else:
            raise GraphDefinitionError(f"{what}() takes accumulators or their names, got {a!r}")
    return tuple(names)


def _duration(value: Duration | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        return seconds(value, what=what)
    except ValueError as e:
        raise GraphDefinitionError(str(e)) from None


def when_any(
    *accumulators: AccumulatorRef,
    debounce: Duration | None = None,
    throttle: Duration | None = None,
    every: Duration | None = None,
) -> Criteria:
    """Fire whenever any of ``accumulators`` (default: all) emits a boundary.

    ``debounce="10ms"``: fire once they have been quiet for 10 ms, on the
    newest values. ``throttle="100ms"``: at most one fire per 100 ms; the
    first update fires at once, later ones within the window collapse into
    one trailing fire at its end (the newest values always reach a fire).
    (Both need the members' input strategy to be "latest" or "burst".)
    ``every="1s"``: also fire on that schedule with the current inputs.
    """
    return Criteria(
        "when_any",
        _names(accumulators, "when_any"),
        _duration(debounce, "debounce"),
        _duration(throttle, "throttle"),
        _duration(every, "every"),
    )


def when_all(
    *accumulators: AccumulatorRef,
    debounce: Duration | None = None,
    throttle: Duration | None = None,
    every: Duration | None = None,
) -> Criteria:
    """Fire when one of ``accumulators`` (default: all) emits a boundary and
    every one of them has emitted at least once. ``debounce``, ``throttle``
    and ``every`` as for :func:`when_any` (a scheduled fire, too, waits until
    every member has a value)."""
    return Criteria(
        "when_all",
        _names(accumulators, "when_all"),
        _duration(debounce, "debounce"),
        _duration(throttle, "throttle"),
        _duration(every, "every"),
    )


def every(period: Duration) -> Criteria:
    """Fire on a schedule only (``every("1s")``), with the current inputs;
    accumulators update the inputs but trigger nothing. The first fire comes
    one period after the runtime starts; when the processor falls behind,
    missed ticks are skipped, not fired in a burst."""
    return Criteria("every", (), every=_duration(period, "every"))


@dataclass(frozen=True)
class Node:
    """A node of the graph: its parameters name its inputs."""

    name: str
    function: Callable[..., Any]
    #: Parameters without a default: each must name an accumulator or node.
    params: tuple[str, ...]
    #: For routing nodes: label -> the consumer nodes that run on that label.
    routes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: Parameters with a default: wired when they name an input, else left alone.
    optional: tuple[str, ...] = ()
    #: Change cutoff: an output equal to the previous one stops the fire below this node.
    cutoff: bool = False
    #: Cutoff equality ``equal(previous, current)``; None compares with ``==``.
    equal: Callable[[Any, Any], Any] | None = None
    #: Seconds this node's own run may take (None: no bound of its own).
    timeout: float | None = None

    @property
    def is_async(self) -> bool:
        """``async def``: awaited, together with the other ready async nodes."""
        return inspect.iscoroutinefunction(self.function)

    def inputs(self, known: set[str]) -> list[str]:
        """The parameters the engine passes, in order."""
        wired = list(self.params)
        skipped = None
        for p in self.optional:
            if p in known:
                if skipped is not None:
                    raise GraphDefinitionError(
                        f"node '{self.name}': parameter '{p}' names an input but follows "
                        f"'{skipped}', a defaulted parameter that does not; reorder them"
                    )
                wired.append(p)
            elif skipped is None:
                skipped = p
        return wired


def _params(fn: Callable[..., Any], name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, defaulted) positional parameter names."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise GraphDefinitionError(f"node '{name}': cannot read the function's signature: {e}") from e
    required: list[str] = []
    optional: list[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise GraphDefinitionError(
                f"node '{name}': parameter '{p.name}' must be a plain positional parameter "
                "naming an accumulator or node (no *args or **kwargs)"
            )
        if p.kind == p.KEYWORD_ONLY:
            if p.default is p.empty:
                raise GraphDefinitionError(f"node '{name}': keyword-only parameter '{p.name}' needs a default")
            continue
        (required if p.default is p.empty else optional).append(p.name)
    return tuple(required), tuple(optional)


def _routes(routes: Sequence[str] | Mapping[str, Sequence[str] | str], name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if isinstance(routes, str):
        raise GraphDefinitionError(f"node '{name}': routes must be a list of labels or a mapping, got a string")
    if isinstance(routes, Mapping):
        out = []
        for label, targets in routes.items():
            t = (targets,) if isinstance(targets, str) else tuple(targets)
            out.append((str(label), t))
        result = tuple(out)
    else:
        # A list of labels: each label is the name of the node that runs on it.
        result = tuple((str(label), (str(label),)) for label in routes)
    if not result:
        raise GraphDefinitionError(f"node '{name}': routes must name at least one label")
    return result


def _cutoff(name: str, cutoff: object, equal: object, routed: bool) -> bool:
    """Whether node ``name`` is cut off, or why its cutoff settings are wrong."""
    if cutoff is not None and not isinstance(cutoff, bool):
        raise GraphDefinitionError(f"node '{name}': cutoff must be True or False, got {cutoff!r}")
    if equal is not None and not callable(equal):
        raise GraphDefinitionError(
            f"node '{name}': equal must be a function taking (previous, current), got {equal!r}"
        )
    if cutoff is False and equal is not None:
        raise GraphDefinitionError(f"node '{name}': equal= implies cutoff; drop cutoff=False")
    cut = bool(cutoff) or equal is not None
    if cut and routed:
        raise GraphDefinitionError(
            f"node '{name}' declares routes and cutoff; a routing node cannot be cut off "
            "(put cutoff on the node it reads)"
        )
    return cut


class ComputationGraph:
    """A reactor (criteria, input strategy) over accumulators, and a DAG of nodes.

    Nodes are added with :meth:`node`. Problems that one node shows on its own
    (a duplicate name, an unusable signature) are raised as it is added; the
    rest (unknown parameter names, cycles, unreachable nodes, bad routes) when
    the graph is validated, which :class:`~headrace.Runtime` does before it
    accepts any event. Every problem is reported at once, by name.

    ``fire_timeout`` (seconds, or a string such as "5ms") bounds each fire:
    once it has passed, the remaining nodes are skipped (an async node still
    running is cancelled) and the fire fails with
    :class:`~headrace.FireTimeoutError`, retried like any failed fire.
    """

    def __init__(
        self,
        name: str,
        accumulators: Sequence[Accumulator],
        criteria: Criteria | None = None,
        input_strategy: InputStrategy = "sequential",
        fire_timeout: float | str | None = None,
    ) -> None:
        if (problem := name_problem("graph", name)) is not None:
            raise GraphDefinitionError(problem)
        accs = list(accumulators)
        problems = []
        for a in accs:
            if not isinstance(a, Accumulator):
                problems.append(
                    f"{a!r} is not an accumulator (decorate it with @headrace.passthrough_accumulator or similar)"
                )
        names = [a.name for a in accs if isinstance(a, Accumulator)]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"accumulator name '{dup}' is used more than once")
        criteria = criteria if criteria is not None else when_any()
        if not isinstance(criteria, Criteria):
            problems.append(f"criteria must be when_any(...), when_all(...) or every(...), got {criteria!r}")
        else:
            for m in criteria.members:
                if m not in names:
                    problems.append(f"criteria name '{m}', which is not an accumulator of this graph")
        timeout = None
        if fire_timeout is not None:
            try:
                timeout = seconds(fire_timeout, what="fire_timeout")
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise GraphDefinitionError(f"invalid graph '{name}': " + "; ".join(problems), problems=problems)
        self._name = name
        self._accumulators: tuple[Accumulator, ...] = tuple(accs)
        self._criteria: Criteria = criteria
        self._input_strategy: InputStrategy = input_strategy
        self._fire_timeout: float | None = timeout
        self._nodes: dict[str, Node] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def accumulators(self) -> tuple[Accumulator, ...]:
        return self._accumulators

    @property
    def criteria(self) -> Criteria:
        return self._criteria

    @property
    def input_strategy(self) -> InputStrategy:
        return self._input_strategy

    @property
    def fire_timeout(self) -> float | None:
        """Seconds a whole fire may take, or None."""
        return self._fire_timeout

    @property
    def has_async(self) -> bool:
        """Some node or accumulator function is ``async def``."""
        return any(n.is_async for n in self._nodes.values()) or any(a.is_async for a in self._accumulators)

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes.values())

    def accumulator(self, name: str) -> Accumulator:
        for a in self._accumulators:
            if a.name == name:
                return a
        raise KeyError(f"graph '{self._name}' has no accumulator '{name}'")

    @overload
    def node(self, fn: F) -> F: ...
    @overload
    def node(
        self,
        *,
        name: str | None = None,
        routes: Sequence[str] | Mapping[str, Sequence[str] | str] | None = None,
        timeout: float | str | None = None,
        cutoff: bool | None = None,
        equal: Callable[[Any, Any], Any] | None = None,
    ) -> Callable[[F], F]: ...

    def node(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        routes: Sequence[str] | Mapping[str, Sequence[str] | str] | None = None,
        timeout: float | str | None = None,
        cutoff: bool | None = None,
        equal: Callable[[Any, Any], Any] | None = None,
    ) -> Any:
        """Adds a node. Its parameter names name its inputs: accumulators (the
        cached boundary, ``None`` before the first) or other nodes (their
        result). A parameter with a default value is an input if it names
        one, and otherwise keeps its default. With ``routes`` the node must return
        :class:`headrace.Route`; ``routes=["a", "b"]`` means label "a" runs
        node ``a``; a mapping ``{"label": ["n1", "n2"]}`` names the nodes of
        each label. Consumers of a routing node that no route names run
        whatever it chose. An ``async def`` node is awaited (with the other
        async nodes whose inputs are ready, concurrently). ``timeout`` (seconds
        or "250ms") bounds this node's run: an async node is cancelled at it, a
        sync one is checked when it returns; past it the fire fails with
        :class:`~headrace.FireTimeoutError`.

        With ``cutoff=True`` (equality by ``==``) or ``equal=fn`` (a function
        ``fn(previous, current) -> bool``; implies cutoff): when this node's
        output equals its output in the previous successful fire, the nodes
        below it whose inputs are all unchanged do not run; they keep their
        previous outputs, and a terminal node skipped this way is absent from
        ``FireResult.outputs``. A routing node cannot be cut off. See "Change
        cutoff" in docs/api.md for the exact rules. Returns the function
        unchanged."""

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            n = name if name is not None else getattr(f, "__name__", None)
            if not isinstance(n, str) or not n.isidentifier():
                raise GraphDefinitionError(f"node name must be a Python identifier, got {n!r}")
            if n in self._nodes:
                raise GraphDefinitionError(f"graph '{self._name}': a node named '{n}' already exists")
            if any(a.name == n for a in self._accumulators):
                raise GraphDefinitionError(
                    f"graph '{self._name}': node '{n}' has the same name as an accumulator"
                )
            required, optional = _params(f, n)
            try:
                limit = None if timeout is None else seconds(timeout, what=f"node '{n}': timeout")
            except ValueError as e:
                raise GraphDefinitionError(str(e)) from None
            cut = _cutoff(n, cutoff, equal, routes is not None)
            node_routes = _routes(routes, n) if routes is not None else ()
            self._nodes[n] = Node(n, f, required, node_routes, optional, cut, equal, limit)
            return f

        return add(fn) if fn is not None else add

    def engine_spec(self) -> dict[str, Any]:
        """The plain-data description the Rust core compiles (fresh state objects)."""
        known = {a.name for a in self._accumulators} | set(self._nodes)
        return {
            "name": self._name,
            "input_strategy": self._input_strategy,
            "criteria": self._criteria.spec(),
            "fire_timeout": self._fire_timeout,
            "accumulators": [a.engine_spec() for a in self._accumulators],
            "nodes": [
                {
                    "name": n.name,
                    "function": n.function,
                    "params": n.inputs(known),
                    "routes": [(label, list(targets)) for label, targets in n.routes],
                    "is_async": n.is_async,
                    "timeout": n.timeout,
                    "cutoff": n.cutoff,
                    "equal": n.equal,
                }
                for n in self._nodes.values()
            ],
        }

    def validate(self) -> list[str]:
        """Checks the whole graph; returns the node names in execution order.

        Raises:
            GraphDefinitionError: naming every problem (``.problems`` lists them).
        """
        return _core.compile_graph(self.engine_spec())

    def __repr__(self) -> str:
        return (
            f"ComputationGraph({self._name!r}, accumulators={[a.name for a in self._accumulators]}, "
            f"nodes={list(self._nodes)}, criteria={self._criteria}, "
            f"input_strategy={self._input_strategy!r})"
        )
