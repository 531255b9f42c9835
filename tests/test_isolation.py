"""Tenants cannot reach each other through their code (docs/security.md).

A real ``headrace serve`` as root with ``--sandbox uid`` (a uid per tenant,
Landlock, resource limits). Tenant ``beta`` runs ``victim`` with state and
fires; tenant ``alpha`` uploads hostile packages. Each hostile package also
checks something it *may* do, so a probe that fails for an unrelated reason
(an import error, a wrong path) shows up as a failure, not as a pass.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_util import Server, new_key, package_bytes

import headrace
from headrace.server.auth import KeyStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a uid per tenant needs root (CI runs as root)")

VICTIM = """
import headrace as hr

@hr.passthrough_accumulator
def secret(event):
    return event

graph = hr.ComputationGraph("victim", accumulators=[secret])

@graph.node
def kept(secret):
    return secret
"""

#: A graph whose node returns what its import-time probes found (``RESULTS``).
PROBE = """
import json, os, socket, sqlite3
import headrace as hr

T = json.loads({targets!r})

def attempt(fn):
    try:
        fn()
        return "ok"
    except Exception as e:
        return "denied: " + type(e).__name__ + ": " + str(e)

def read(path):
    return lambda: open(path, "rb").read(1)

def append(path):
    def go():
        with open(path, "ab") as f:
            f.write(b"x")
    return go

def mint_admin_key():
    db = sqlite3.connect(T["keys"])
    db.execute("INSERT INTO headrace_api_key VALUES (?, ?, 'beta', 'admin', '', '', 0, NULL)", (T["nonce"], T["nonce"]))
    db.commit()

def connect(path):
    def go():
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
    return go

RESULTS = {{
    "read_state": attempt(read(T["state"])),
    "read_fires": attempt(read(T["fires"])),
    "read_package": attempt(read(T["package"])),
    "read_keys": attempt(read(T["keys"])),
    "write_keys": attempt(append(T["keys"])),
    "mint_admin_key": attempt(mint_admin_key),
    "read_server_db": attempt(read(T["server_db"])),
    "write_data_dir": attempt(append(T["data_dir"] + "/evil")),
    "write_tmp": attempt(append("/tmp/headrace-evil-" + T["nonce"])),
    "read_victim_environ": attempt(read("/proc/%d/environ" % T["victim_pid"])),
    "signal_victim": attempt(lambda: os.kill(T["victim_pid"], 0)),
    "connect_victim": attempt(connect(T["socket"])),
    "admin_key_in_env": "absent" if "HEADRACE_ADMIN_KEY" not in os.environ else "present",
    "write_own_tmp": attempt(append(os.environ.get("TMPDIR", "/tmp") + "/mine-" + T["nonce"])),
    "uid": os.getuid(),
}}
{extra}

@hr.passthrough_accumulator
def {graph}_in(event):
    return event

graph = hr.ComputationGraph("{graph}", accumulators=[{graph}_in])

@graph.node
def report({graph}_in):
    return RESULTS
"""

DENIED = (
    "read_state", "read_fires", "read_package", "read_keys", "write_keys", "mint_admin_key", "read_server_db",
    "write_data_dir", "write_tmp", "read_victim_environ", "signal_victim", "connect_victim",
)  # fmt: skip


def python_for_other_uids() -> tuple[str, str]:
    """An interpreter for the workers that an unprivileged uid can run, and the
    PYTHONPATH it needs: this one, or the system's of the same version, with
    the packages this test imports (headrace as installed, and its
    dependencies). A pyenv under /root (mode 0700), or a checkout in a folder
    other uids cannot traverse, cannot serve other uids: then those packages
    are copied once to a folder they can read."""
    global _OTHER_UIDS_PYTHON
    if _OTHER_UIDS_PYTHON is None:
        installed = [str(Path(headrace.__file__).resolve().parents[1]), sysconfig.get_paths()["purelib"]]
        found = _try_pythons(os.pathsep.join(dict.fromkeys(installed)))
        if isinstance(found, list):
            found = _try_pythons(_readable_copy(installed))
        if isinstance(found, list):
            pytest.fail(f"no Python that uid 65534 can run: {found}")
        _OTHER_UIDS_PYTHON = found
    return _OTHER_UIDS_PYTHON


_OTHER_UIDS_PYTHON: tuple[str, str] | None = None


def _try_pythons(pythonpath: str) -> tuple[str, str] | list[str]:
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    problems = []
    for python in candidates:
        try:
            r = subprocess.run(
                [python, "-c", "import headrace.server.app, psycopg"],
                user=65534,
                group=65534,
                extra_groups=[],
                cwd="/",
                env={**os.environ, "PYTHONPATH": pythonpath},
                capture_output=True,
            )
        except OSError as e:
            problems.append(f"{python}: {e}")
            continue
        if r.returncode == 0:
            return python, pythonpath
        problems.append(f"{python}: {r.stderr.decode()[-300:]}")
    return problems


def _readable_copy(paths: list[str]) -> str:
    """A world-readable copy of ``paths`` (site-packages folders), removed at exit."""
    base = Path(tempfile.mkdtemp(prefix="headrace-worker-python-", dir="/tmp"))
    atexit.register(shutil.rmtree, base, True)
    copies = []
    for i, path in enumerate(paths):
        target = base / str(i)
        # Test tools are not needed by workers and make up most of the bytes.
        shutil.copytree(path, target, ignore=shutil.ignore_patterns("mypy*", "hypothesis*", "_pytest", "pip", "__pycache__"))
        copies.append(str(target))
    for folder, dirs, files in os.walk(base):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o755)
    return os.pathsep.join(copies)


class Tenants:
    def __init__(self, server: Server, keys: dict[str, str]) -> None:
        self.server = server
        self.keys = keys

    def upload(self, tenant: str, archive: bytes) -> Any:
        return self.server.upload(archive, tenant, key=self.keys[tenant])

    def deploy(self, tenant: str, archive: bytes, graph: str) -> dict[str, Any]:
        return self.server.deploy(archive, graph, tenant, key=self.keys[tenant])

    def inject(self, tenant: str, accumulator: str, event: Any) -> Any:
        return self.server.http.post(
            f"/v1/health/accumulators/{accumulator}/inject", json={"event": event}, headers=self.server.auth(self.keys[tenant])
        )

    def last_fire(self, tenant: str, graph: str) -> dict[str, Any]:
        def newest() -> Any:
            r = self.server.http.get(f"/v1/health/reactors/{graph}/fires", params={"limit": 1}, headers=self.server.auth(self.keys[tenant]))
            return r.status_code == 200 and r.json()["items"] and r.json()["items"][0]

        fire: dict[str, Any] = self.server.wait_for(newest, what=f"a fire of {graph}")
        return fire


@pytest.fixture(scope="module")
def tenants() -> Iterator[Tenants]:
    python, pythonpath = python_for_other_uids()
    base = Path(tempfile.mkdtemp(prefix="headrace-isolation-", dir="/tmp"))
    base.chmod(0o711)  # the workers' uids must traverse it
    data = base / "data"
    data.mkdir()
    keys = {"alpha": new_key(), "beta": new_key()}
    store = KeyStore(data / "keys.db")
    store.ensure(keys["beta"], "beta", "admin")
    store.close()
    first = 400000 + random.randrange(1000) * 100  # apart from any other server's uids
    env = {
        "PYTHONPATH": pythonpath,
        "HEADRACE_ADMIN_TENANT": "alpha",
        "HEADRACE_SANDBOX": "uid",
        "HEADRACE_SANDBOX_UIDS": f"{first}-{first + 99}",
        "HEADRACE_WORKER_MEMORY_MB": "1024",
        "HEADRACE_WORKER_PYTHON": python,
    }
    server = Server(data, env=env, key=keys["alpha"]).start()
    try:
        t = Tenants(server, keys)
        t.deploy("beta", package_bytes("victim", VICTIM), "victim")
        assert t.inject("beta", "secret", {"password": "hunter2"}).status_code == 200
        assert t.last_fire("beta", "victim")["outputs"] == {"kept": {"password": "hunter2"}}
        yield t
    except BaseException:
        print(server.log())  # shown with the failure
        raise
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)


def targets(t: Tenants) -> dict[str, Any]:
    data = t.server.data_dir.resolve()
    (package,) = (data / "packages" / "beta").rglob("graph_module.py")
    (socket_path,) = _victim_socket(data)
    found = {
        "state": str(data / "tenants" / "beta" / "state.db"),
        "fires": str(data / "tenants" / "beta" / "fires" / "victim.db"),
        "package": str(package),
        "keys": str(data / "keys.db"),
        "server_db": str(data / "server.db"),
        "data_dir": str(data),
        "nonce": uuid.uuid4().hex,
        "victim_pid": t.server.graph("victim", key=t.keys["beta"])["worker"]["pid"],
        "socket": socket_path,
    }
    for name in ("state", "fires", "package", "keys", "server_db", "socket"):
        assert Path(found[name]).exists(), f"{name}: {found[name]} is not there to attack"
    return found


def _victim_socket(data: Path) -> list[str]:
    name = hashlib.sha256(b"beta\0victim").hexdigest()[:16] + ".sock"  # as GraphWorker.socket_path names it
    return [str(p) for p in (data / "run").rglob(name)]


def probe_source(t: Tenants, graph: str, extra: str = "") -> str:
    return PROBE.format(targets=json.dumps(targets(t)), graph=graph, extra=extra)


#: How a refusal reads: the OS (or SQLite opening the file) said no; anything else,
#: such as a file that is not there, would prove nothing.
REFUSED = ("denied: PermissionError", "denied: OperationalError: unable to open database file")


def assert_confined(results: dict[str, Any]) -> None:
    allowed = {k: v for k, v in results.items() if k in DENIED and not str(v).startswith(REFUSED)}
    assert not allowed, f"a tenant's code reached another's: {allowed}"
    assert results["write_own_tmp"] == "ok" and results["admin_key_in_env"] == "absent", results


def assert_tenant_uid(t: Tenants, results: dict[str, Any]) -> None:
    ids = json.loads((t.server.data_dir / "tenant-ids.json").read_text())
    assert results["uid"] == ids["alpha"] != ids["beta"], (results["uid"], ids)


def test_workers_of_one_tenant_cannot_reach_another_or_the_server(tenants: Tenants) -> None:
    t = tenants
    t.deploy("alpha", package_bytes("prober", probe_source(t, "prober")), "prober")
    assert t.inject("alpha", "prober_in", 1).status_code == 200
    results = t.last_fire("alpha", "prober")["outputs"]["report"]
    assert_confined(results)
    assert_tenant_uid(t, results)
    # The key store is as it was: no key was minted, the victim still runs.
    store = KeyStore(t.server.data_dir / "keys.db")
    try:
        assert [g.tenant for g in store.list()].count("beta") == 1
    finally:
        store.close()
    assert t.server.graph("victim", key=t.keys["beta"])["health"]["state"] == "running"
    mode = (t.server.data_dir / "keys.db").stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)


def test_the_upload_check_is_confined_like_the_workers(tenants: Tenants) -> None:
    t = tenants
    # The check runs the import: the package reports what it found by failing it.
    source = probe_source(t, "checked", extra="raise RuntimeError('RESULTS=' + json.dumps(RESULTS))")
    r = t.upload("alpha", package_bytes("checked", source))
    assert r.status_code == 400, r.text
    results = json.loads(r.json()["error"].partition("RESULTS=")[2])
    assert_confined(results)
    assert_tenant_uid(t, results)
    assert not list(Path("/tmp").glob("headrace-evil-*"))


def _run_node(t: Tenants, graph: str, body: str, limits: str) -> None:
    source = f"""
import os, time
import headrace as hr

@hr.passthrough_accumulator
def {graph}_in(event):
    return event

graph = hr.ComputationGraph("{graph}", accumulators=[{graph}_in])

@graph.node
def work({graph}_in):
{textwrap.indent(textwrap.dedent(body), "    ")}
"""
    t.deploy("alpha", package_bytes(graph, source, extra_manifest=limits), graph)
    r = t.inject("alpha", f"{graph}_in", 1)
    assert r.status_code in (200, 503), r.text  # 503: the push was not acknowledged (a worker killed by a limit)


def _victim_unharmed(t: Tenants) -> None:
    value = {"n": uuid.uuid4().hex}
    assert t.inject("beta", "secret", value).status_code == 200
    assert t.last_fire("beta", "victim")["outputs"] == {"kept": value}


def test_memory_limit_fails_the_node_not_the_other_tenant(tenants: Tenants) -> None:
    t = tenants
    _run_node(t, "hog", "return len(bytearray(400 * 1024 * 1024))", "[limits]\nmemory_mb = 200\n")
    fire = t.last_fire("alpha", "hog")
    assert fire["ok"] is False and "MemoryError" in json.dumps(fire), fire
    _victim_unharmed(t)


def test_process_limit_stops_a_fork_bomb(tenants: Tenants) -> None:
    t = tenants
    body = """
    started = 0
    try:
        for _ in range(500):
            if os.fork() == 0:
                time.sleep(3)
                os._exit(0)
            started += 1
    except OSError as e:
        return {"started": started, "error": type(e).__name__}
    return {"started": started, "error": None}
    """
    _run_node(t, "forker", body, "[limits]\nprocesses = 60\n")
    result = t.last_fire("alpha", "forker")["outputs"]["work"]
    assert result["error"] == "BlockingIOError" and result["started"] < 60, result
    _victim_unharmed(t)


def test_cpu_time_limit_kills_a_burning_worker(tenants: Tenants) -> None:
    t = tenants
    _run_node(t, "burner", "while True:\n    pass", "[limits]\ncpu_seconds = 2\n")
    detail = t.server.wait_for(
        lambda: (d := t.server.graph("burner", key=t.keys["alpha"])).get("last_error") and "SIGXCPU" in d["last_error"] and d,
        what="the burner killed by its CPU limit",
    )
    assert detail["health"]["state"] in ("restarting", "starting", "running", "crash_loop"), detail
    _victim_unharmed(t)


def test_a_package_may_not_ask_for_more_than_the_server_allows(tenants: Tenants) -> None:
    r = tenants.upload("alpha", package_bytes("greedy", VICTIM.replace('"victim"', '"greedy"'), extra_manifest="[limits]\nmemory_mb = 999999\n"))
    assert r.status_code == 400 and r.json()["code"] == "bad_manifest", r.text
    assert "limits.memory_mb" in r.text
