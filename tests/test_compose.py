"""docker-compose.yaml and the Dockerfile agree with each other and with what
``headrace serve`` reads.

No Docker engine runs here: the files are parsed, and the server's own
settings code (:class:`headrace.server.config.ServerConfig`) reads the
environment the compose file gives the container.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import headrace as hr
from headrace.server.config import DEFAULT_PORT, ENV, ServerConfig
from headrace.sources.backend import resolve_broker

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"

SERVICES = ("kafka", "postgres", "headrace")
VAR_PREFIXES = ("HEADRACE_VAR_", "CLOACINA_VAR_")
#: Stands in for the ${HEADRACE_ADMIN_KEY} the user exports.
DUMMY_KEY = "clk_" + secrets.token_urlsafe(32)


# --- parsing ------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "docker-compose.yaml is not a mapping"
    services = data.get("services")
    assert isinstance(services, dict), "docker-compose.yaml has no 'services' mapping"
    return data


def _service(name: str) -> dict[str, Any]:
    services = _compose()["services"]
    assert name in services, f"docker-compose.yaml has no '{name}' service (has: {sorted(services)})"
    service = services[name]
    assert isinstance(service, dict), f"service '{name}' is not a mapping"
    return service


def _environment(name: str) -> dict[str, str]:
    """A service's environment as name -> raw (uninterpolated) string."""
    env = _service(name).get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {k: v for k, _, v in pairs}
    assert isinstance(env, dict), f"service '{name}': environment is neither a mapping nor a list"
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


def _interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def substitute(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"] or "", m["arg"]
        got = variables.get(name)
        if op.endswith("?") and not got:
            raise KeyError(f"{name}: {arg}")
        if op.endswith("-") and not got:
            return arg
        return got or ""

    return _INTERPOLATION.sub(substitute, value)


def _container_env(name: str) -> dict[str, str]:
    """The environment the container sees, with the user's admin key exported."""
    return {k: _interpolate(v, {"HEADRACE_ADMIN_KEY": DUMMY_KEY}) for k, v in _environment(name).items()}


def _published(name: str) -> list[tuple[str | None, int, int]]:
    """A service's published ports as (host ip, host port, container port)."""
    out: list[tuple[str | None, int, int]] = []
    for entry in _service(name).get("ports") or []:
        if isinstance(entry, dict):
            ip = entry.get("host_ip")
            out.append((ip, int(entry.get("published") or entry["target"]), int(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0].strip("[]"), int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.append((None, int(parts[0]), int(parts[1])))
        else:
            out.append((None, int(parts[0]), int(parts[0])))
    return out


def _dockerfile_runtime() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last (runtime) stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append([])
        assert stages, f"Dockerfile: '{line}' comes before any FROM"
        stages[-1].append((word, rest.strip()))
    assert len(stages) >= 2, "the Dockerfile should be multi-stage (a build stage and a slim runtime)"
    return stages[-1]


def _instructions(word: str) -> list[str]:
    return [rest for w, rest in _dockerfile_runtime() if w == word]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in _instructions("ENV"):
        tokens = shlex.split(rest)
        if "=" not in tokens[0]:  # legacy "ENV NAME value"
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            k, _, v = token.partition("=")
            env[k] = v
    return env


def _health_url(command: str) -> tuple[str, int, str]:
    m = re.search(r"http://([\w.\-]+):(\d+)(/[^'\"\s)]*)", command)
    assert m, f"no http://host:port/path in the healthcheck {command!r}"
    return m[1], int(m[2]), m[3]


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)} (host '' when unset)."""
    out: dict[str, tuple[str, int]] = {}
    for item in filter(None, (s.strip() for s in value.split(","))):
        name, sep, address = item.partition("://")
        assert sep, f"listener {item!r} is not NAME://host:port"
        host, _, port = address.rpartition(":")
        out[name] = (host.strip("[]"), int(port))
    return out


# --- the compose file ---------------------------------------------------------


def test_compose_file_has_the_three_services() -> None:
    services = _compose()["services"]
    missing = [s for s in SERVICES if s not in services]
    assert not missing, f"docker-compose.yaml lacks services {missing}"
    assert _service("kafka").get("image", "").startswith("apache/kafka:"), "kafka should run apache/kafka"
    assert _service("postgres").get("image", "").startswith("postgres:"), "postgres should run the postgres image"
    build = _service("headrace").get("build")
    context = build.get("context") if isinstance(build, dict) else build
    assert context == ".", f"headrace should be built from the repository's Dockerfile (build: .), got {build!r}"


@pytest.mark.parametrize("name", SERVICES)
def test_published_ports_are_bound_to_localhost(name: str) -> None:
    service = _service(name)
    assert service.get("network_mode") != "host", f"{name}: network_mode host would publish every port"
    ports = _published(name)
    assert ports, f"{name} publishes no port"
    for ip, host_port, container_port in ports:
        assert ip == "127.0.0.1", (
            f"{name}: port {host_port}:{container_port} is published on {ip or 'every interface'}, "
            "it should be bound to 127.0.0.1 only"
        )


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = _service(name).get("healthcheck")
    assert isinstance(check, dict), f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name}: healthcheck is disabled"
    test = check.get("test")
    assert test and test not in (["NONE"], "NONE"), f"{name}: healthcheck has no test command"


def test_headrace_waits_for_healthy_kafka_and_postgres() -> None:
    depends = _service("headrace").get("depends_on")
    assert isinstance(depends, dict), "headrace: depends_on should be a mapping with conditions"
    for dep in ("kafka", "postgres"):
        assert dep in depends, f"headrace does not depend on {dep}"
        condition = (depends[dep] or {}).get("condition")
        assert condition == "service_healthy", f"headrace should wait for {dep} to be healthy, not {condition!r}"


def test_headrace_environment_is_read_by_the_server() -> None:
    known = set(ENV.values())
    for name in _environment("headrace"):
        if not name.startswith("HEADRACE_"):
            continue
        assert name in known or name.startswith(VAR_PREFIXES), (
            f"headrace sets {name}, which `headrace serve` does not read "
            f"(it reads {sorted(known)} and HEADRACE_VAR_*/CLOACINA_VAR_* for graph variables)"
        )


def test_admin_key_is_required_from_the_user() -> None:
    raw = _environment("headrace").get(ENV["admin_key"], "")
    assert re.fullmatch(r"\$\{HEADRACE_ADMIN_KEY:\?[^}]+\}", raw), (
        f"{ENV['admin_key']} should be ${{HEADRACE_ADMIN_KEY:?message}} so compose refuses to start "
        f"without a key (and no key is written in the file), got {raw!r}"
    )
    with pytest.raises(KeyError, match="clk_"):
        _interpolate(raw, {})


def test_server_port_is_the_published_and_exposed_port() -> None:
    port = int(_container_env("headrace")[ENV["port"]])
    assert port == DEFAULT_PORT, f"{ENV['port']}={port}, the server's default is {DEFAULT_PORT}"
    container_ports = [c for _, _, c in _published("headrace")]
    assert container_ports == [port], f"headrace publishes container ports {container_ports}, the server listens on {port}"
    exposed = [int(p.split("/")[0]) for rest in _instructions("EXPOSE") for p in rest.split()]
    assert exposed == [port], f"the Dockerfile EXPOSEs {exposed}, the server listens on {port}"
    assert int(_dockerfile_env()[ENV["port"]]) == port, "the Dockerfile's HEADRACE_PORT differs from compose's"


def test_headrace_healthcheck_hits_health_on_the_server_port() -> None:
    port = int(_container_env("headrace")[ENV["port"]])
    test = _service("headrace")["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else str(test)
    host, check_port, path = _health_url(command)
    assert (host, check_port, path) == ("127.0.0.1", port, "/health"), (
        f"the compose healthcheck GETs http://{host}:{check_port}{path}, expected http://127.0.0.1:{port}/health"
    )


def test_data_dir_is_a_volume() -> None:
    data_dir = _container_env("headrace")[ENV["data_dir"]]
    targets = [str(v).split(":")[1] if ":" in str(v) else str(v) for v in _service("headrace").get("volumes") or []]
    assert data_dir in targets, f"{ENV['data_dir']}={data_dir} is not a mounted volume (mounts: {targets})"
    assert _dockerfile_env()[ENV["data_dir"]] == data_dir, "the Dockerfile's HEADRACE_DATA_DIR differs from compose's"
    volumes = [shlex.split(rest.strip("[]").replace(",", " ")) for rest in _instructions("VOLUME")]
    assert [data_dir] in volumes, f"the Dockerfile declares no VOLUME {data_dir}"


def test_store_points_at_the_postgres_service() -> None:
    store = _container_env("headrace")[ENV["store"]]
    url = urlsplit(store)
    pg = _environment("postgres")
    assert url.scheme in ("postgresql", "postgres"), f"{ENV['store']}={store} is not a postgresql:// URL"
    assert url.hostname == "postgres", f"the store's host is {url.hostname}, the service is named 'postgres'"
    assert (url.port or 5432) == 5432, f"the store's port is {url.port}, PostgreSQL listens on 5432"
    assert url.username == pg.get("POSTGRES_USER"), f"store user {url.username} != POSTGRES_USER {pg.get('POSTGRES_USER')}"
    assert url.password == pg.get("POSTGRES_PASSWORD"), "the store's password differs from POSTGRES_PASSWORD"
    db = url.path.lstrip("/")
    assert db == pg.get("POSTGRES_DB", pg.get("POSTGRES_USER")), f"store database {db} != POSTGRES_DB"
    assert [c for _, _, c in _published("postgres")] == [5432], "postgres should publish its port 5432"


def test_postgres_healthcheck_checks_the_database_the_server_uses() -> None:
    pg = _environment("postgres")
    test = _service("postgres")["healthcheck"]["test"]
    words = shlex.split(test) if isinstance(test, str) else [w for t in test for w in shlex.split(t)]
    assert "pg_isready" in words, f"the postgres healthcheck should run pg_isready, runs {test}"
    assert pg["POSTGRES_USER"] in words and pg["POSTGRES_DB"] in words, "pg_isready should name the user and database"


def test_broker_variable_names_a_kafka_listener() -> None:
    env = _container_env("headrace")
    default = inspect.signature(hr.stream_accumulator).parameters["broker"].default
    variable = next((f"{p}{default}" for p in VAR_PREFIXES if f"{p}{default}" in env), None)
    assert variable, f"headrace sets neither HEADRACE_VAR_{default} nor CLOACINA_VAR_{default} (the default broker variable)"
    host, _, port = env[variable].rpartition(":")
    assert host == "kafka", f"{variable}={env[variable]}: the host should be the 'kafka' service"

    kafka = _environment("kafka")
    listeners = _listeners(kafka["KAFKA_LISTENERS"])
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    names = [n for n, (_, p) in listeners.items() if p == int(port)]
    assert names, f"{variable}={env[variable]}: kafka has no listener on port {port} ({kafka['KAFKA_LISTENERS']})"
    # A client is redirected to the address advertised for the listener it reached.
    assert advertised.get(names[0]) == ("kafka", int(port)), (
        f"kafka's listener {names[0]} advertises {advertised.get(names[0])}, "
        f"containers reach it as kafka:{port}"
    )


def test_published_kafka_port_advertises_localhost() -> None:
    kafka = _environment("kafka")
    listeners = _listeners(kafka["KAFKA_LISTENERS"])
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    controllers = set(kafka.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(","))
    for _, host_port, container_port in _published("kafka"):
        names = [n for n, (_, p) in listeners.items() if p == container_port]
        assert names, f"kafka publishes {container_port}, on which it has no listener"
        assert names[0] not in controllers, "kafka should not publish its controller listener"
        assert advertised.get(names[0]) == ("localhost", host_port), (
            f"listener {names[0]} is published on the host as 127.0.0.1:{host_port} "
            f"but advertises {advertised.get(names[0])}"
        )


def test_kafka_is_kraft_single_node() -> None:
    kafka = _environment("kafka")
    roles = {r.strip() for r in kafka.get("KAFKA_PROCESS_ROLES", "").split(",")}
    assert {"broker", "controller"} <= roles, f"KAFKA_PROCESS_ROLES={roles}: KRaft combined mode needs broker,controller"
    zookeeper = [k for k in kafka if "ZOOKEEPER" in k.upper()]
    assert not zookeeper, f"kafka is KRaft, it should not set {zookeeper}"
    node = kafka["KAFKA_NODE_ID"]
    listeners = _listeners(kafka["KAFKA_LISTENERS"])
    controller = kafka["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")[0]
    assert controller in listeners, f"controller listener {controller} is not among KAFKA_LISTENERS"
    voters = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == f"{node}@kafka:{listeners[controller][1]}", (
        f"KAFKA_CONTROLLER_QUORUM_VOTERS={voters}: a single node votes for itself on its controller listener"
    )
    for setting in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert kafka.get(setting) == "1", f"{setting} should be 1 on a single broker, is {kafka.get(setting)}"
    test = _service("kafka")["healthcheck"]["test"]
    assert "kafka-broker-api-versions.sh" in " ".join(test if isinstance(test, list) else [test]), (
        f"the kafka healthcheck should ask the broker for its API versions, runs {test}"
    )


# --- the Dockerfile -----------------------------------------------------------


def test_dockerfile_runs_headrace_serve() -> None:
    cmds = _instructions("CMD")
    assert cmds, "the Dockerfile's runtime stage has no CMD"
    try:
        cmd = json.loads(cmds[-1])
    except json.JSONDecodeError:
        pytest.fail(f"CMD {cmds[-1]} should be in exec form so the server gets signals as PID 1")
    assert cmd[:2] == ["headrace", "serve"], f"the image runs {cmd}, not `headrace serve`"


def test_dockerfile_server_listens_on_all_interfaces() -> None:
    env = _dockerfile_env()
    assert env.get(ENV["host"]) == "0.0.0.0", (
        f"the Dockerfile sets {ENV['host']}={env.get(ENV['host'])!r}: a server bound to 127.0.0.1 "
        "inside a container cannot be reached from outside it"
    )
    host = _container_env("headrace").get(ENV["host"])
    assert host == "0.0.0.0", f"compose sets {ENV['host']}={host!r}, the server must listen on 0.0.0.0 in its container"
    unknown = [k for k in env if k.startswith("HEADRACE_") and k not in ENV.values()]
    assert not unknown, f"the Dockerfile sets {unknown}, which `headrace serve` does not read"


def test_dockerfile_healthcheck_hits_health_on_the_server_port() -> None:
    checks = _instructions("HEALTHCHECK")
    assert checks, "the Dockerfile's runtime stage has no HEALTHCHECK"
    host, port, path = _health_url(checks[-1])
    expected = int(_dockerfile_env()[ENV["port"]])
    assert (host, port, path) == ("127.0.0.1", expected, "/health"), (
        f"the HEALTHCHECK GETs http://{host}:{port}{path}, expected http://127.0.0.1:{expected}/health"
    )
    assert "curl" not in checks[-1] and "wget" not in checks[-1], "the slim image has neither curl nor wget"


def test_dockerfile_installs_the_postgres_extra_as_non_root() -> None:
    runs = " ".join(_instructions("RUN"))
    assert "[postgres]" in runs, "the runtime stage should install headrace with the postgres extra"
    users = _instructions("USER")
    assert users and users[-1] not in ("root", "0"), f"the server should not run as root (USER {users})"


# --- what `headrace serve` makes of that environment ---------------------------


def _clear_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(ENV.values()) + [k for k in os.environ if k.startswith(VAR_PREFIXES)]:
        monkeypatch.delenv(var, raising=False)


def test_server_config_from_the_compose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_server_env(monkeypatch)
    env = _container_env("headrace")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = ServerConfig.from_env()
    assert config.host == "0.0.0.0", f"ServerConfig.host is {config.host!r} under the compose environment"
    assert isinstance(config.port, int) and config.port == int(env[ENV["port"]]), f"ServerConfig.port is {config.port!r}"
    assert config.data_dir == Path(env[ENV["data_dir"]]), f"ServerConfig.data_dir is {config.data_dir}"
    assert config.store == env[ENV["store"]], f"ServerConfig.store is {config.store!r}"
    assert config.store_url == env[ENV["store"]], f"the server would checkpoint to {config.store_url}"
    assert config.admin_key == DUMMY_KEY, "ServerConfig.admin_key is not the key compose passes in"
    assert config.admin_tenant == "public", f"the admin key would be registered for tenant {config.admin_tenant!r}"


def test_server_config_from_the_dockerfile_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image alone (docker run) serves on 0.0.0.0:8080 with SQLite under /data."""
    _clear_server_env(monkeypatch)
    for name, value in _dockerfile_env().items():
        monkeypatch.setenv(name, value)
    config = ServerConfig.from_env()
    got = (config.host, config.port, config.data_dir)
    assert got == ("0.0.0.0", 8080, Path("/data")), f"the image alone serves with host, port, data dir {got}"
    assert config.store is None, f"the image alone should not name a store, got {config.store!r}"
    assert config.store_url == "sqlite:////data/state.db", f"the image alone checkpoints to {config.store_url}"


def test_graphs_resolve_the_broker_from_the_compose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_server_env(monkeypatch)
    env = _container_env("headrace")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    default = inspect.signature(hr.stream_accumulator).parameters["broker"].default
    expected = env.get(f"HEADRACE_VAR_{default}") or env[f"CLOACINA_VAR_{default}"]
    assert resolve_broker(default, "orderbook") == expected


def test_headrace_serve_reads_the_compose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `headrace serve` command itself (not only ServerConfig.from_env) picks
    every setting up from the environment compose gives the container."""
    from typer.testing import CliRunner

    import headrace.server.run as run
    from headrace.cli import app

    _clear_server_env(monkeypatch)
    env = _container_env("headrace")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started: list[ServerConfig] = []

    class NoKeys:
        def list(self, tenant: str | None = None) -> list[object]:
            return []

        def close(self) -> None:
            pass

    monkeypatch.setattr(run, "open_keys", lambda config: NoKeys())
    monkeypatch.setattr(run, "serve", started.append)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, f"`headrace serve` failed under the compose environment: {result.output}"
    assert len(started) == 1, "`headrace serve` did not start the server"
    config = started[0]
    got = (config.host, config.port, config.data_dir, config.store, config.admin_key)
    expected = (
        env[ENV["host"]],
        int(env[ENV["port"]]),
        Path(env[ENV["data_dir"]]),
        env[ENV["store"]],
        DUMMY_KEY,
    )
    assert got == expected, f"`headrace serve` runs with (host, port, data_dir, store, admin_key) {got}, compose sets {expected}"
