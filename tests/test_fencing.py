"""Fencing: two writers of one graph's checkpoint. The newest opener of a
(tenant, graph) wins and the store itself refuses an older one's saves, on
every store; in the server, a stale worker is killed before its replacement
starts, and it dies with its supervisor even inside a slow node."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

import headrace as hr
from headrace.checkpoint import MemoryStore, open_store
from headrace.errors import FencedError


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if request.param == "memory":
        name = f"fence-{uuid.uuid4().hex[:8]}"
        MemoryStore.clear(name)
        return f"memory://{name}"
    return str(request.getfixturevalue("postgres_url"))


def test_a_newer_claim_fences_the_older_writer_in_the_store(any_store: str, tenant: str) -> None:
    old, new = open_store(any_store), open_store(any_store)
    try:
        g_old = old.claim(tenant, "g")  # type: ignore[attr-defined]
        old.save(tenant, "g", {"c": b"old-1"})
        g_new = new.claim(tenant, "g")  # type: ignore[attr-defined]
        assert g_new == g_old + 1
        new.save(tenant, "g", {"c": b"new-1"})
        with pytest.raises(FencedError, match=r"graph 'g' \(tenant '.*'\) refused by .*opened this graph after") as e:
            old.save(tenant, "g", {"c": b"old-2"})
        assert (e.value.generation, e.value.current) == (g_old, g_new)
        assert new.load(tenant, "g") == {"c": b"new-1"}
        # Other graphs of the same tenant are not affected.
        old.claim(tenant, "other")  # type: ignore[attr-defined]
        old.save(tenant, "other", {"c": b"x"})
    finally:
        old.close()
        new.close()


def test_discard_deletes_the_checkpoint_and_fences_its_writer(any_store: str, tenant: str) -> None:
    writer, tool = open_store(any_store), open_store(any_store)
    try:
        writer.claim(tenant, "g")  # type: ignore[attr-defined]
        writer.save(tenant, "g", {"c": b"1"})
        tool.discard(tenant, "g")  # type: ignore[attr-defined]
        assert tool.load(tenant, "g") == {}
        with pytest.raises(FencedError):
            writer.save(tenant, "g", {"c": b"2"})
    finally:
        writer.close()
        tool.close()


def _counter() -> hr.ComputationGraph:
    @hr.stream_accumulator(topic="t", state=0)
    def n(event: int, state: Any) -> int:
        state.value += event
        return int(state.value)

    g = hr.ComputationGraph("counter", accumulators=[n])
    g.node(name="out")(lambda n: n)
    return g


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_the_older_of_two_runtimes_on_one_graph_is_refused(any_store: str, tenant: str, mode: str) -> None:
    older = hr.Runtime(_counter(), mode=mode, store=any_store, tenant=tenant, sources=False)  # type: ignore[arg-type]
    try:
        older.push("n", 1)
        older.checkpoint(timeout=10)
        with hr.Runtime(_counter(), mode=mode, store=any_store, tenant=tenant, sources=False) as newer:  # type: ignore[arg-type]
            newer.push("n", 100)
            newer.checkpoint(timeout=10)
            older.push("n", 5)
            with pytest.raises(FencedError, match="another runtime or worker opened this graph"):
                older.checkpoint(timeout=10)
            assert older.stats()["checkpoint"]["health"] == "fenced"
            assert older.stats()["health"] == "degraded"
    finally:
        older.close()  # its final checkpoint is refused too
    with hr.Runtime(_counter(), store=any_store, tenant=tenant) as again:
        assert again.push("n", 0).outputs["out"] == 101  # 1 + 100: the newer runtime's state


def test_fencing_holds_under_concurrent_claims(tmp_path: Path) -> None:
    """Four writers claim and save at once: the generation of the stored
    checkpoint never goes backwards (a stale writer never lands after a
    newer one)."""
    url = f"sqlite:///{tmp_path}/state.db"
    stores = [open_store(url) for _ in range(4)]
    stop = threading.Event()
    refused = [0]

    def writer(i: int) -> None:
        s = stores[i]
        while not stop.is_set():
            generation = s.claim("t", "g")  # type: ignore[attr-defined]
            for k in range(20):
                try:
                    s.save("t", "g", {"who": f"{i}:{generation}:{k}".encode()})
                except FencedError:
                    refused[0] += 1
                    break

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    seen: list[int] = []
    try:
        db = sqlite3.connect(tmp_path / "state.db", timeout=30)
        while len(seen) < 300:
            row = db.execute("SELECT data FROM headrace_checkpoint").fetchone()
            if row:
                seen.append(int(row[0].decode().split(":")[1]))
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in stores:
            s.close()
    backwards = [(a, b) for a, b in zip(seen, seen[1:]) if b < a]
    assert backwards == [] and refused[0] > 0
