"""An accumulator body that checks exactly-once delivery into its own state.

Events are consecutive integers from 0. A replayed event (below `next`) or a
skipped one (above it) is recorded in `violations`, and the whole record is
checkpointed with the rest of the state.
"""

from __future__ import annotations

from typing import Any

INITIAL: dict[str, Any] = {"next": 0, "applied": 0, "violations": []}


def check(event: int, state: Any) -> int:
    s = state.value
    if event != s["next"]:
        s["violations"].append([s["next"], event])
    s["next"] = event + 1
    s["applied"] += 1
    return event
