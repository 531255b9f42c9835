"""One server per data dir.

Two servers on one data dir would both run every graph: two workers per
graph writing the same checkpoints and fire logs. The server takes an
exclusive ``fcntl`` lock on ``DATA_DIR/server.lock`` for its whole life (the
kernel releases it when the process ends, however it ends) and writes its pid
there, so a second server exits at once naming the first one's pid.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from headrace.errors import HeadraceError

__all__ = ["DataDirLocked", "lock_data_dir"]

LOCK_FILE = "server.lock"


class DataDirLocked(HeadraceError):
    """Another server holds the data dir."""

    def __init__(self, message: str, *, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Locks ``data_dir`` for this process; keep the returned file open as
    long as the server runs (closing it releases the lock).

    Raises:
        DataDirLocked: another process holds it (its pid in the message).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    f = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        text = f.read().strip()
        f.close()
        pid = int(text) if text.isdigit() else None
        holder = f"pid {pid}" if pid is not None else "a process whose pid is unknown"
        raise DataDirLocked(
            f"data dir {data_dir} is in use by another headrace server ({holder}); "
            "stop it, or give this server another --data-dir",
            pid=pid,
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
