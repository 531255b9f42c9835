"""Pages of ``GET /v1/health/reactors/{name}/fires``: newest first, bounded
by a count and by bytes.

A page holds at most ``limit`` fires and at most ``fires_page_bytes`` of
encoded fires (always at least one, so a fire larger than the budget is still
readable on a page of its own). ``next_cursor`` is set when older fires may
remain: pass it as ``?cursor=`` for the next page. A cursor is the id of the
last fire of the page; the next page holds fires older than it, so fires that
happen meanwhile shift nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FirePage", "page_of"]

#: Asks the worker for fires: (op argument) -> reply.
Fetch = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class FirePage:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def json(self) -> dict[str, Any]:
        return {"items": self.items, "total": len(self.items), "next_cursor": self.next_cursor}


async def page_of(fetch: Fetch, *, before: int | None, limit: int, max_bytes: int) -> FirePage:
    """One page of fires older than fire id ``before`` (None: the newest).
    The worker's ``fires`` op pages itself, so no more than one page ever
    crosses the IPC connection."""
    reply = await fetch({"limit": limit, "before": before, "max_bytes": max_bytes})
    after = reply.get("next")
    return FirePage(list(reply.get("items", [])), None if after is None else str(after))
