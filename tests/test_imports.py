"""No import cycles inside the headrace package, between modules or between its
subpackages. Every import counts: module-level, under ``TYPE_CHECKING`` and
inside functions (a lazy import hides a cycle from Python, not from a reader).
Read from the source tree with ``ast``, nothing is imported."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Set
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "headrace"

# Known back edges, each closing a cycle that is not untangled yet. Exactly
# these are ignored; one that no longer exists must be removed from here.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # The store opens its built-in stores by URL (lazy imports), and each
        # of them imports the store's helpers.
        ("headrace.checkpoint.store", "headrace.checkpoint.memory"),
        ("headrace.checkpoint.store", "headrace.checkpoint.sqlite"),
        ("headrace.checkpoint.store", "headrace.checkpoint.postgres"),
        # Package level: the supervisor reads the server's ServerConfig, while
        # the server drives the supervisor.
        ("headrace.supervisor.confinement", "headrace.server.config"),
        ("headrace.supervisor.process", "headrace.server.config"),
        ("headrace.supervisor.supervisor", "headrace.server.config"),
    }
)

Graph = Mapping[str, Set[str]]


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package). ``.pyi`` files stand for extension
    modules (``headrace._core``)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found.setdefault(".".join(parts), (path, is_package))
    return found


def imported(tree: ast.AST, module: str, is_package: bool, known: Set[str]) -> set[str]:
    """The headrace modules ``tree`` names in any import statement, anywhere."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from a import b` imports module a.b if there is one, else a name of a.
                if f"{base}.{alias.name}" in known:
                    out.add(f"{base}.{alias.name}")
                elif base in known:
                    out.add(base)
    out.discard(module)
    return out


def module_graph() -> dict[str, set[str]]:
    found = modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in found.items():
        tree = ast.parse(path.read_text(), str(path)) if path.suffix == ".py" else ast.Module(body=[], type_ignores=[])
        graph[name] = imported(tree, name, is_package, found.keys())
    return graph


def without(graph: Graph, edges: Set[tuple[str, str]]) -> dict[str, set[str]]:
    return {a: {b for b in bs if (a, b) not in edges} for a, bs in graph.items()}


def by_subpackage(graph: Graph) -> dict[str, set[str]]:
    """Each module stands for its top-level part: headrace.server.app -> headrace.server."""

    def unit(name: str) -> str:
        return ".".join(name.split(".")[:2])

    units: dict[str, set[str]] = {}
    for a, bs in graph.items():
        units.setdefault(unit(a), set()).update(unit(b) for b in bs if unit(b) != unit(a))
    return units


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one
    node, as a path that ends where it starts (Tarjan, then a walk inside)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    found = []
    for component in components:
        start = min(component)
        path, seen = [start], {start}
        while True:
            nxt = sorted(w for w in graph[path[-1]] if w in component)
            back = [w for w in nxt if w in seen]
            if back:
                path = path[path.index(back[0]) :] + [back[0]]
                break
            path.append(nxt[0])
            seen.add(nxt[0])
        found.append(path)
    return found


def describe(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_finder_names_a_cycle_and_passes_a_dag() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    assert by_subpackage({"h.s.a": {"h.t.b"}, "h.t.b": {"h.s.c"}, "h.s.c": set()}) == {"h.s": {"h.t"}, "h.t": {"h.s"}}


def test_the_scan_sees_every_kind_of_import() -> None:
    graph = module_graph()
    assert "headrace.sources.runner" in graph["headrace.runtime"]  # module level
    assert "headrace.accumulators" in graph["headrace.sources.runner"]  # TYPE_CHECKING
    assert "headrace.sources.kafka" in graph["headrace.sources.runner"]  # inside a function
    assert "headrace._core" in graph["headrace.runtime"]  # `from headrace import _core`


def test_no_import_cycle_between_modules() -> None:
    found = cycles(without(module_graph(), ALLOWED))
    assert not found, "import cycles:\n" + describe(found)


def test_no_import_cycle_between_subpackages() -> None:
    found = cycles(by_subpackage(without(module_graph(), ALLOWED)))
    assert not found, "import cycles between subpackages:\n" + describe(found)


def test_every_allowed_edge_still_exists() -> None:
    graph = module_graph()
    stale = sorted((a, b) for a, b in ALLOWED if b not in graph.get(a, set()))
    assert not stale, f"no longer imported, remove from ALLOWED: {stale}"
