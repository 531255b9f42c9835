"""The server's settings, each readable from an environment variable.

``headrace serve`` takes every setting as an option or from the variable named
in :data:`ENV`; the docker-compose file and the Dockerfile set the same
names, and a test checks that they agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from headrace.names import name_problem, path_under
from headrace.packages.archive import Limits

__all__ = ["ENV", "LIMITS_ENV", "ServerConfig", "ServerLimits"]

#: Setting -> the environment variable it is read from.
ENV = {
    "host": "HEADRACE_HOST",
    "port": "HEADRACE_PORT",
    "data_dir": "HEADRACE_DATA_DIR",
    "store": "HEADRACE_STORE",
    "admin_key": "HEADRACE_ADMIN_KEY",
    "admin_tenant": "HEADRACE_ADMIN_TENANT",
    "heartbeat_timeout": "HEADRACE_HEARTBEAT_TIMEOUT",
    "crash_limit": "HEADRACE_CRASH_LIMIT",
    "crash_window": "HEADRACE_CRASH_WINDOW",
    "restart_initial": "HEADRACE_RESTART_INITIAL",
    "restart_max": "HEADRACE_RESTART_MAX",
    "allowed_origins": "HEADRACE_ALLOWED_ORIGINS",
    "sandbox": "HEADRACE_SANDBOX",
    "sandbox_uids": "HEADRACE_SANDBOX_UIDS",
    "trust_uploads": "HEADRACE_TRUST_UPLOADS",
    "worker_memory_mb": "HEADRACE_WORKER_MEMORY_MB",
    "worker_cpu_seconds": "HEADRACE_WORKER_CPU_SECONDS",
    "worker_processes": "HEADRACE_WORKER_PROCESSES",
    "worker_open_files": "HEADRACE_WORKER_OPEN_FILES",
    "worker_file_mb": "HEADRACE_WORKER_FILE_MB",
    "worker_rss_mb": "HEADRACE_WORKER_RSS_MB",
    "worker_python": "HEADRACE_WORKER_PYTHON",
}

#: Limit (a field of ServerLimits) -> the environment variable it is read from.
LIMITS_ENV = {
    "max_connections": "HEADRACE_MAX_CONNECTIONS",
    "max_unacked_bytes": "HEADRACE_MAX_UNACKED_BYTES",
    "max_inflight_bytes": "HEADRACE_MAX_INFLIGHT_BYTES",
    "body_deadline": "HEADRACE_BODY_DEADLINE",
    "upload_concurrency": "HEADRACE_UPLOAD_CONCURRENCY",
    "fires_page_bytes": "HEADRACE_FIRES_PAGE_BYTES",
}
_INTS = ("port", "crash_limit", "worker_memory_mb", "worker_cpu_seconds", "worker_processes", "worker_open_files", "worker_file_mb", "worker_rss_mb")
SANDBOX_MODES = ("auto", "uid", "landlock", "off")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = Path("headrace-data")


@dataclass(frozen=True)
class ServerLimits:
    """Every bound the server enforces (documented in the README)."""

    #: JSON request bodies (inject, fire, keys).
    max_body_bytes: int = 1024 * 1024
    #: One WebSocket frame (one event, or one reactor command).
    max_frame_bytes: int = 1024 * 1024
    #: A request's headers must arrive within this many seconds of its first byte.
    header_deadline: float = 10.0
    #: Events a WebSocket producer may have sent but not yet had acknowledged;
    #: beyond it the server stops reading that socket until acks catch up.
    max_unacked_events: int = 65536
    #: The same bound in bytes of frames, per WebSocket connection ...
    max_unacked_bytes: int = 16 * 1024 * 1024
    #: ... and over every connection of the server together.
    max_inflight_bytes: int = 128 * 1024 * 1024
    #: Open connections (HTTP and WebSocket); beyond it requests get a 503.
    max_connections: int = 128
    #: A request body must arrive within this many seconds of its headers (else 408).
    body_deadline: float = 60.0
    #: Uploads checked (unpacked, loaded in a throwaway worker) at once; more wait.
    upload_concurrency: int = 2
    #: ``GET .../fires`` answers pages of at most this many bytes of fires.
    fires_page_bytes: int = 1024 * 1024
    #: Fires kept per graph for ``GET .../fires`` (they survive restarts).
    fire_log_size: int = 1000
    #: How long a push waits for room in a worker's queue before it is refused.
    push_timeout: float = 5.0
    #: Megabytes of input journal kept per graph whose package asks for one
    #: (``[journal]``; its ``keep_mb`` may only lower this).
    journal_mb: int = 1024
    package: Limits = field(default_factory=Limits)

    @property
    def max_upload_bytes(self) -> int:
        # The multipart envelope around the archive is small; 64 KiB is ample.
        return self.package.max_archive_bytes + 64 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """What ``headrace serve`` runs with."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = DEFAULT_DATA_DIR
    #: Checkpoint store URL; None: a SQLite file per tenant, ``<data_dir>/tenants/<tenant>/state.db``.
    store: str | None = None
    #: A key to register as admin of ``admin_tenant`` at start (idempotent).
    admin_key: str | None = None
    admin_tenant: str = "public"
    #: Origins a browser's WebSocket handshake may come from ("*": any). A
    #: handshake without an Origin header (not a browser) is always allowed.
    allowed_origins: tuple[str, ...] = ()
    limits: ServerLimits = field(default_factory=ServerLimits)
    #: Seconds without a heartbeat before a worker counts as hung and is killed.
    heartbeat_timeout: float = 10.0
    #: Restart backoff: first delay, cap, and the crash-loop breaker (this many
    #: crashes within ``crash_window`` seconds stop the restarts).
    restart_initial: float = 0.2
    restart_max: float = 30.0
    crash_limit: int = 5
    crash_window: float = 60.0
    #: How workers are confined (see headrace.supervisor.confinement and docs/security.md):
    #: auto, uid, landlock or off (off: as on a host that offers no confinement).
    sandbox: str = "auto"
    #: The uids given to tenants (first-last, inclusive); gid = uid.
    sandbox_uids: str = "200000-265535"
    #: Run uploads of several tenants even when workers cannot be confined.
    trust_uploads: bool = False
    #: Limits of each worker (0: none); a package's [limits] may only lower them.
    worker_memory_mb: int = 8192
    worker_cpu_seconds: int = 0
    worker_processes: int = 512
    worker_open_files: int = 4096
    worker_file_mb: int = 0
    #: Resident memory a worker may hold, checked by the supervisor every second
    #: (0: none); past it the worker is killed and restarted like a crash.
    worker_rss_mb: int = 4096
    #: The interpreter workers run (None: the server's own). Workers with a uid
    #: of their own need one that every uid can reach (not a pyenv under /root).
    worker_python: str | None = None

    @property
    def sandbox_uid_range(self) -> tuple[int, int]:
        """(first uid, how many)."""
        first, _, last = self.sandbox_uids.partition("-")
        return int(first), int(last) - int(first) + 1

    @property
    def store_url(self) -> str:
        """The configured store; without one, the single SQLite file of older
        versions (now each tenant has its own: :meth:`tenant_store_url`)."""
        return self.store or f"sqlite:///{(self.data_dir / 'state.db').resolve()}"

    def tenant_store_url(self, tenant: str) -> str:
        """The store holding ``tenant``'s checkpoints (as the server reaches it)."""
        if self.store:
            return self.store
        return f"sqlite:///{path_under(self.data_dir.resolve(), 'tenants', tenant, 'state.db')}"

    def check(self) -> None:
        """Raises ValueError naming a setting the server cannot run with."""
        scheme = self.store_url.partition(":")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"{ENV['store']}/--store {self.store!r}: the server needs a sqlite:///PATH or "
                "postgresql://... store (workers are separate processes: memory:// cannot be shared)"
            )
        if (problem := name_problem("tenant", self.admin_tenant)) is not None:
            raise ValueError(f"{ENV['admin_tenant']}/--admin-tenant: {problem}")
        if self.sandbox not in SANDBOX_MODES:
            raise ValueError(f"{ENV['sandbox']}/--sandbox {self.sandbox!r}: must be one of {', '.join(SANDBOX_MODES)}")
        try:
            first, count = self.sandbox_uid_range
        except ValueError:
            first, count = -1, 0
        if first < 1 or count < 1:
            raise ValueError(f"{ENV['sandbox_uids']}/--sandbox-uids {self.sandbox_uids!r}: must be FIRST-LAST, e.g. 200000-265535")
        for name in _INTS[2:]:
            if getattr(self, name) < 0:
                raise ValueError(f"{ENV[name]}/--{name.replace('_', '-')} {getattr(self, name)}: must be 0 (no limit) or more")
        if not 0 < self.port < 65536:
            raise ValueError(f"{ENV['port']}/--port {self.port}: not a TCP port")

    @classmethod
    def from_env(cls, **overrides: object) -> ServerConfig:
        """Settings from the environment, with explicit ``overrides`` on top."""
        values: dict[str, object] = {}
        for name, var in ENV.items():
            raw = os.environ.get(var)
            if raw is None or raw == "":
                continue
            if name in _INTS:
                values[name] = int(raw)
            elif name == "trust_uploads":
                values[name] = raw.lower() in ("1", "true", "yes", "on")
            elif name in ("heartbeat_timeout", "crash_window", "restart_initial", "restart_max"):
                values[name] = float(raw)
            elif name == "data_dir":
                values[name] = Path(raw)
            elif name == "allowed_origins":
                values[name] = tuple(o.strip() for o in raw.split(",") if o.strip())
            else:
                values[name] = raw
        limits: dict[str, object] = {}
        for name, var in LIMITS_ENV.items():
            raw = os.environ.get(var)
            if raw:
                limits[name] = float(raw) if name == "body_deadline" else int(raw)
        if limits:
            values["limits"] = ServerLimits(**limits)  # type: ignore[arg-type]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
