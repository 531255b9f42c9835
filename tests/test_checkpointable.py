"""A value the checkpoint codec cannot hold: refused alone on entry
(``check_checkpointable``), or, without the check, a loud checkpoint failure."""

from __future__ import annotations

import logging
import uuid
import pytest

import headrace as hr


class Opaque:
    """No checkpoint codec can hold this."""

    def __repr__(self) -> str:
        return "Opaque()"


def store() -> str:
    return f"memory://checkpointable-{uuid.uuid4().hex[:8]}"


def passthrough_graph(strategy: str = "sequential") -> hr.ComputationGraph:
    @hr.passthrough_accumulator(name="a")
    def a(e):
        return e

    g = hr.ComputationGraph("cp", accumulators=[a], input_strategy=strategy)  # type: ignore[arg-type]
    g.node(name="out")(lambda a: a)
    return g


# --- without the check: a failed checkpoint is loud -------------------------------


def test_thread_mode_checkpoint_failure_is_counted_logged_degraded_and_raised(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="headrace")

    @hr.passthrough_accumulator(name="ref")
    def ref(e):
        return e

    g = passthrough_graph()
    g = hr.ComputationGraph("cp", accumulators=[*g.accumulators, ref], criteria=hr.when_any("a"))
    g.node(name="out")(lambda a, ref: a)
    rt = hr.Runtime(g, mode="thread", store=store(), check_checkpointable=False, checkpoint_every=1)
    rt.push("ref", {"when": Opaque()})  # stays in the input cache
    for i in range(50):
        rt.push("a", i)
        rt.drain(timeout=30)  # one processor batch each, each due for a checkpoint
    with pytest.raises(hr.UncheckpointableError) as info:
        rt.checkpoint()  # raised as soon as it is tried, not after a timeout
    assert (info.value.path, info.value.value_type) == ("value['when']", "Opaque")
    stats = rt.stats()
    assert stats["checkpoint"]["failures"] >= 50 and stats["checkpoint"]["health"] == "failing"
    assert stats["health"] == "degraded" and stats["fire_count"] == 50
    lines = [r.getMessage() for r in caplog.records if "not taken" in r.getMessage()]
    assert lines and "value['when']" in lines[0] and "Opaque" in lines[0]
    assert len(lines) <= 2, f"logged once per failure instead of rate-limited: {len(lines)} lines"
    with pytest.raises(hr.UncheckpointableError, match="final checkpoint not taken"):
        rt.close()
    assert rt.closed


def test_checkpoints_recover_once_the_value_leaves_the_state(mode) -> None:
    rt = hr.Runtime(passthrough_graph(), mode=mode, store=store(), check_checkpointable=False)
    try:
        rt.push("a", Opaque())
        with pytest.raises(hr.UncheckpointableError):
            rt.checkpoint()
        assert rt.stats()["health"] == "degraded"
        rt.push("a", 2)  # replaces the cached boundary
        rt.checkpoint()
        assert rt.stats()["health"] == "live" and rt.stats()["checkpoint"]["health"] == "ok"
    finally:
        rt.close()


def test_close_does_not_mask_the_exception_ending_a_with_block(caplog) -> None:
    with pytest.raises(KeyError, match="the real problem"):
        with hr.Runtime(passthrough_graph(), mode="thread", store=store(), check_checkpointable=False) as rt:
            rt.push("a", Opaque())
            rt.drain(timeout=30)
            raise KeyError("the real problem")
    assert "final checkpoint not taken" in caplog.text and "KeyError" in caplog.text


# --- with the check (default with a store): the event is refused alone -------------


def test_inline_push_of_an_uncheckpointable_event_raises_and_keeps_nothing() -> None:
    s = store()
    with hr.Runtime(passthrough_graph(), store=s) as rt:
        rt.push("a", {"n": 1})
        with pytest.raises(hr.UncheckpointableError) as info:
            rt.push("a", {"n": 2, "when": Opaque()})
        e = info.value
        assert isinstance(e, hr.CheckpointError) and isinstance(e, hr.HeadraceError)
        assert (e.accumulator, e.path, e.value_type) == ("a", "boundary['when']", "Opaque")
        assert rt.push("a", {"n": 3}).outputs == {"out": {"n": 3}}
        rt.checkpoint()  # everything accepted can be checkpointed
        stats = rt.stats()
        assert stats["accumulators"]["a"]["refused"] == 1 and stats["health"] == "live"
        letter = stats["dead_letters"][0]
        assert letter["stage"] == "checkpoint" and letter["value"].startswith("<not checkpointable: {'n': 2")
    with hr.Runtime(passthrough_graph(), store=s) as rt:
        assert rt.fire().outputs == {"out": {"n": 3}}


def test_thread_mode_dead_letters_the_refused_event_and_keeps_checkpointing(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="headrace")
    fires: list[hr.FireResult] = []
    with hr.Runtime(passthrough_graph(), mode="thread", store=store(), on_fire=fires.append) as rt:
        for i in range(20):
            rt.push("a", Opaque() if i % 2 else i)
        rt.drain(timeout=30)
        rt.checkpoint()
        stats = rt.stats()
    assert [f.outputs["out"] for f in fires] == list(range(0, 20, 2))
    assert stats["accumulators"]["a"]["refused"] == 10 and stats["checkpoint"]["failures"] == 0
    assert [d["stage"] for d in stats["dead_letters"]] == ["checkpoint"] * 10
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert 1 <= len(refusals) <= 2, "refusals are logged rate-limited"


def test_every_kind_of_state_is_checked(mode) -> None:
    @hr.batch_accumulator(max_buffer_size=3, name="batch")
    def batch(events):
        return len(events)

    @hr.state_accumulator(capacity=3, name="window")
    def window(e):
        return e

    states: list[hr.State] = []

    @hr.stream_accumulator(topic="t", state=0, name="stream")
    def stream(e, state):
        states.append(state)
        state.value = e  # an Opaque event leaves an uncheckpointable state
        return "ok"

    g = hr.ComputationGraph("kinds", accumulators=[batch, window, stream])
    g.node(name="out")(lambda batch, window, stream: (batch, window, stream))
    with hr.Runtime(g, mode=mode, store=store(), sources=False) as rt:
        for name in ("batch", "window", "stream"):
            rt.push(name, 1)
            if mode == "inline":
                with pytest.raises(hr.UncheckpointableError) as info:
                    rt.push(name, Opaque())
                assert info.value.accumulator == name
            else:
                rt.push(name, Opaque())
        rt.drain(timeout=30)
        rt.checkpoint()  # nothing uncheckpointable got in
        stats = rt.stats()
        assert states[-1].value == 1, "the stream state was put back"
    assert {n: a["refused"] for n, a in stats["accumulators"].items()} == {"batch": 1, "window": 1, "stream": 1}


def test_the_check_is_off_without_a_store_and_can_be_forced(mode) -> None:
    with hr.Runtime(passthrough_graph(), mode=mode) as rt:
        rt.push("a", Opaque())  # nothing is checkpointed: nothing to refuse
        rt.drain(timeout=30)
        assert rt.stats()["accumulators"]["a"]["refused"] == 0
    with hr.Runtime(passthrough_graph(), mode=mode, check_checkpointable=True) as rt:
        if mode == "inline":
            with pytest.raises(hr.UncheckpointableError):
                rt.push("a", Opaque())
        else:
            rt.push("a", Opaque())
        rt.drain(timeout=30)
        assert rt.stats()["accumulators"]["a"]["refused"] == 1

