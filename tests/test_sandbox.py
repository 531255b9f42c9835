"""The worker sandbox piece by piece (headrace.supervisor.sandbox and
.confinement): Landlock and limits applied to a real process, a package's
[limits], per-tenant state moved out of an older shared state.db, PostgreSQL
roles that reach only their tenant's rows, and the refusal of a second tenant
when workers cannot be confined (simulated with ``--sandbox off``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from server_util import PRICES, Server, new_key, package_bytes

from headrace.checkpoint.postgres import PostgresStore
from headrace.checkpoint.postgres_roles import provision_tenant_role, role_name
from headrace.checkpoint.sqlite import SqliteStore
from headrace.packages.manifest import ManifestError, parse_manifest
from headrace.server.auth import KeyStore
from headrace.server.config import ServerConfig
from headrace.supervisor.confinement import Confinement
from headrace.supervisor.sandbox import Limits, landlock_abi

needs_landlock = pytest.mark.skipif(landlock_abi() < 1, reason="this kernel offers no Landlock")


def run_confined(policy: dict[str, object], body: str) -> dict[str, object]:
    """Runs ``body`` in a fresh interpreter after ``sandbox.apply(policy)``;
    returns what it printed as JSON."""
    code = "import json, os, resource, sys\nfrom headrace.supervisor import sandbox\n"
    code += f"sandbox.apply({policy!r})\n" + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def _python_paths() -> list[str]:
    return sorted({sys.prefix, sys.base_prefix, *(p for p in sys.path if p and os.path.isdir(p))})


@needs_landlock
def test_landlock_leaves_a_process_only_its_paths(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    (other / "secret").write_text("s")
    policy = {"read": _python_paths(), "write": [str(mine)], "landlock": True}
    result = run_confined(
        policy,
        f"""
        def attempt(fn):
            try:
                fn()
                return "ok"
            except OSError as e:
                return type(e).__name__
        out = {{
            "write_mine": attempt(lambda: open({str(mine / "f")!r}, "w").write("x")),
            "read_other": attempt(lambda: open({str(other / "secret")!r}).read()),
            "write_other": attempt(lambda: open({str(other / "new")!r}, "w")),
            "list_other": attempt(lambda: os.listdir({str(other)!r})),
            "signal_parent": attempt(lambda: os.kill(os.getppid(), 0)),
        }}
        print(json.dumps(out))
        """,
    )
    denied = "PermissionError"
    assert result == {
        "write_mine": "ok",
        "read_other": denied,
        "write_other": denied,
        "list_other": denied,
        "signal_parent": denied if landlock_abi() >= 6 else "ok",
    }


def test_limits_are_in_place_before_anything_else_runs() -> None:
    limits = {"memory_mb": 300, "cpu_seconds": 50, "processes": 100, "open_files": 64, "file_mb": 5}
    result = run_confined(
        {"limits": limits, "own_uid": False},
        """
        names = {"data": resource.RLIMIT_DATA, "cpu": resource.RLIMIT_CPU, "nofile": resource.RLIMIT_NOFILE,
                 "fsize": resource.RLIMIT_FSIZE, "nproc": resource.RLIMIT_NPROC}
        print(json.dumps({k: list(resource.getrlimit(v)) for k, v in names.items()}))
        """,
    )
    mb = 1024 * 1024
    assert result["data"] == [300 * mb, 300 * mb]
    assert result["cpu"] == [50, 51]  # SIGXCPU first, SIGKILL a second later
    assert result["nofile"] == [64, 64]
    assert result["fsize"] == [5 * mb, 5 * mb]
    # Without a uid of its own the process count would include the server's processes: not set.
    assert result["nproc"] != [100, 100]


def test_the_sandbox_refuses_to_start_once_threads_run() -> None:
    code = (
        "import threading, time\nfrom headrace.supervisor import sandbox\n"
        "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
        "sandbox.apply({'landlock': True})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "before any thread starts (2 running)" in r.stderr


limit_values = st.integers(min_value=0, max_value=10**6)
limits_strategy = st.builds(Limits, limit_values, limit_values, limit_values, limit_values, limit_values)


@given(limits_strategy, limits_strategy)
def test_a_package_can_only_lower_the_servers_limits(server: Limits, wanted: Limits) -> None:
    result = server.lowered_by(wanted)
    for name in vars(server):
        ours, theirs, got = getattr(server, name), getattr(wanted, name), getattr(result, name)
        if ours:
            assert 0 < got <= ours
        if theirs:
            assert 0 < got <= theirs
        assert got in (ours, theirs)
    assert bool(server.exceeded_by(wanted)) == any(
        getattr(server, n) and getattr(wanted, n) > getattr(server, n) for n in vars(server)
    )


MANIFEST = """
[package]
name = "p"
version = "0.1.0"
[metadata]
graph_name = "p"
entry = "m:graph"
"""


def test_manifest_limits_are_checked() -> None:
    assert parse_manifest(MANIFEST + "[limits]\nmemory_mb = 256\ncpu_seconds = 10\n").limits == {
        "memory_mb": 256,
        "cpu_seconds": 10,
    }
    assert parse_manifest(MANIFEST).limits == {}
    with pytest.raises(ManifestError) as e:
        parse_manifest(MANIFEST + "[limits]\nmemory_mb = -1\nthreads = 4\nprocesses = true\n")
    assert sorted(e.value.problems) == [
        "limits.memory_mb: must be a positive integer, got -1",
        "limits.processes: must be a positive integer, got True",
        "limits.threads: unknown key (expected one of: cpu_seconds, file_mb, memory_mb, open_files, processes)",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sandbox": "strict"}, "--sandbox 'strict': must be one of auto, uid, landlock, off"),
        ({"sandbox_uids": "1000"}, "--sandbox-uids '1000': must be FIRST-LAST"),
        ({"sandbox_uids": "5-1"}, "--sandbox-uids '5-1': must be FIRST-LAST"),
        ({"worker_memory_mb": -1}, "--worker-memory-mb -1: must be 0 (no limit) or more"),
    ],
)
def test_bad_sandbox_settings_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServerConfig(**overrides).check()  # type: ignore[arg-type]


@pytest.mark.skipif(os.geteuid() != 0, reason="uid mode needs root")
def test_a_data_dir_other_uids_cannot_reach_is_named_at_start(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    hidden.chmod(0o700)
    config = ServerConfig(data_dir=hidden / "data", sandbox="uid")
    with pytest.raises(ValueError, match=r"is not traversable by other users") as e:
        Confinement(config)
    assert "(mode 0700)" in str(e.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="uid mode needs root")
def test_serve_names_the_path_a_worker_uid_cannot_reach(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    hidden.chmod(0o700)
    env = {**os.environ, "HEADRACE_DATA_DIR": str(hidden / "data"), "HEADRACE_SANDBOX": "uid", "HEADRACE_PORT": "1"}
    r = subprocess.run([sys.executable, "-m", "headrace", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: --sandbox uid: ") and "is not traversable by other users" in r.stderr, r.stderr


def test_the_shared_state_of_older_versions_is_split_per_tenant(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shared = SqliteStore(data / "state.db")
    shared.save("public", "prices", {"acc:price": b"public-state"})
    shared.save("other", "alpha", {"acc:quote": b"other-state"})
    shared.close()
    (data / "fires" / "public").mkdir(parents=True)
    (data / "fires" / "public" / "prices.db").write_bytes(b"fire log")
    confinement = Confinement(ServerConfig(data_dir=data, sandbox="landlock"))
    confinement.secure_data_dir()
    confinement.prepare("public")
    own = SqliteStore(data / "tenants" / "public" / "state.db")
    try:
        assert own.load("public", "prices") == {"acc:price": b"public-state"}
        assert own.load("other", "alpha") == {}
    finally:
        own.close()
    assert (data / "tenants" / "public" / "fires" / "prices.db").read_bytes() == b"fire log"
    assert not (data / "fires" / "public").exists()
    assert (data / "state.db").stat().st_mode & 0o777 == 0o600
    assert (data / "tenants" / "public").stat().st_mode & 0o777 == 0o700


# --- PostgreSQL: a role per tenant ---------------------------------------------


@pytest.fixture
def pg_url(postgres_url: str, tenant: str) -> Iterator[str]:
    """The test PostgreSQL with a schema of this test's own (the tables of
    another checkout's schema version cannot interfere); drops the schema and
    the roles the test made."""
    schema = "s_" + tenant.replace("-", "_")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield postgres_url + ("&" if "?" in postgres_url else "?") + f"options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        for t in (tenant, tenant + "-b"):
            role = role_name(t)
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f'DROP OWNED BY "{role}"')
                conn.execute(f'DROP ROLE "{role}"')


@pytest.fixture
def two_tenants(pg_url: str, tenant: str) -> tuple[str, str]:
    return tenant, tenant + "-b"


def test_a_tenant_role_touches_only_its_own_rows(pg_url: str, two_tenants: tuple[str, str]) -> None:
    postgres_url = pg_url
    mine, theirs = two_tenants
    admin = PostgresStore(postgres_url)
    admin.save(mine, "g", {"c": b"mine"})
    admin.save(theirs, "g", {"c": b"theirs"})
    admin.close()
    worker_url, password = provision_tenant_role(postgres_url, mine)
    provision_tenant_role(postgres_url, theirs)
    assert role_name(mine) in worker_url and password not in worker_url and ":" + password not in worker_url
    # Through the store, as a worker would: its own rows load and save.
    store = PostgresStore(worker_url)
    try:
        assert store.load(mine, "g") == {"c": b"mine"}
        assert store.load(theirs, "g") == {}
        store.save(mine, "g", {"c": b"mine-2"})
    finally:
        store.close()
    # And with plain SQL (the test server trusts 127.0.0.1: what counts is what the role may do).
    with psycopg.connect(worker_url, autocommit=True) as conn:
        seen = conn.execute("SELECT DISTINCT tenant FROM headrace_checkpoint").fetchall()
        assert seen == [(mine,)]
        assert conn.execute("UPDATE headrace_checkpoint SET data = 'x' WHERE tenant = %s", (theirs,)).rowcount == 0
        assert conn.execute("DELETE FROM headrace_checkpoint WHERE tenant = %s", (theirs,)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO headrace_checkpoint (tenant, graph, component, data) VALUES (%s, 'g', 'x', 'x')", (theirs,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE headrace_checkpoint SET tenant = %s WHERE tenant = %s", (theirs, mine))
        for statement in ("ALTER TABLE headrace_checkpoint DISABLE ROW LEVEL SECURITY", f'SET ROLE "{role_name(theirs)}"'):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    admin = PostgresStore(postgres_url)
    try:
        assert admin.load(theirs, "g") == {"c": b"theirs"}
        assert admin.load(mine, "g") == {"c": b"mine-2"}
    finally:
        admin.close()


def test_the_server_gives_workers_their_tenants_role(pg_url: str, tmp_path: Path, tenant: str) -> None:
    key = new_key()
    env = {"HEADRACE_STORE": pg_url, "HEADRACE_ADMIN_TENANT": tenant, "HEADRACE_SANDBOX": "landlock"}
    server = Server(tmp_path / "data", env=env, key=key).start()
    try:
        server.deploy(package_bytes("prices", PRICES), "prices", tenant)
        assert server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 2}}).status_code == 200
        checkpoint = server.wait_for(
            lambda: (c := server.graph("prices")["checkpoint"]) and c["checkpoints"] > 0 and c, what="a checkpoint"
        )
        assert checkpoint["store"].startswith(f"postgresql://{role_name(tenant)}@") and checkpoint["failures"] == 0
    finally:
        server.close()


# --- unconfined: one tenant, unless --trust-uploads ------------------------------


def _two_tenant_server(tmp_path: Path, env: dict[str, str]) -> tuple[Server, dict[str, str]]:
    """A started server with an admin key for tenants "public" and "other"."""
    keys = {"public": new_key(), "other": new_key()}
    data = tmp_path / "data"
    data.mkdir()
    store = KeyStore(data / "keys.db")
    store.ensure(keys["other"], "other", "admin")
    store.close()
    return Server(data, env=env, key=keys["public"]).start(), keys


@pytest.fixture
def unconfined(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    server, keys = _two_tenant_server(tmp_path, {"HEADRACE_SANDBOX": "off"})
    yield server, keys
    server.close()


def test_unconfined_a_second_tenant_is_refused(unconfined: tuple[Server, dict[str, str]]) -> None:
    server, keys = unconfined
    assert "workers are NOT confined (confinement is switched off (--sandbox off))" in server.log()
    server.deploy(package_bytes("prices", PRICES), "prices", "public")
    r = server.upload(package_bytes("prices", PRICES), "other", key=keys["other"])
    assert r.status_code == 403 and r.json()["code"] == "untrusted_tenant", r.text
    assert "--trust-uploads" in r.json()["error"] and "tenant 'public'" in r.json()["error"]
    # The first tenant keeps uploading.
    assert server.upload(package_bytes("prices", PRICES, version="0.2.0"), "public").status_code in (200, 201)


def test_trust_uploads_accepts_every_tenant_unconfined(tmp_path: Path) -> None:
    server, keys = _two_tenant_server(tmp_path, {"HEADRACE_SANDBOX": "off", "HEADRACE_TRUST_UPLOADS": "1"})
    try:
        assert "Every tenant's uploads are trusted (--trust-uploads)" in server.log()
        server.deploy(package_bytes("prices", PRICES), "prices", "public")
        server.deploy(package_bytes("prices", PRICES), "prices", "other", key=keys["other"])
    finally:
        server.close()


#: A hostile package on PostgreSQL: its node uses the worker's own connection
#: settings (the store URL from its command line, the password from its
#: environment) to read and change the other tenant's rows.
PG_PROBE = """
import json, os, sys
import psycopg
import headrace as hr

@hr.passthrough_accumulator
def target(event):
    return event

graph = hr.ComputationGraph("raider", accumulators=[target])

@graph.node
def raid(target):
    config = json.loads(sys.argv[1])
    url = config["store"]
    out = {"url_has_password": os.environ["PGPASSWORD"] in url}
    with psycopg.connect(url, autocommit=True) as conn:
        # A row of its own tenant it may write (so the SELECT below can see something).
        conn.execute(
            "INSERT INTO headrace_checkpoint (tenant, graph, component, data) VALUES (%s, 'probe', 'c', 'x')"
            " ON CONFLICT DO NOTHING",
            (config["tenant"],),
        )
        out["tenants_seen"] = sorted({r[0] for r in conn.execute("SELECT tenant FROM headrace_checkpoint")})
        out["updated"] = conn.execute("UPDATE headrace_checkpoint SET data = 'x' WHERE tenant = %s", (target,)).rowcount
        out["deleted"] = conn.execute("DELETE FROM headrace_checkpoint WHERE tenant = %s", (target,)).rowcount
        try:
            conn.execute("INSERT INTO headrace_checkpoint (tenant, graph, component, data) VALUES (%s, 'g', 'c', 'x')", (target,))
            out["insert"] = "ok"
        except psycopg.Error as e:
            out["insert"] = type(e).__name__
    return out
"""


def test_a_package_on_postgresql_reaches_only_its_tenants_rows(pg_url: str, tmp_path: Path, tenant: str) -> None:
    mine, theirs = tenant, tenant + "-b"
    keys = {mine: new_key(), theirs: new_key()}
    data = tmp_path / "data"
    data.mkdir()
    store = KeyStore(data / "keys.db")
    store.ensure(keys[theirs], theirs, "admin")
    store.close()
    env = {"HEADRACE_STORE": pg_url, "HEADRACE_ADMIN_TENANT": mine, "HEADRACE_SANDBOX": "landlock"}
    server = Server(data, env=env, key=keys[mine]).start()
    try:
        server.deploy(package_bytes("prices", PRICES), "prices", theirs, key=keys[theirs])
        r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 2}}, headers=server.auth(keys[theirs]))
        assert r.status_code == 200 and r.json()["durable"] is True, r.text
        server.deploy(package_bytes("raider", PG_PROBE), "raider", mine)
        assert server.http.post("/v1/health/accumulators/target/inject", json={"event": theirs}).status_code == 200
        fire = server.wait_for(lambda: (f := server.fires("raider", 1)) and f[0], what="the raid's fire")
        assert fire["ok"], fire
        assert fire["outputs"]["raid"] == {
            "url_has_password": False,
            "tenants_seen": [mine],
            "updated": 0,
            "deleted": 0,
            "insert": "InsufficientPrivilege",
        }
    finally:
        server.close()
    victim = PostgresStore(pg_url)
    try:
        assert victim.load(theirs, "prices") != {} and all(v != b"x" for v in victim.load(theirs, "prices").values())
    finally:
        victim.close()
