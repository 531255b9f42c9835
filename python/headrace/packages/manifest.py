"""`package.toml`: the manifest of a graph package, in the seed's format.

    [package]
    name = "kafka-price-signal"
    version = "0.1.0"

    [metadata]
    graph_name = "kafka_price_signal"
    language = "python"
    entry = "price_signal:graph"        # module:attribute of the ComputationGraph
    reaction_mode = "when_any"          # optional; overrides the code
    input_strategy = "latest"           # optional; overrides the code (whose default is "sequential");
                                        # latest | sequential | burst

    [[metadata.accumulators]]
    name = "orderbook"
    accumulator_type = "stream"         # passthrough | stream | polling | batch | state
    input = "burst"                     # optional; latest | sequential | burst (default: input_strategy)
    max_age = "2s"                      # optional; stale after this long without a boundary
    [metadata.accumulators.config]
    broker = "KAFKA_BROKER"
    topic = "price.orderbook"
    group = "kafka-price-signal-group"
    start = "latest"                    # optional; committed | earliest | latest | an ISO time
    static_membership = false           # optional; default true on the server

    [journal]                           # optional: record every input (hr.replay)
    fsync = "batch"                     # "batch" (default), "never" or seconds between fsyncs
    keep_mb = 256                       # may only lower the server's journal_mb

    [limits]                            # optional; each may only lower the server's
    memory_mb = 512                     # heap and anonymous memory of the worker
    cpu_seconds = 3600                  # CPU time before the worker is killed (and restarted)
    processes = 64                      # processes and threads of the tenant
    open_files = 256
    file_mb = 100                       # largest file the worker may write

Every problem is reported with the path of the field that has it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from headrace.errors import HeadraceError
from headrace.names import name_problem

__all__ = ["AccumulatorEntry", "Manifest", "ManifestError", "parse_manifest"]

KINDS = ("passthrough", "stream", "polling", "batch", "state")
INPUTS = ("latest", "sequential", "burst")
CONFIG_KEYS = {
    "passthrough": set(),
    "stream": {"broker", "topic", "group", "dead_letter_topic", "start", "static_membership"},
    "polling": {"interval"},
    "batch": {"flush_interval", "max_buffer_size"},
    "state": {"capacity"},
}
ALL_CONFIG_KEYS = set().union(*CONFIG_KEYS.values())
# Keys the seed's manifests carry for its Rust plugin loader: accepted, unused.
_SEED_PACKAGE_KEYS = {"interface", "interface_version", "extension", "description", "authors"}
LIMIT_KEYS = ("memory_mb", "cpu_seconds", "processes", "open_files", "file_mb")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ManifestError(HeadraceError, ValueError):
    """package.toml is invalid; ``problems`` lists each as 'field.path: message'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid package.toml: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class AccumulatorEntry:
    name: str
    accumulator_type: str
    config: dict[str, Any] = field(default_factory=dict)
    #: ``input``: this accumulator's input strategy; None keeps the code's.
    input: str | None = None
    #: ``max_age``: "2s" or seconds; None keeps the code's.
    max_age: str | float | None = None


@dataclass(frozen=True)
class JournalSettings:
    """``[journal]``: the worker records every input of the graph."""

    fsync: str | float = "batch"
    #: Megabytes of journal kept (the oldest segments go first); None: the server's limit.
    keep_mb: int | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    graph_name: str
    entry: str
    language: str = "python"
    description: str = ""
    reaction_mode: str | None = None
    input_strategy: str | None = None
    accumulators: tuple[AccumulatorEntry, ...] = ()
    #: ``[limits]``: resource limits the package asks for (names in LIMIT_KEYS).
    limits: dict[str, int] = field(default_factory=dict)
    #: ``[journal]``: None: no journal.
    journal: JournalSettings | None = None

    @property
    def entry_module(self) -> str:
        return self.entry.partition(":")[0]

    @property
    def entry_attribute(self) -> str:
        return self.entry.partition(":")[2]


class _Check:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def table(self, data: Any, path: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.problems.append(f"{path}: must be a table")
            return {}
        return data

    def known(self, data: dict[str, Any], path: str, allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                self.problems.append(f"{path}.{key}: unknown key (expected one of: {', '.join(sorted(allowed))})")

    def string(self, data: dict[str, Any], key: str, path: str, required: bool = True) -> str | None:
        if key not in data:
            if required:
                self.problems.append(f"{path}.{key}: required")
            return None
        value = data[key]
        if not isinstance(value, str) or not value:
            self.problems.append(f"{path}.{key}: must be a non-empty string, got {value!r}")
            return None
        return value


def parse_manifest(text: str) -> Manifest:
    """Parses and checks a package.toml; raises ManifestError naming every bad field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError([f"not valid TOML: {e}"]) from None
    c = _Check()
    c.known(data, "package.toml", {"package", "metadata", "limits", "journal"})
    journal = _journal(c, data.get("journal"))
    limits = c.table(data.get("limits", {}), "limits")
    c.known(limits, "limits", set(LIMIT_KEYS))
    for key, value in limits.items():
        if key in LIMIT_KEYS and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            c.problems.append(f"limits.{key}: must be a positive integer, got {value!r}")
    package = c.table(data.get("package", None), "package")
    metadata = c.table(data.get("metadata", None), "metadata")
    c.known(package, "package", {"name", "version"} | _SEED_PACKAGE_KEYS)
    name = c.string(package, "name", "package")
    version = c.string(package, "version", "package")
    c.known(
        metadata,
        "metadata",
        {"graph_name", "language", "entry", "description", "reaction_mode", "input_strategy", "accumulators"},
    )
    graph_name = c.string(metadata, "graph_name", "metadata")
    # These become folder and file names on the server (headrace.names).
    named = (("package.name", "package", name), ("package.version", "version", version), ("metadata.graph_name", "graph", graph_name))
    for where, what, value in named:
        if value is not None and (problem := name_problem(what, value)) is not None:
            c.problems.append(f"{where}: {problem}")
    language = c.string(metadata, "language", "metadata", required=False) or "python"
    if language != "python":
        c.problems.append(f"metadata.language: this server runs Python graphs, got {language!r}")
    entry = c.string(metadata, "entry", "metadata")
    if entry is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", entry):
        c.problems.append(f"metadata.entry: must be 'module:attribute' (e.g. 'price_signal:graph'), got {entry!r}")
    reaction = c.string(metadata, "reaction_mode", "metadata", required=False)
    if reaction is not None and reaction not in ("when_any", "when_all"):
        c.problems.append(f"metadata.reaction_mode: must be 'when_any' or 'when_all', got {reaction!r}")
    strategy = c.string(metadata, "input_strategy", "metadata", required=False)
    if strategy is not None and strategy not in INPUTS:
        c.problems.append(f"metadata.input_strategy: must be 'latest', 'sequential' or 'burst', got {strategy!r}")
    accumulators = []
    raw = metadata.get("accumulators", [])
    if not isinstance(raw, list):
        c.problems.append("metadata.accumulators: must be an array of tables ([[metadata.accumulators]])")
        raw = []
    seen: set[str] = set()
    for i, entry_data in enumerate(raw):
        path = f"metadata.accumulators[{i}]"
        acc = c.table(entry_data, path)
        c.known(acc, path, {"name", "accumulator_type", "config", "input", "max_age"})
        acc_name = c.string(acc, "name", path)
        kind = c.string(acc, "accumulator_type", path)
        if acc_name is not None:
            if not _NAME.match(acc_name):
                c.problems.append(f"{path}.name: must be a Python identifier, got {acc_name!r}")
            elif (problem := name_problem("accumulator", acc_name)) is not None:
                c.problems.append(f"{path}.name: {problem}")
            if acc_name in seen:
                c.problems.append(f"{path}.name: accumulator '{acc_name}' is declared twice")
            seen.add(acc_name)
        acc_input = c.string(acc, "input", path, required=False)
        if acc_input is not None and acc_input not in INPUTS:
            who = f"accumulator '{acc_name}'" if acc_name is not None else "accumulator"
            c.problems.append(f"{path}.input: {who}: must be 'latest', 'sequential' or 'burst', got {acc_input!r}")
            acc_input = None
        max_age = acc.get("max_age")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, (str, int, float))):
            c.problems.append(f"{path}.max_age: must be a duration such as \"2s\" or a number of seconds, got {max_age!r}")
            max_age = None
        if kind is not None and kind not in KINDS:
            c.problems.append(f"{path}.accumulator_type: must be one of {', '.join(KINDS)}, got {kind!r}")
        config = c.table(acc.get("config", {}), f"{path}.config")
        allowed = CONFIG_KEYS.get(kind or "", ALL_CONFIG_KEYS)
        c.known(config, f"{path}.config", allowed)
        if kind == "stream" and "topic" not in config:
            c.problems.append(f"{path}.config.topic: required for a stream accumulator")
        if acc_name is not None and kind is not None:
            accumulators.append(AccumulatorEntry(acc_name, kind, dict(config), acc_input, max_age))
    if c.problems:
        raise ManifestError(c.problems)
    assert name and version and graph_name and entry
    return Manifest(
        name=name,
        version=version,
        graph_name=graph_name,
        entry=entry,
        language=language,
        description=str(metadata.get("description", "")),
        reaction_mode=reaction,
        input_strategy=strategy,
        accumulators=tuple(accumulators),
        limits={k: v for k, v in limits.items() if k in LIMIT_KEYS},
        journal=journal,
    )


def _journal(c: Any, raw: Any) -> JournalSettings | None:
    if raw is None:
        return None
    table = c.table(raw, "journal")
    c.known(table, "journal", {"fsync", "keep_mb"})
    fsync = table.get("fsync", "batch")
    if fsync not in ("batch", "never") and (
        isinstance(fsync, bool) or not isinstance(fsync, (int, float)) or not 0 < fsync < float("inf")
    ):
        c.problems.append(f'journal.fsync: must be "batch", "never" or a positive number of seconds, got {fsync!r}')
        fsync = "batch"
    keep_mb = table.get("keep_mb")
    if keep_mb is not None and (isinstance(keep_mb, bool) or not isinstance(keep_mb, int) or keep_mb < 1):
        c.problems.append(f"journal.keep_mb: must be a positive integer, got {keep_mb!r}")
        keep_mb = None
    return JournalSettings(fsync, keep_mb)
