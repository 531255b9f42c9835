"""How the supervisor keeps tenants apart: one OS identity per tenant, folders
only that identity can open, a worker :class:`~headrace.supervisor.sandbox.Policy`
(Landlock, resource limits) and, on PostgreSQL, a database role per tenant.

Data-dir layout (``D`` the data dir, ``T`` a tenant, ``h(T)`` a short hash)::

    D/                     0711 server    traversable, not listable
      keys.db server.db    0600 server    never readable by workers
      tenant-ids.json      0600 server    the uid given to each tenant
      packages/T/          0750 root:T    a tenant's packages, read-only to it
      tenants/T/           0700 T         state.db, fires/, tmp/ (the worker's HOME)
      run/h(T)/            0700 T         the workers' Unix sockets

Modes (``--sandbox``): ``auto`` (the default) takes everything the host
offers; ``uid`` insists on a uid per tenant (the server must run as root);
``landlock`` runs workers as the server's user, confined by Landlock;
``off`` confines nothing, as on a host that offers nothing (resource limits
still apply). Unconfined, the server runs packages of one tenant only unless
started with ``--trust-uploads``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from headrace.server.config import ServerConfig
from headrace.supervisor.sandbox import Limits, Policy, landlock_abi

__all__ = ["Confinement", "Launch"]

log = logging.getLogger("headrace.supervisor")

#: Environment variables a worker never inherits from the server.
_SECRETS = ("HEADRACE_ADMIN_KEY", "PGPASSWORD", "PGPASSFILE")
#: System paths a worker may read besides the Python installation.
_SYSTEM = (
    "/usr", "/lib", "/lib64", "/bin", "/proc/self", "/sys/devices/system/cpu",
    "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
    "/etc/gai.conf", "/etc/host.conf", "/etc/services", "/etc/protocols", "/etc/localtime", "/etc/passwd",
    "/etc/group",
)  # fmt: skip
#: Landlock can also hide other processes' signals from a worker from ABI 6 on:
#: without a uid of its own, a worker is confined only from then.
_LANDLOCK_ALONE_ABI = 6


@dataclass(frozen=True)
class Launch:
    """How to start one worker: identity, environment, sandbox policy, store."""

    python: str
    policy: Policy
    user: int | None
    group: int | None
    env: dict[str, str]
    cwd: str
    store_url: str | None


class Confinement:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.limits = Limits(
            memory_mb=config.worker_memory_mb,
            cpu_seconds=config.worker_cpu_seconds,
            processes=config.worker_processes,
            open_files=config.worker_open_files,
            file_mb=config.worker_file_mb,
        )
        self._prepared: set[str] = set()
        self._roles: dict[str, tuple[str, str]] = {}
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._ids_lock = threading.Lock()
        self.landlock_abi = landlock_abi()
        self.python = config.worker_python or sys.executable
        self.python_paths = self._python_paths()
        mode = config.sandbox
        self.own_uids = mode in ("auto", "uid") and os.geteuid() == 0
        if mode == "uid" and not self.own_uids:
            raise ValueError("--sandbox uid: running workers as a uid per tenant needs the server to run as root")
        self.uid_first, self.uid_count = config.sandbox_uid_range
        #: A --store naming one SQLite file: every tenant's workers write that
        #: file (and its journal beside it), so they share one uid and its folder.
        self.shared_sqlite = _sqlite_folder(config.store)
        if self.own_uids and self.shared_sqlite is not None:
            if mode == "uid":
                raise ValueError("--sandbox uid: --store names one SQLite file, which workers of different uids cannot share")
            self.own_uids = False
        if self.own_uids:
            problem = self._unreachable()
            if problem is not None and mode == "uid":
                raise ValueError(f"--sandbox uid: {problem}")
            if problem is not None:
                log.warning("workers cannot run as a uid of their own: %s", problem)
                self.own_uids = False
        self.landlock = mode != "off" and self.landlock_abi >= 1
        for path in self.python_paths:
            if self.landlock and self.data_dir.is_relative_to(path):
                raise ValueError(
                    f"the data dir {self.data_dir} lies inside {path}, which workers read (it holds Python code): "
                    "Landlock would let every tenant read the data dir; move one of them"
                )
        self.unconfined_because = self._why_unconfined()

    # --- what the host offers ------------------------------------------------

    @property
    def confined(self) -> bool:
        return self.unconfined_because is None

    def _why_unconfined(self) -> str | None:
        if self.config.sandbox == "off":
            return "confinement is switched off (--sandbox off)"
        if not self.own_uids and self.landlock_abi < _LANDLOCK_ALONE_ABI:
            return (
                "workers cannot run as a uid per tenant (the server is not root) and this kernel's Landlock "
                f"(ABI {self.landlock_abi}) cannot keep them from signalling each other (ABI {_LANDLOCK_ALONE_ABI}+)"
            )
        if self.config.store is not None and self.config.store.startswith("sqlite"):
            return "--store names one SQLite file for every tenant (leave it unset: each tenant then has its own)"
        if self.config.store is not None:
            from headrace.checkpoint.postgres_roles import cannot_create_roles

            return cannot_create_roles(self.config.store)
        return None

    def describe(self) -> str:
        how = []
        if self.own_uids:
            how.append(f"a uid per tenant from {self.uid_first}")
        if self.landlock:
            how.append(f"Landlock ABI {self.landlock_abi}")
        if self.config.store is not None and self.confined:
            how.append("a PostgreSQL role per tenant")
        limits = ", ".join(f"{k} {v}" for k, v in vars(self.limits).items() if v) or "none"
        if self.confined:
            return f"workers confined per tenant: {', '.join(how)}; limits: {limits}"
        return f"workers are NOT confined ({self.unconfined_because}); {', '.join(how) or 'nothing applies'}; limits: {limits}"

    def _python_paths(self) -> list[str]:
        """Where the workers' interpreter finds its code (asked of it, with the
        environment workers get)."""
        where = "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path]))"
        env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
        try:
            out = subprocess.run(
                [self.python, "-c", where], env=env, cwd="/", capture_output=True, check=True, timeout=60
            ).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise ValueError(f"the workers' interpreter {self.python} does not run: {e}") from e
        paths = {p for p in json.loads(out) if p and p != "/" and os.path.exists(p)}
        paths.add(str(Path(os.path.realpath(self.python)).parent))
        return sorted(paths)

    def _unreachable(self) -> str | None:
        """Names the first path an unprivileged uid cannot reach, or None."""
        for path in [*self.python_paths, self.python, str(self.data_dir)]:
            p = Path(path)
            for parent in [*reversed(p.parents), p]:
                try:
                    mode = parent.stat().st_mode
                except OSError:
                    break
                if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH and parent != self.data_dir:
                    return (
                        f"{parent} (mode {stat.S_IMODE(mode):04o}) is not traversable by other users, so a worker "
                        f"cannot reach {path}; make it so (chmod o+x) or install Python and the data dir elsewhere"
                    )
        return None

    # --- identities and folders ----------------------------------------------

    def tenant_dir(self, tenant: str) -> Path:
        return self.data_dir / "tenants" / tenant

    def socket_dir(self, tenant: str) -> Path:
        # Unix socket paths are limited to 107 bytes: keep them short.
        return self.data_dir / "run" / hashlib.sha256(tenant.encode()).hexdigest()[:12]

    def uid(self, tenant: str) -> int | None:
        """The tenant's uid (allocated on first use, persisted), or None."""
        if not self.own_uids:
            return None
        path = self.data_dir / "tenant-ids.json"
        with self._ids_lock:
            ids: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
            if tenant not in ids:
                uid = max(ids.values(), default=self.uid_first - 1) + 1
                if uid >= self.uid_first + self.uid_count:
                    raise RuntimeError(f"no uid left for tenant '{tenant}' in --sandbox-uids (all {self.uid_count} used)")
                ids[tenant] = uid
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(ids, indent=1, sort_keys=True))
                tmp.chmod(0o600)
                tmp.replace(path)
            return ids[tenant]

    def secure_data_dir(self) -> None:
        """Server files become private and shared folders traversable only."""
        self.data_dir.chmod(0o711)
        for name in ("keys.db", "server.db", "state.db", "tenant-ids.json"):
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    (self.data_dir / (name + suffix)).chmod(0o600)
        for name in ("tenants", "run", "packages", "packages/.incoming"):
            (self.data_dir / name).mkdir(parents=True, exist_ok=True)
            (self.data_dir / name).chmod(0o711)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "fires").chmod(0o700)  # fire logs of older versions, until moved

    def prepare(self, tenant: str) -> None:
        """Creates the tenant's folders with their owners (once per server run),
        moving its state and fire logs out of the shared files of older versions."""
        with self._locks[tenant]:
            if tenant in self._prepared:
                return
            uid = self.uid(tenant)
            home = self.tenant_dir(tenant)
            for folder in (home, home / "fires", home / "tmp", self.socket_dir(tenant)):
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o700)
            self._migrate(tenant, home)
            if uid is not None:
                for folder in (home, self.socket_dir(tenant)):
                    _chown_tree(folder, uid, uid)
            packages = self.data_dir / "packages" / tenant
            packages.mkdir(parents=True, exist_ok=True)
            self.share_package(tenant, packages)
            self._prepared.add(tenant)

    def _migrate(self, tenant: str, home: Path) -> None:
        old_fires = self.data_dir / "fires" / tenant
        if old_fires.is_dir():
            for f in old_fires.iterdir():
                if not (home / "fires" / f.name).exists():
                    f.rename(home / "fires" / f.name)
            shutil.rmtree(old_fires, ignore_errors=True)
        shared, own = self.data_dir / "state.db", home / "state.db"
        if self.config.store is None and shared.exists() and not own.exists():
            from headrace.checkpoint.sqlite import SqliteStore

            src = sqlite3.connect(f"file:{shared}?mode=ro", uri=True)
            try:
                rows = src.execute(
                    "SELECT graph, component, data FROM headrace_checkpoint WHERE tenant = ?", (tenant,)
                ).fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                src.close()
            graphs: defaultdict[str, dict[str, bytes]] = defaultdict(dict)
            for graph, component, data in rows:
                graphs[graph][component] = bytes(data)
            if graphs:
                store = SqliteStore(own)
                try:
                    for graph, components in graphs.items():
                        store.save(tenant, graph, components)
                finally:
                    store.close()
                log.info("tenant '%s': moved the state of %d graph(s) from %s to %s", tenant, len(graphs), shared, own)

    def share_package(self, tenant: str, folder: Path) -> None:
        """Makes ``folder`` readable by the tenant's workers only (and by nobody else)."""
        uid = self.uid(tenant)
        for path in [folder, *folder.rglob("*")]:
            if path.is_symlink():
                continue
            if uid is not None:
                os.chown(path, 0, uid)
            path.chmod(0o750 if path.is_dir() else 0o640)

    # --- starting workers ------------------------------------------------------

    def launch(self, tenant: str, package: Path, *, check: bool = False, limits: Limits | None = None) -> Launch:
        """Everything needed to start a worker of ``tenant`` that runs the
        package in ``package`` (blocking: may create a database role)."""
        self.prepare(tenant)
        uid = self.uid(tenant)
        home = self.tenant_dir(tenant)
        write: tuple[str, ...] = (str(home / "tmp"),) if check else (str(home), str(self.socket_dir(tenant)))
        if not check and self.shared_sqlite is not None:
            write += (str(self.shared_sqlite),)
        policy = Policy(
            limits=self.limits.lowered_by(limits or Limits()),
            read=(*self.python_paths, *_SYSTEM, str(package)),
            write=write,
            landlock=self.landlock,
            own_uid=uid is not None,
        )
        env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
        env.update(HOME=str(home), TMPDIR=str(home / "tmp"))
        store_url = None if check else self.config.tenant_store_url(tenant)
        if not check and self.config.store is not None and not self.config.store.startswith("sqlite") and self.confined:
            store_url, env["PGPASSWORD"] = self._role(tenant)
        return Launch(self.python, policy, uid, uid, env, str(home), store_url)

    def _role(self, tenant: str) -> tuple[str, str]:
        from headrace.checkpoint.postgres_roles import provision_tenant_role

        with self._locks[tenant]:
            if tenant not in self._roles:
                assert self.config.store is not None
                self._roles[tenant] = provision_tenant_role(self.config.store, tenant)
            return self._roles[tenant]


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def _sqlite_folder(store: str | None) -> Path | None:
    """The folder of the SQLite file a ``sqlite:///PATH`` store URL names, or None."""
    if store is None or not store.startswith("sqlite:"):
        return None
    path = urlsplit(store).path
    path = path[1:] if path.startswith("/") else path  # as open_store reads it
    return Path(path).resolve().parent
