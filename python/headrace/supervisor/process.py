"""One graph's worker process, seen from the supervisor: start, watch, restart.

The worker is a fresh interpreter (``subprocess``, never ``fork``: the parent
holds Rust and uvicorn threads). It says ``ready`` only after restoring its
checkpoint, so nothing is sent to a worker that has not restored. The
supervisor pings it every second on a control connection; a worker that
exits, or answers no ping for ``heartbeat_timeout``, is killed and restarted
after a jittered exponential backoff. ``crash_limit`` crashes within
``crash_window`` seconds trip the breaker: the graph stays down in state
``crash_loop`` with the last error, until a new version is uploaded or it is
restarted by hand. Workers (and the upload check) run confined to their
tenant: see :mod:`headrace.supervisor.confinement`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from headrace.packages.manifest import parse_manifest
from headrace.server.config import ServerConfig
from headrace.supervisor.client import IpcClient, WorkerUnavailable
from headrace.supervisor.confinement import Confinement, Launch
from headrace.supervisor.registry import PackageRecord
from headrace.supervisor.sandbox import Limits

__all__ = ["GraphWorker", "WorkerSpec", "check_package"]

log = logging.getLogger("headrace.supervisor")

#: How long a worker may take to load and restore before it counts as failed.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkerSpec:
    tenant: str
    graph: str
    package_dir: Path
    version: str


def _worker_command(launch: Launch, config: dict[str, Any]) -> list[str]:
    return [launch.python, "-m", "headrace.supervisor.worker", orjson.dumps(config).decode()]


def _spawn_options(launch: Launch) -> dict[str, Any]:
    """The worker's identity and environment (see headrace.supervisor.confinement);
    its sandbox it applies itself, first thing (headrace.supervisor.sandbox)."""
    return {
        "user": launch.user,
        "group": launch.group,
        "extra_groups": [] if launch.user is not None else None,
        "env": launch.env,
        "cwd": launch.cwd,
        "umask": 0o077,
    }


def package_limits(package_dir: Path) -> Limits:
    """The ``[limits]`` a package's manifest asks for."""
    return Limits(**parse_manifest((package_dir / "package.toml").read_text(encoding="utf-8")).limits)


async def check_package(package_dir: Path, launch: Launch, timeout: float = 60.0) -> dict[str, Any]:
    """Loads a package in a throwaway worker, confined as the tenant's workers
    are (uploaded code never runs in the supervisor), and returns its
    ``ok``/``error`` report."""
    proc = await asyncio.create_subprocess_exec(
        *_worker_command(launch, {"package_dir": str(package_dir), "check": True, "sandbox": launch.policy.to_json()}),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **_spawn_options(launch),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"event": "error", "code": "package_timeout", "error": f"loading the package took over {timeout:.0f} s"}
    for line in reversed(out.splitlines()):
        with contextlib.suppress(orjson.JSONDecodeError):
            report: dict[str, Any] = orjson.loads(line)
            return report
    tail = err.decode("utf-8", "replace").strip().splitlines()[-5:]
    return {"event": "error", "code": "package_error", "error": "loading the package failed: " + " | ".join(tail)}


class GraphWorker:
    """States: starting, running, restarting, crash_loop, stopped."""

    def __init__(
        self, spec: WorkerSpec, config: ServerConfig, confinement: Confinement, on_restart: Any = None
    ) -> None:
        self.spec = spec
        self.config = config
        self.confinement = confinement
        self.state = "stopped"
        self.last_error: str | None = None
        self.restarts = 0
        self.pid: int | None = None
        self.started_at: float | None = None
        self.describe: dict[str, Any] = {}
        #: Accumulator names (from the upload check; the worker confirms them).
        self.accumulators: list[str] = []
        self.record: PackageRecord | None = None
        self.data: IpcClient | None = None
        self.control: IpcClient | None = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._crashes: deque[float] = deque()
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._wanted = False
        self._ready = asyncio.Event()
        self._on_restart = on_restart

    @property
    def label(self) -> str:
        return f"graph '{self.spec.graph}' (tenant '{self.spec.tenant}')"

    @property
    def socket_path(self) -> str:
        # Unix socket paths are limited to 107 bytes: keep them short.
        run = self.confinement.socket_dir(self.spec.tenant)
        digest = hashlib.sha256(f"{self.spec.tenant}\0{self.spec.graph}".encode()).hexdigest()[:16]
        return str(run / f"{digest}.sock")

    def _config(self, launch: Launch) -> dict[str, Any]:
        home = self.confinement.tenant_dir(self.spec.tenant)
        limits = self.config.limits
        return {
            "sandbox": launch.policy.to_json(),
            "package_dir": str(self.spec.package_dir),
            "tenant": self.spec.tenant,
            "store": launch.store_url,
            "socket": self.socket_path,
            "fire_log": str(home / "fires" / f"{self.spec.graph}.db"),
            "fire_log_size": limits.fire_log_size,
            "push_timeout": limits.push_timeout,
        }

    def start(self) -> None:
        """Starts the worker and keeps it running until :meth:`stop`."""
        self._wanted = True
        self._crashes.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.spec.graph}")

    async def wait_running(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return self.state == "running"

    async def _supervise(self) -> None:
        while self._wanted:
            exit_reason = await self._run_once()
            if not self._wanted:
                break
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.config.crash_window:
                self._crashes.popleft()
            self.last_error = exit_reason
            log.error("%s: worker stopped: %s", self.label, exit_reason)
            if len(self._crashes) >= self.config.crash_limit:
                self.state = "crash_loop"
                self.last_error = (
                    f"{len(self._crashes)} crashes within {self.config.crash_window:.0f} s; "
                    f"not restarting until a new version is uploaded. Last: {exit_reason}"
                )
                log.error("%s: %s", self.label, self.last_error)
                self._ready.set()
                return
            self.state = "restarting"
            n = len(self._crashes)
            delay = min(self.config.restart_max, self.config.restart_initial * 2 ** (n - 1))
            delay *= random.uniform(0.5, 1.5)  # jitter: a fleet of crashes does not restart in step
            await asyncio.sleep(delay)
            self.restarts += 1
            if self._on_restart is not None:
                self._on_restart(self)

    async def _run_once(self) -> str:
        """Runs one worker process to its end; returns why it ended."""
        self.state = "starting"
        self._ready.clear()
        try:
            limits = package_limits(self.spec.package_dir)
            launch = await asyncio.to_thread(self.confinement.launch, self.spec.tenant, self.spec.package_dir, limits=limits)
        except Exception as e:  # noqa: BLE001 - reported as the start's failure, then retried
            return f"could not prepare the worker's sandbox: {type(e).__name__}: {e}"
        proc = await asyncio.create_subprocess_exec(
            *_worker_command(launch, self._config(launch)),
            stdin=asyncio.subprocess.PIPE,  # the worker stops when this closes
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C to the server is handled by the supervisor
            **_spawn_options(launch),
        )
        self._proc = proc
        self.pid = proc.pid
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.create_task(self._drain_stderr(proc.stderr))
        heartbeat: asyncio.Task[None] | None = None
        try:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            except TimeoutError:
                return f"did not become ready within {START_TIMEOUT:.0f} s"
            report = _parse(line)
            if report.get("event") != "ready":
                await proc.wait()
                if report.get("event") == "error":
                    return f"{report.get('code')}: {report.get('error')}"
                return self._exit_text(proc.returncode)
            self.data = IpcClient(self.socket_path, self.label)
            self.control = IpcClient(self.socket_path, self.label)
            await self.data.connect()
            await self.control.connect()
            self.describe = await self.control.call("describe")
            self.state = "running"
            self.started_at = time.time()
            self.last_error = None if not self._crashes else self.last_error
            self._ready.set()
            heartbeat = asyncio.create_task(self._heartbeat(proc))
            await proc.wait()
            return self._exit_text(proc.returncode)
        except (OSError, WorkerUnavailable) as e:
            # Usually the worker died right after saying ready: its exit is the
            # reason to report, not the broken connection.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 2.0)
            if proc.returncode is not None:
                return self._exit_text(proc.returncode)
            return f"could not connect to the worker: {e}"
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            for client in (self.data, self.control):
                if client is not None:
                    client.close("worker exited")
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            await asyncio.wait([stderr_task], timeout=1.0)
            self.pid = None

    def _exit_text(self, code: int | None) -> str:
        if code is not None and code < 0:
            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        else:
            what = f"exited with code {code}"
        tail = " | ".join(list(self.stderr_tail)[-3:])
        return what + (f"; stderr: {tail}" if tail else "")

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        wlog = logging.getLogger(f"headrace.worker.{self.spec.tenant}.{self.spec.graph}")
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(text)
            wlog.info("%s", text)

    async def _heartbeat(self, proc: asyncio.subprocess.Process) -> None:
        last_ok = time.monotonic()
        timeout = self.config.heartbeat_timeout
        progress: tuple[int, float] | None = None
        while True:
            await asyncio.sleep(1.0)
            assert self.control is not None
            try:
                ping = await self.control.call("ping", timeout=timeout)
                last_ok = time.monotonic()
                if ping.get("busy_for", 0.0) > timeout:
                    self._kill(proc, f"hung: one push has run for {ping['busy_for']:.0f} s")
                    return
                # A processor stuck in a node: events queued, none processed.
                events, depth = ping["events"], ping["queue_depth"]
                if depth > 0 and progress is not None and progress[0] == events:
                    if time.monotonic() - progress[1] > timeout:
                        self._kill(proc, f"hung: {depth} events queued and none processed for {timeout:.0f} s")
                        return
                elif depth == 0 or progress is None or progress[0] != events:
                    progress = (events, time.monotonic())
            except TimeoutError:
                if time.monotonic() - last_ok > timeout:
                    self._kill(proc, f"hung: no heartbeat for {timeout:.0f} s")
                    return
            except WorkerUnavailable:
                return

    def _kill(self, proc: asyncio.subprocess.Process, why: str) -> None:
        log.error("%s: %s; killing pid %s", self.label, why, proc.pid)
        self.stderr_tail.append(why)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    def kill(self) -> None:
        """SIGKILL the current process (tests, and `restart --force`)."""
        if self._proc is not None and self._proc.returncode is None:
            os.kill(self._proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Checkpoints and stops the worker; no restart follows."""
        self._wanted = False
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if self.control is not None and self.control.connected:
                with contextlib.suppress(Exception):
                    await self.control.call("stop", timeout=5.0)
            elif proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("%s: worker did not stop within %.0f s; killing it", self.label, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.state = "stopped"
        self._ready.set()


def _parse(line: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
