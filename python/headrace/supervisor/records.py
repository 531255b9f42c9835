"""Which worker processes this data dir started, so that none outlives a crash.

Before a worker starts, the supervisor writes its record (pid, process group,
the kernel's start time of the process) to ``run/workers/<key>.json``. On the
next start of the same graph, and when a server starts, every recorded
process group still alive is killed with SIGKILL — after checking it really
is the one recorded (same start time, or a group whose leader is gone but
whose members started after it), so a reused pid is never killed. Killing the
group also kills what a node forked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson

__all__ = ["WorkerRecord", "kill_stale", "kill_all_stale"]

log = logging.getLogger("headrace.supervisor")


def _start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # Field 22; the command (field 2) may hold spaces and parentheses.
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def _group_members(pgid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live process in group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append((int(entry.name), int(fields[19])))
    return members


class WorkerRecord:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, pid: int) -> None:
        """Records a just-started worker (its own process group, as started)."""
        record = {"pid": pid, "pgid": pid, "start_time": _start_time(pid), "written_at": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(record))
        tmp.replace(self.path)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def read(self) -> dict[str, Any] | None:
        try:
            value = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None


def kill_stale(record: WorkerRecord, timeout: float = 10.0) -> bool:
    """Kills the recorded worker's process group if any of it is still alive
    and really ours; waits until it is gone. True if something was killed."""
    data = record.read()
    if data is None:
        return False
    pgid, started = int(data["pgid"]), data.get("start_time")
    members = _group_members(pgid)
    if started is None or any(pid == pgid and start != int(started) for pid, start in members):
        record.clear()  # the pid now leads someone else's group
        return False
    ours = [
        pid
        for pid, start in members
        # The leader itself with its recorded start time, or processes it
        # left behind (they started after it, and the group id cannot have
        # been reused while they hold it).
        if start >= int(started)
    ]
    if not ours:
        record.clear()
        return False
    log.warning("killing %d process(es) left by an earlier worker (process group %d)", len(ours), pgid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    record.clear()
    return True


def kill_all_stale(directory: Path) -> int:
    """:func:`kill_stale` for every record in ``directory``: what a server
    that crashed left running. Returns how many groups were killed."""
    if not directory.is_dir():
        return 0
    return sum(kill_stale(WorkerRecord(p)) for p in sorted(directory.glob("*.json")))
