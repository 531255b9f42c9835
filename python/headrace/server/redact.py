"""Keys never reach the log.

A WebSocket client may pass its key as ``?token=`` (browsers cannot set
headers on a handshake), and uvicorn logs every handshake's path with its
query. A filter on every log handler replaces the value of ``token=`` and
anything shaped like a key (``clk_…``) with ``[redacted]``, in the message
and in its arguments (uvicorn's access formatter reads the arguments).
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["RedactKeys", "install", "redact"]

_SECRET = re.compile(r"((?:^|[?&;\s\"'])token=)[^&\s\"']+|clk_[A-Za-z0-9_-]+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        return True


def install() -> None:
    """Adds the filter to every handler configured now (call it after
    logging is set up; uvicorn sets its own up when its Config is built)."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access"))]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactKeys) for f in handler.filters):
                handler.addFilter(RedactKeys())
