"""Starting worker processes: a fresh interpreter (``subprocess``, never
``fork``: the parent holds Rust and uvicorn threads) in a session and process
group of its own, with a status pipe of its own (see :mod:`.protocol`), and
the throwaway worker that checks an upload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

import orjson

from headrace.supervisor.confinement import Launch
from headrace.supervisor.protocol import parse
from headrace.supervisor.streams import OutputTail, drain

__all__ = ["Spawned", "check_package", "kill_group", "spawn"]

#: The longest status line read from a worker.
MAX_STATUS_LINE = 1024 * 1024


def worker_command(launch: Launch, config: dict[str, Any]) -> list[str]:
    return [launch.python, "-m", "headrace.supervisor.worker", orjson.dumps(config).decode()]


def identity(launch: Launch) -> dict[str, Any]:
    """The worker's identity and environment (see :mod:`.confinement`); its
    sandbox it applies itself, first thing (:mod:`.sandbox`)."""
    return {
        "user": launch.user,
        "group": launch.group,
        "extra_groups": [] if launch.user is not None else None,
        "env": launch.env,
        "cwd": launch.cwd,
        "umask": 0o077,
    }


class Spawned:
    """A started worker process with its status pipe."""

    def __init__(self, proc: asyncio.subprocess.Process, status: asyncio.StreamReader, transport: Any) -> None:
        self.proc = proc
        self.status = status
        self._transport = transport

    async def report(self) -> dict[str, Any] | None:
        """The next status line (None at the end of the pipe: the worker exited)."""
        try:
            line = await self.status.readline()
        except (ValueError, asyncio.LimitOverrunError):
            return {"event": "error", "code": "bad_status", "error": "a status line over the size limit"}
        return parse(line) if line else None

    async def exited(self) -> tuple[int, dict[str, Any] | None]:
        """Waits for the worker to exit; its exit code and the last error it
        reported. ``Process.wait()`` would also wait for its stdout and stderr
        to close, which processes a node forked keep open: the end of the
        status pipe (which they do not inherit) and the exit status say it."""
        error = None
        while (report := await self.report()) is not None:
            if report.get("event") == "error":
                error = report
        for _ in range(500):  # the child watcher sets the code right after the exit
            if self.proc.returncode is not None:
                return self.proc.returncode, error
            await asyncio.sleep(0.01)
        # A fork of the worker holds the pipe and the worker still runs: end it.
        kill_group(self.proc.pid)
        while self.proc.returncode is None:
            await asyncio.sleep(0.01)
        return self.proc.returncode, error

    def close(self) -> None:
        self._transport.close()


async def spawn(launch: Launch, config: dict[str, Any], *, stdin: int) -> Spawned:
    """Starts a worker in its own session with a status pipe of its own, as
    ``launch`` says (identity, environment, sandbox policy).

    Raises:
        OSError: it could not be started (e.g. out of file descriptors).
    """
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        config = {**config, "status_fd": write_fd, "supervisor_pid": os.getpid()}
        proc = await asyncio.create_subprocess_exec(
            *worker_command(launch, config),
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,  # its own process group; a Ctrl-C to the server is the supervisor's
            **identity(launch),
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    status = asyncio.StreamReader(limit=MAX_STATUS_LINE)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(status), os.fdopen(read_fd, "rb", buffering=0)
        )
    except BaseException:
        kill_group(proc.pid)
        raise
    return Spawned(proc, status, transport)


def kill_group(pgid: int) -> None:
    """SIGKILL a worker's process group: the worker and whatever it forked."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def check_package(package_dir: Path, launch: Launch, timeout: float = 60.0) -> dict[str, Any]:
    """Loads a package in a throwaway worker, confined as the tenant's workers
    are (uploaded code never runs in the supervisor), and returns its
    ``ok``/``error`` report. What the package prints is drained and only its
    tail kept."""
    config = {"package_dir": str(package_dir), "check": True, "sandbox": launch.policy.to_json()}
    try:
        spawned = await spawn(launch, config, stdin=asyncio.subprocess.DEVNULL)
    except OSError as e:
        return {"event": "error", "code": "unavailable", "error": f"could not start the package check: {e}"}
    proc = spawned.proc
    assert proc.stdout is not None and proc.stderr is not None
    tail = OutputTail(logging.getLogger("headrace.supervisor.check"))
    drains = [asyncio.create_task(drain(proc.stdout, tail, "stdout")), asyncio.create_task(drain(proc.stderr, tail, "stderr"))]
    report: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while (line := await spawned.report()) is not None:
                report = line
            await spawned.exited()
    except TimeoutError:
        return {"event": "error", "code": "package_timeout", "error": f"loading the package took over {timeout:.0f} s"}
    finally:
        kill_group(proc.pid)
        spawned.close()
        await asyncio.wait(drains, timeout=1.0)
        for task in drains:
            task.cancel()
    if report.get("event") in ("ok", "error"):
        return report
    return {"event": "error", "code": "package_error", "error": "loading the package failed: " + tail.text(5)}
