"""Restart from a checkpoint: every accumulator kind, both strategies, both
modes, SQLite and PostgreSQL. The restored run must match an uninterrupted one."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr
from headrace.checkpoint import MemoryStore

EVENTS = [("ticks", 1), ("fills", 5), ("recent", 10), ("exposure", 2), ("cfg", "a"), ("ticks", 2),
          ("fills", 7), ("exposure", -1), ("recent", 11), ("cfg", "a"), ("cfg", "b"), ("ticks", 3),
          ("fills", 1), ("fills", 2), ("recent", 12), ("recent", 13), ("ticks", 4), ("exposure", 5),
          ("ticks", 5), ("fills", 9)]  # fmt: skip


def build(strategy: str) -> hr.ComputationGraph:
    @hr.passthrough_accumulator
    def ticks(e):
        return e

    @hr.stream_accumulator(topic="fills", state={"net": 0, "seen": []})
    def exposure(e, state):
        state.value["net"] += e
        state.value["seen"].append(e)
        return state.value["net"]

    @hr.batch_accumulator(max_buffer_size=3)
    def fills(events):
        return tuple(events)

    @hr.state_accumulator(capacity=3)
    def recent(e):
        return e

    @hr.polling_accumulator(interval="1h")
    def cfg():
        return None

    g = hr.ComputationGraph(
        "book",
        accumulators=[ticks, exposure, fills, recent, cfg],
        criteria=hr.when_any(ticks, exposure, recent),
        input_strategy=strategy,  # type: ignore[arg-type]
    )

    @g.node
    def view(ticks, exposure, fills, recent, cfg):
        return (ticks, exposure, fills, recent, cfg)

    return g


def run(events: list[tuple[str, Any]], **options: Any) -> list[Any]:
    fires: list[hr.FireResult] = []
    # The stream accumulator is fed by pushes here, not by a broker.
    with hr.Runtime(build(options.pop("strategy")), on_fire=fires.append, sources=False, **options) as rt:
        for name, value in events:
            rt.push(name, value)
        rt.drain(timeout=10)
    return [f.outputs["view"] for f in fires if f.ok]


def restarted(events: list[tuple[str, Any]], split: int, **options: Any) -> list[Any]:
    return run(events[:split], **options) + run(events[split:], **options)


# Thread-mode latest collapses updates by timing, so its fire list is not
# deterministic; test_thread_latest_restores_the_final_state covers it.
@pytest.mark.parametrize(("mode", "strategy"), [("inline", "latest"), ("inline", "sequential"), ("thread", "sequential")])
def test_restart_matches_an_uninterrupted_run(store_url, tenant, mode, strategy) -> None:
    options = {"mode": mode, "strategy": strategy, "tenant": tenant}
    whole = run(EVENTS, **options)
    for split in (1, 7, 13, 19):
        again = restarted(EVENTS, split, store=store_url, **options | {"tenant": f"{tenant}-{split}"})
        assert again == whole, f"split at {split}"


def test_thread_latest_restores_the_final_state(store_url, tenant) -> None:
    options = {"store": store_url, "tenant": tenant}
    run(EVENTS[:11], mode="thread", strategy="latest", **options)
    run(EVENTS[11:], mode="thread", strategy="latest", **options)
    with hr.Runtime(build("latest"), sources=False, **options) as rt:
        result = rt.fire()
    assert result is not None
    restored = result.outputs["view"]
    expected = run(EVENTS, mode="inline", strategy="latest")[-1]
    # Every input but the batch (its flushes follow fires, which latest collapses by timing).
    assert restored[:2] + restored[3:] == expected[:2] + expected[3:]


@given(
    events=st.lists(
        st.one_of(
            st.tuples(st.just("ticks"), st.integers(0, 9)),
            st.tuples(st.just("fills"), st.integers(0, 9)),
            st.tuples(st.just("recent"), st.integers(0, 9)),
            st.tuples(st.just("exposure"), st.integers(-9, 9)),
            st.tuples(st.just("cfg"), st.sampled_from(["a", "b", None])),
        ),
        max_size=25,
    ),
    cut=st.floats(0, 1),
    strategy=st.sampled_from(["latest", "sequential"]),
    codec=st.sampled_from(["bincode", "msgpack", "json"]),
)
def test_restore_property(events, cut, strategy, codec) -> None:
    name = "prop"
    MemoryStore.clear(name)
    split = int(cut * len(events))
    options = {"mode": "inline", "strategy": strategy}
    whole = run(events, **options)
    again = restarted(events, split, store=f"memory://{name}", checkpoint_codec=codec, **options)
    assert again == whole


def test_pause_is_durable(store_url, tenant) -> None:
    fires: list[hr.FireResult] = []
    with hr.Runtime(build("sequential"), store=store_url, tenant=tenant) as rt:
        rt.pause()
        assert rt.push("ticks", 1) is None
        assert rt.stats()["paused"] and rt.stats()["pending"] == 1
    with hr.Runtime(build("sequential"), store=store_url, tenant=tenant, on_fire=fires.append) as rt:
        assert rt.stats()["paused"]
        rt.resume()
        assert [f.outputs["view"][0] for f in fires] == [1]


def test_corrupt_checkpoint_is_refused_by_name_or_discarded(tmp_path, caplog) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    with hr.Runtime(build("sequential"), store=url) as rt:
        rt.push("ticks", 1)
    with sqlite3.connect(tmp_path / "state.db") as db:
        (blob,) = db.execute("SELECT data FROM headrace_checkpoint WHERE component = 'reactor'").fetchone()
        bad = bytearray(blob)
        bad[-1] ^= 0x40
        db.execute("UPDATE headrace_checkpoint SET data = ? WHERE component = 'reactor'", (bytes(bad),))
    with pytest.raises(hr.CheckpointError, match=r"graph 'book' \(tenant 'public'\).*component 'reactor'.*corrupted"):
        hr.Runtime(build("sequential"), store=url)
    with caplog.at_level(logging.ERROR, logger="headrace"):
        with hr.Runtime(build("sequential"), store=url, on_corrupt="start_empty") as rt:
            assert rt.stats()["fire_count"] == 0
    assert "starting with empty state" in caplog.text


def test_unsupported_state_is_a_clear_checkpoint_error(tmp_path) -> None:
    @hr.stream_accumulator(topic="t", state=None)
    def weird(e, state):
        state.value = {1, 2}  # a set cannot be checkpointed
        return e

    g = hr.ComputationGraph("g", accumulators=[weird])
    g.node(name="n")(lambda weird: weird)
    # Without the check on entry, the state reaches the checkpoint.
    rt = hr.Runtime(g, store=f"sqlite:///{tmp_path}/s.db", check_checkpointable=False)
    rt.push("weird", 1)
    with pytest.raises(hr.CheckpointError, match=r"accumulator 'weird' state.value: type set cannot be checkpointed") as info:
        rt.checkpoint()
    assert isinstance(info.value, hr.UncheckpointableError)
    assert (info.value.path, info.value.value_type) == ("accumulator 'weird' state.value", "set")
    assert rt.stats()["checkpoint"]["failures"] >= 1
    with pytest.raises(hr.UncheckpointableError, match="final checkpoint not taken"):
        rt.close()


class FlakyStore(MemoryStore):
    """Fault injection: a store that fails its next `failures` saves."""

    def __init__(self, failures: int) -> None:
        super().__init__("flaky")
        MemoryStore.clear("flaky")
        super().__init__("flaky")
        self.failures = failures

    def save(self, tenant: str, graph: str, components: dict[str, bytes]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        super().save(tenant, graph, components)


def test_failing_store_is_retried_and_shows_in_health() -> None:
    store = FlakyStore(failures=3)
    with hr.Runtime(build("sequential"), store=store) as rt:
        rt.push("ticks", 1)
        rt.checkpoint(timeout=10)  # retried through three failures
        stats = rt.stats()["checkpoint"]
        assert stats["health"] == "ok" and stats["failures"] == 3 and stats["checkpoints"] >= 1
        assert stats["last_checkpoint_bytes"] > 0 and stats["last_checkpoint_seconds"] is not None
    assert store.load("public", "book")


def test_store_outage_degrades_health_while_it_lasts() -> None:
    store = FlakyStore(failures=10**9)
    with hr.Runtime(build("sequential"), store=store) as rt:
        rt.push("ticks", 1)
        with pytest.raises(hr.CheckpointError, match="not durable after"):
            rt.checkpoint(timeout=0.3)
        stats = rt.stats()
        assert stats["health"] == "degraded" and stats["checkpoint"]["health"] == "failing"
        assert "store unreachable" in stats["checkpoint"]["last_error"]
        store.failures = 0
        rt.checkpoint(timeout=10)
        assert rt.stats()["health"] == "live"


def test_periodic_checkpoints_by_count_and_interval(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with hr.Runtime(build("sequential"), store=url, checkpoint_every=5, checkpoint_interval=None) as rt:
        for i in range(12):
            rt.push("ticks", i)
        deadline = time.monotonic() + 5
        while rt.stats()["checkpoint"]["checkpoints"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rt.stats()["checkpoint"]["checkpoints"] >= 1
    with hr.Runtime(build("sequential"), mode="thread", store=url, checkpoint_every=0, checkpoint_interval="50ms", sources=False) as rt:
        rt.push("ticks", 99)
        deadline = time.monotonic() + 5
        while rt.stats()["checkpoint"]["checkpoints"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rt.stats()["checkpoint"]["checkpoints"] >= 1


def test_checkpoint_without_a_store_is_a_clear_error() -> None:
    with hr.Runtime(build("sequential")) as rt, pytest.raises(hr.HeadraceError, match="no checkpoint store"):
        rt.checkpoint()


def test_unknown_store_url() -> None:
    with pytest.raises(ValueError, match="unknown store URL 'redis://x'"):
        hr.Runtime(build("sequential"), store="redis://x")
