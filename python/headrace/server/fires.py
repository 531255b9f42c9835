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

import orjson

__all__ = ["FirePage", "page_of"]

#: Asks the worker for fires: (op argument) -> reply.
Fetch = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class FirePage:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def json(self) -> dict[str, Any]:
        return {"items": self.items, "total": len(self.items), "next_cursor": self.next_cursor}


async def page_of(fetch: Fetch, *, before: int | None, limit: int, max_bytes: int, kept: int) -> FirePage:
    """One page of fires older than fire id ``before`` (None: the newest)."""
    candidates, more = await _older_than(fetch, before, limit, kept)
    items: list[dict[str, Any]] = []
    size = 0
    for fire in candidates:
        encoded = len(orjson.dumps(fire, default=str))
        if items and (len(items) >= limit or size + encoded > max_bytes):
            more = True
            break
        items.append(fire)
        size += encoded
    next_cursor = str(items[-1]["id"]) if items and more else None
    return FirePage(items, next_cursor)


async def _older_than(fetch: Fetch, before: int | None, limit: int, kept: int) -> tuple[list[dict[str, Any]], bool]:
    """At least ``limit + 1`` fires older than ``before`` (when there are as
    many), newest first, and whether older ones may remain beyond them.

    SEAM: today the worker's ``fires`` op takes a count and answers the newest
    fires as a list, so this asks for as many as reach past ``before``: fire
    ids only grow, so at most ``newest - before + 1`` fires are newer than the
    page (the worker's reply is bounded by the fire log's size, as before).
    When the op takes ``{"before", "limit", "max_bytes"}`` and answers
    ``{"items", "more"}``, send that instead: the dict branch below already
    pages over such replies, and nothing else changes."""
    wanted = limit + 1
    if before is not None:
        newest = await fetch(1)
        if isinstance(newest, list) and newest:
            wanted += max(0, int(newest[0]["id"]) - before + 1)
    reply = await fetch(min(wanted, kept))
    if isinstance(reply, dict):
        items = list(reply.get("items", []))
        return items, bool(reply.get("more"))
    older = [f for f in reply if before is None or int(f["id"]) < before]
    return older, False
