"""One graph's worker process, seen from the supervisor: start, watch, restart.

The worker is a fresh interpreter (:mod:`.spawn`), in its own process group, which is killed
whenever the worker ends (so what a node forked goes with it) and recorded in
the data dir so that a server that crashed leaves nothing running behind it
(:mod:`.records`). It says ``ready`` on its status pipe only after restoring
its checkpoint, so nothing is sent to a worker that has not restored; its
stdout and stderr are drained continuously (:mod:`.streams`). The supervisor
pings it every second on a control connection; a worker that exits, or
answers no ping for ``heartbeat_timeout``, is killed and restarted after a
jittered exponential backoff. A lost connection (a broken frame) is
reconnected, or the worker restarted if that fails. ``crash_limit`` crashes
within ``crash_window`` seconds trip the breaker: the graph stays down in
state ``crash_loop`` with the last error, until a new version is uploaded or
it is restarted by hand. A worker that cannot even be spawned (no file
descriptors, no memory) does not count as a crash: the spawn is retried with
backoff until it works.
Workers (and the upload check) run confined to their tenant: see
:mod:`headrace.supervisor.confinement`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.names import path_under
from headrace.packages.manifest import parse_manifest
from headrace.server.config import ServerConfig
from headrace.supervisor.client import IpcClient, OpFailed, WorkerUnavailable
from headrace.supervisor.confinement import Confinement, Launch
from headrace.supervisor.graph_settings import graph_key, read_settings
from headrace.supervisor.protocol import EXIT_FENCED, Op
from headrace.supervisor.records import WorkerRecord, kill_stale
from headrace.supervisor.registry import PackageRecord
from headrace.supervisor.sandbox import Limits
from headrace.supervisor.spawn import check_package, kill_group, spawn
from headrace.supervisor.streams import OutputTail, drain

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


def package_limits(package_dir: Path) -> Limits:
    """The ``[limits]`` a package's manifest asks for."""
    return Limits(**parse_manifest((package_dir / "package.toml").read_text(encoding="utf-8")).limits)


_MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


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
        #: What the running worker reports as failing (fire log, store), or None.
        self.problem: str | None = None
        self.restarts = 0
        self.pid: int | None = None
        self.started_at: float | None = None
        self.describe: dict[str, Any] = {}
        #: Accumulator names (from the upload check; the worker confirms them).
        self.accumulators: list[str] = []
        self.record: PackageRecord | None = None
        self.data: IpcClient | None = None
        self.control: IpcClient | None = None
        self.output = OutputTail(logging.getLogger(f"headrace.worker.{spec.tenant}.{spec.graph}"))
        self._crashes: deque[float] = deque()
        self._spawn_failures = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._wanted = False
        self._ready = asyncio.Event()
        self._exited = asyncio.Event()
        self._on_restart = on_restart

    @property
    def label(self) -> str:
        return f"graph '{self.spec.graph}' (tenant '{self.spec.tenant}')"

    @property
    def stderr_tail(self) -> deque[str]:
        return self.output.lines

    def _key(self) -> str:
        return graph_key(self.spec.tenant, self.spec.graph)

    @property
    def socket_path(self) -> str:
        # Unix socket paths are limited to 107 bytes: keep them short.
        return str(self.confinement.socket_dir(self.spec.tenant) / f"{self._key()}.sock")

    @property
    def process_record(self) -> WorkerRecord:
        return WorkerRecord(self.config.data_dir.resolve() / "run" / "workers" / f"{self._key()}.json")

    def _config(self, launch: Launch) -> dict[str, Any]:
        home = self.confinement.tenant_dir(self.spec.tenant)
        limits = self.config.limits
        return {
            "sandbox": launch.policy.to_json(),
            "package_dir": str(self.spec.package_dir),
            "tenant": self.spec.tenant,
            "store": launch.store_url,
            "socket": self.socket_path,
            "fire_log": str(path_under(home, "fires", f"{self.spec.graph}.db")),
            "fire_log_size": limits.fire_log_size,
            "push_timeout": limits.push_timeout,
            "on_corrupt": read_settings(self.config.data_dir.resolve(), self.spec.tenant, self.spec.graph).get("on_corrupt", "refuse"),
            "journal": self._journal(home, launch),
        }

    def _journal(self, home: Path, launch: Launch) -> dict[str, Any] | None:
        """Where and how the worker records its inputs, if the package asks
        for a journal: under the tenant's folder, within the server's
        ``journal_mb`` and the worker's file size limit."""
        settings = parse_manifest((self.spec.package_dir / "package.toml").read_text(encoding="utf-8")).journal
        if settings is None:
            return None
        keep_mb = min(settings.keep_mb or self.config.limits.journal_mb, self.config.limits.journal_mb)
        # Several segments fit the budget, and none grows past what the
        # worker may write to one file.
        segment_mb = max(1, min(64, keep_mb // 4))
        if launch.policy.limits.file_mb:
            segment_mb = max(1, min(segment_mb, launch.policy.limits.file_mb // 2))
        return {
            "path": str(path_under(home, "journals", self.spec.graph)),
            "fsync": settings.fsync,
            "keep_bytes": keep_mb * _MIB,
            "segment_bytes": segment_mb * _MIB,
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
            try:
                exit_reason, spawned = await self._run_once()
            except Exception as e:  # noqa: BLE001 - the supervising task must never die
                log.exception("%s: supervising the worker failed", self.label)
                exit_reason, spawned = f"supervisor error: {type(e).__name__}: {e}", True
            if not self._wanted:
                break
            self.last_error = exit_reason
            if not spawned:
                # Not the package's fault (no fds, no memory): never a crash
                # loop; retried with backoff until the system recovers.
                self._spawn_failures += 1
                log.error("%s: could not start the worker: %s", self.label, exit_reason)
                await self._backoff(self._spawn_failures)
                continue
            self._spawn_failures = 0
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.config.crash_window:
                self._crashes.popleft()
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
            await self._backoff(len(self._crashes))
            self.restarts += 1
            if self._on_restart is not None:
                self._on_restart(self)

    async def _backoff(self, n: int) -> None:
        self.state = "restarting"
        delay = min(self.config.restart_max, self.config.restart_initial * 2 ** min(n - 1, 30))
        delay *= random.uniform(0.5, 1.5)  # jitter: a fleet of crashes does not restart in step
        await asyncio.sleep(delay)

    async def _run_once(self) -> tuple[str, bool]:
        """Runs one worker process to its end; returns why it ended, and
        whether it was started at all."""
        self.state = "starting"
        self._ready.clear()
        self._exited.clear()
        self.problem = None
        try:
            limits = package_limits(self.spec.package_dir)
            launch = await asyncio.to_thread(self.confinement.launch, self.spec.tenant, self.spec.package_dir, limits=limits)
        except Exception as e:  # noqa: BLE001 - reported as the start's failure, then retried
            return f"could not prepare the worker's sandbox: {type(e).__name__}: {e}", False
        try:
            Path(self.socket_path).parent.mkdir(parents=True, exist_ok=True)
            # An earlier worker of this graph (a crashed server's) must be gone
            # before this one claims the store.
            await asyncio.to_thread(kill_stale, self.process_record)
            spawned = await spawn(launch, self._config(launch), stdin=asyncio.subprocess.PIPE)  # stops when stdin closes
        except OSError as e:
            return f"{type(e).__name__}: {e}", False
        proc = spawned.proc
        self._proc = proc
        self.pid = proc.pid
        try:
            self.process_record.write(proc.pid)
        except OSError as e:
            log.warning("%s: cannot record the worker's pid: %s", self.label, e)
        assert proc.stdout is not None and proc.stderr is not None
        drains = [
            asyncio.create_task(drain(proc.stdout, self.output, "stdout")),
            asyncio.create_task(drain(proc.stderr, self.output, "stderr")),
        ]
        heartbeat: asyncio.Task[None] | None = None
        try:
            try:
                report = await asyncio.wait_for(spawned.report(), START_TIMEOUT)
            except TimeoutError:
                return f"did not become ready within {START_TIMEOUT:.0f} s", True
            if report is None or report.get("event") != "ready":
                code, _ = await spawned.exited()
                if report is not None and report.get("event") == "error":
                    return f"{report.get('code')}: {report.get('error')}", True
                return self._exit_text(code), True
            self.data = IpcClient(self.socket_path, self.label)
            self.control = IpcClient(self.socket_path, self.label)
            await self.data.connect()
            await self.control.connect()
            self.describe = await self.control.call(Op.DESCRIBE)
            self.state = "running"
            self.started_at = time.time()
            self.last_error = None if not self._crashes else self.last_error
            self._ready.set()
            heartbeat = asyncio.create_task(self._heartbeat(proc))
            code, late = await spawned.exited()
            if late is not None:  # a worker that ended on its own said why
                return f"{late.get('code')}: {late.get('error')}; {self._exit_text(code)}", True
            return self._exit_text(code), True
        except (OSError, WorkerUnavailable) as e:
            # Usually the worker died right after saying ready: its exit is the
            # reason to report, not the broken connection.
            with contextlib.suppress(TimeoutError):
                code, _ = await asyncio.wait_for(spawned.exited(), 2.0)
                return self._exit_text(code), True
            return f"could not connect to the worker: {e}", True
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            for client in (self.data, self.control):
                if client is not None:
                    client.close("worker exited")
            # The worker and everything it forked.
            kill_group(proc.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(spawned.exited(), 5.0)
            self.process_record.clear()
            self._exited.set()
            spawned.close()
            await asyncio.wait(drains, timeout=1.0)
            for task in drains:
                task.cancel()
            self.pid = None

    def _exit_text(self, code: int | None) -> str:
        if code is not None and code < 0:
            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        elif code == EXIT_FENCED:
            what = "stopped: a newer worker of this graph took over its checkpoint store"
        else:
            what = f"exited with code {code}"
        tail = self.output.text()
        return what + (f"; output: {tail}" if tail else "")

    async def _heartbeat(self, proc: asyncio.subprocess.Process) -> None:
        last_ok = time.monotonic()
        timeout = self.config.heartbeat_timeout
        progress: tuple[int, float] | None = None
        rss_limit = self.config.worker_rss_mb * _MIB
        while True:
            await asyncio.sleep(1.0)
            # Read by the supervisor, so a worker too busy (or too hostile) to
            # answer a ping is held to it all the same.
            rss = resident_bytes(proc.pid)
            if rss_limit and rss is not None and rss > rss_limit:
                self._kill(
                    proc,
                    f"used {rss // _MIB} MiB of resident memory, over the limit of "
                    f"{self.config.worker_rss_mb} MiB (--worker-rss-mb)",
                )
                return
            if not await self._reconnect(proc):
                return
            assert self.control is not None
            try:
                ping = await self.control.call(Op.PING, timeout=timeout)
                last_ok = time.monotonic()
                self.problem = ping.get("problem")
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
            except (WorkerUnavailable, OpFailed):
                continue  # reconnected on the next beat

    async def _reconnect(self, proc: asyncio.subprocess.Process) -> bool:
        """Replaces a connection that broke (e.g. on a bad frame) while the
        worker runs; restarts the worker if that fails. Never leaves the graph
        cut off."""
        for name in ("data", "control"):
            client: IpcClient | None = getattr(self, name)
            if client is not None and client.connected:
                continue
            if proc.returncode is not None:
                # The worker exited, but a fork of it may hold the status pipe
                # open (and so keep its end from being seen): end the group.
                kill_group(proc.pid)
                return False
            why = client.closed_reason if client is not None else "none"
            log.warning("%s: %s connection to the worker lost (%s); reconnecting", self.label, name, why)
            fresh = IpcClient(self.socket_path, self.label)
            try:
                await asyncio.wait_for(fresh.connect(), 5.0)
            except (OSError, TimeoutError) as e:
                self._kill(proc, f"the {name} connection broke ({why}) and reconnecting failed: {e}")
                return False
            setattr(self, name, fresh)
        return True

    def _kill(self, proc: asyncio.subprocess.Process, why: str) -> None:
        log.error("%s: %s; killing pid %s", self.label, why, proc.pid)
        self.output.lines.append(why)
        kill_group(proc.pid)

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
                    await self.control.call(Op.STOP, timeout=5.0)
            elif proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(self._exited.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("%s: worker did not stop within %.0f s; killing it", self.label, STOP_TIMEOUT)
                kill_group(proc.pid)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.state = "stopped"
        self._ready.set()
