"""Rate-limited logging: a line repeated in a loop is written once per window.

A crash loop, a worker printing in a tight loop or a failing retry can write
the same line thousands of times a second (once 700 MB of log in minutes).
:class:`RepeatFilter` lets the first occurrence of a line through, drops the
same line (same logger, level and text) for ``window`` seconds while counting
it, and adds "(repeated N more times in S s)" to the next one it lets
through. Distinct lines are never dropped, so the filter loses no information
but the count. It is installed on the handlers of the server and of the
workers (:func:`install_rate_limit`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

__all__ = ["RepeatFilter", "install_rate_limit"]

#: Distinct lines remembered; the oldest are forgotten first.
MAX_KEYS = 1024


class RepeatFilter(logging.Filter):
    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._seen: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()  # key -> [since, count]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format is the handler's to report
            return True
        key = (record.name, record.levelno, text)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return False
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > MAX_KEYS:
                self._seen.popitem(last=False)
        if seen is not None and seen[1]:
            record.msg = f"{text} (repeated {int(seen[1])} more times in {now - seen[0]:.1f} s)"
            record.args = None
        return True


def install_rate_limit(*loggers: logging.Logger, window: float = 10.0) -> RepeatFilter:
    """Adds one shared :class:`RepeatFilter` to every handler of ``loggers``
    (once per handler)."""
    shared = RepeatFilter(window)
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RepeatFilter) for f in handler.filters):
                handler.addFilter(shared)
    return shared
