"""Names that become file and folder names: one pattern, checked at every
entry point (headrace.names), and paths built from names stay inside their root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr
from headrace.errors import GraphDefinitionError, InvalidNameError
from headrace.names import MAX_NAME_LENGTH, NAME_PATTERN, check_name, path_under
from headrace.packages import ManifestError, parse_manifest
from headrace.server.auth import KeyStore
from headrace.server.config import ServerConfig

#: Names an attacker or a typo would try; none may become a path.
HOSTILE = [
    "..",
    ".",
    "/",
    "",
    "../public/prices",
    "a/b",
    "a\\b",
    "a\x00b",
    "x" * (MAX_NAME_LENGTH + 1),
    "pr\u0456ces",  # Cyrillic i: looks like "prices"
    "\uff50rices",  # fullwidth p
    "%2e%2e",
    "with space",
    "new\nline",
    "trailing\n",
    ".hidden",
    "-rf",
    "a,b",
]
GOOD = ["prices", "kafka_price_signal", "0.1.0", "v1.2.3-rc1", "A", "_x", "x" * MAX_NAME_LENGTH]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_hostile_names_are_refused_naming_kind_value_and_pattern(value: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        check_name("graph", value)
    message = str(info.value)
    assert "graph name" in message and NAME_PATTERN in message
    assert repr(value[:80]) in message
    assert (info.value.kind, info.value.value) == ("graph", value)


@pytest.mark.parametrize("value", GOOD)
def test_ordinary_names_pass(value: str) -> None:
    assert check_name("graph", value) == value


@given(st.text(max_size=80))
def test_a_valid_name_is_always_one_plain_path_component(value: str) -> None:
    try:
        check_name("graph", value)
    except InvalidNameError:
        return
    assert value not in (".", "..") and "/" in f"a/{value}" and "/" not in value and "\x00" not in value
    assert value.isascii() and value.isprintable() and not value.startswith((".", "-"))
    assert Path("/root", value).parent == Path("/root")


@pytest.mark.parametrize("part", ["..", ".", "", "a/../..", "/etc", "a\x00"])
def test_path_under_refuses_parts_that_leave_the_root(tmp_path: Path, part: str) -> None:
    with pytest.raises(InvalidNameError):
        path_under(tmp_path, "fires", part)


def test_path_under_builds_paths_inside_the_root(tmp_path: Path) -> None:
    assert path_under(tmp_path, "fires", "public", "prices.db") == tmp_path / "fires" / "public" / "prices.db"


# --- entry points --------------------------------------------------------------


def _toml(s: str) -> str:
    """A TOML basic string holding ``s`` exactly (control characters escaped)."""
    out = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in s)
    return f'"{out}"'


def manifest(graph: str = "prices", version: str = "0.1.0", package: str = "prices", accumulator: str = "price") -> str:
    return (
        f"[package]\nname = {_toml(package)}\nversion = {_toml(version)}\n\n[metadata]\ngraph_name = {_toml(graph)}\n"
        f'entry = "graph_module:graph"\n\n[[metadata.accumulators]]\nname = {_toml(accumulator)}\n'
        'accumulator_type = "passthrough"\n'
    )


TOML_HOSTILE = [v for v in HOSTILE if v != ""]  # the empty string is refused as "non-empty" already


@pytest.mark.parametrize("value", TOML_HOSTILE, ids=repr)
@pytest.mark.parametrize("field", ["graph", "version", "package"])
def test_manifest_refuses_hostile_names(field: str, value: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(manifest(**{field: value}))
    where = {"graph": "metadata.graph_name", "version": "package.version", "package": "package.name"}[field]
    assert any(p.startswith(where) for p in info.value.problems), info.value.problems


def test_manifest_refuses_a_look_alike_accumulator_name() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(manifest(accumulator="pr\u0456ce"))
    assert any(p.startswith("metadata.accumulators[0].name") for p in info.value.problems), info.value.problems


def test_manifest_accepts_ordinary_names() -> None:
    m = parse_manifest(manifest("kafka_price_signal", "1.2.3-rc1", "kafka-price-signal", "orderbook"))
    assert (m.graph_name, m.version, m.name) == ("kafka_price_signal", "1.2.3-rc1", "kafka-price-signal")


@hr.passthrough_accumulator
def price(event: object) -> object:
    return event


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_computation_graph_refuses_hostile_names(value: str) -> None:
    with pytest.raises(GraphDefinitionError, match="graph name"):
        hr.ComputationGraph(value, accumulators=[price])


@pytest.mark.parametrize("value", ["pr\u0456ce", "\u00e9t\u00e9", "x" * (MAX_NAME_LENGTH + 1)], ids=repr)
def test_accumulator_decorators_refuse_names_outside_the_pattern(value: str) -> None:
    with pytest.raises(GraphDefinitionError, match="accumulator name"):
        hr.passthrough_accumulator(name=value)(lambda event: event)


@pytest.mark.parametrize("value", ["..", "a,b", "", "pr\u0456ces"], ids=repr)
def test_key_store_refuses_hostile_tenants_and_scopes(tmp_path: Path, value: str) -> None:
    store = KeyStore(tmp_path / "keys.db")
    try:
        with pytest.raises(InvalidNameError, match="tenant name"):
            store.create(value, "read")
        with pytest.raises(InvalidNameError, match="graph name"):
            store.create("public", "read", ("prices", value))
        assert store.list() == []
    finally:
        store.close()


def test_server_config_refuses_a_hostile_admin_tenant() -> None:
    with pytest.raises(ValueError, match="admin-tenant"):
        ServerConfig(admin_tenant="../x").check()


@pytest.mark.parametrize(("args", "fragment"), [
    (["keys", "create", "--tenant", "../public"], "tenant name '../public' is not valid"),
    (["keys", "create", "--tenant", "public", "--graph", "prices,beta"], "graph name 'prices,beta' is not valid"),
    (["keys", "create", "--tenant", "public", "--graph", ""], "graph name '' is not valid"),
    (["serve", "--admin-tenant", "/", "--port", "0"], "--admin-tenant: tenant name '/' is not valid"),
    (["checkpoint", "discard", "--yes", "--tenant", "../public", "--graph", "prices"], "tenant name '../public' is not valid"),
    (["checkpoint", "discard", "--yes", "--tenant", "public", "--graph", "/"], "graph name '/' is not valid"),
    (["checkpoint", "on-corrupt", "start_empty", "--tenant", "..", "--graph", "prices"], "tenant name '..' is not valid"),
], ids=["keys-tenant", "keys-scope-comma", "keys-scope-empty", "serve-admin-tenant", "discard-tenant", "discard-graph",
        "on-corrupt-tenant"])
def test_the_cli_refuses_hostile_names(tmp_path: Path, args: list[str], fragment: str) -> None:
    data_dir = ["--data-dir", str(tmp_path / "data")]
    env = {k: v for k, v in os.environ.items() if k != "HEADRACE_ADMIN_KEY"}
    p = subprocess.run([sys.executable, "-m", "headrace", *args, *data_dir], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 1 and fragment in p.stderr, (p.returncode, p.stderr)
    assert not (tmp_path / "data" / "graph-settings").exists()  # nothing written for a refused name
    keys = tmp_path / "data" / "keys.db"
    if keys.exists():
        store = KeyStore(keys)
        try:
            assert store.list() == []
        finally:
            store.close()
