"""Chain runs: on a graph whose fires are one straight line of sync calls,
events go through a Python loop built for the graph (a whole run for
`push_many` and thread-mode batches, one event for `push`). It must be
indistinguishable from the engine taking the events one by one
(`chain_runs=False`): the same fires, ids, outputs, failures, retries, dead
letters, counters and state after."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr

#: Event values and what they make the graph do.
SUPPRESS, ACC_RAISES, NODE_RAISES, ROUTE, UNCHECKPOINTABLE = -1, -2, -3, -4, -5
#: What an UNCHECKPOINTABLE event's boundary holds.
OPAQUE = object()


def acc_fn(event: int) -> Any:
    if event == SUPPRESS:
        return None
    if event == ACC_RAISES:
        raise ValueError("bad event")
    if event == UNCHECKPOINTABLE:
        return {"not": OPAQUE}
    return event


def graph(shape: str, strategy: str, criteria: str) -> hr.ComputationGraph:
    """`shape`: how the accumulator takes events and what the nodes read."""
    if shape == "forward":
        book = hr.passthrough("book")
    elif shape == "stream":

        def counted(event: int, state: hr.State) -> Any:
            state.value += 1
            return acc_fn(event)

        book = hr.stream_accumulator(name="book", topic="book", state=0)(counted)
    else:
        book = hr.passthrough_accumulator(name="book")(acc_fn)
    side = hr.passthrough_accumulator(name="side")(lambda e: e)
    accs = [book, side]
    crit = hr.when_all(book, side) if criteria == "all" else hr.when_any(book)
    g = hr.ComputationGraph("chain", accumulators=accs, criteria=crit, input_strategy=strategy)

    @g.node
    def scaled(book: int, side: Any) -> Any:
        if book == NODE_RAISES:
            raise RuntimeError(f"node failed on {book}")
        if book == ROUTE:
            return hr.Route("x", book)
        if isinstance(book, dict):
            return -50
        return book * 10 + (side or 0)

    @g.node
    def total(scaled: int, book: int) -> tuple[int, int]:
        return (scaled, book)

    return g


def fire_view(f: hr.FireResult) -> tuple[Any, ...]:
    error = None if f.error is None else (type(f.error).__name__, str(f.error))
    timed = None if f.node_ns is None else sorted(f.node_ns)
    return (f.id, f.trigger, dict(f.outputs), f.node, error, f.attempt, f.dead_lettered, f.ok, timed, f.inputs)


def counters(rt: hr.Runtime) -> dict[str, Any]:
    s = rt.stats()
    keep = ("events", "boundaries", "suppressed", "errors", "refused")
    return {
        "fires": s["fire_count"],
        "accs": {name: {k: a[k] for k in keep} for name, a in s["accumulators"].items()},
        "dead": [(d["accumulator"], d["stage"], d["attempts"]) for d in s["dead_letters"]],
        "pending": s["pending"],
        "failed": s["fires_failed"],
        "retries": s["retries"],
    }


def one_by_one(rt: hr.Runtime, events: list[int]) -> tuple[list[tuple[Any, ...]], str | None]:
    return one_by_one_pairs(rt, [("book", e) for e in events])


def all_at_once(rt: hr.Runtime, events: list[int]) -> tuple[list[tuple[Any, ...]], str | None]:
    try:
        return [fire_view(f) for f in rt.push_many("book", events)], None
    except hr.HeadraceError as error:
        return [], type(error).__name__


events_strategy = st.lists(
    st.one_of(st.integers(0, 9), st.sampled_from([SUPPRESS, ACC_RAISES, NODE_RAISES, ROUTE, UNCHECKPOINTABLE])), max_size=40
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_strategy,
    shape=st.sampled_from(["plain", "forward", "stream"]),
    strategy=st.sampled_from(["sequential", "latest"]),
    criteria=st.sampled_from(["any", "all"]),
    side=st.sampled_from([None, 3]),
    attempts=st.integers(1, 3),
    records=st.sampled_from(
        [{}, {"profile": True}, {"record_inputs": True}, {"profile": True, "record_inputs": True}, {"check_checkpointable": True}]
    ),
)
def test_push_many_is_pushing_one_by_one(events, shape, strategy, criteria, side, attempts, records) -> None:
    if shape == "forward":
        events = [e for e in events if e != ACC_RAISES]
    outcomes = []
    for push, chain in ((one_by_one, False), (all_at_once, True), (one_by_one, True)):
        g = graph(shape, strategy, criteria)
        options = {"max_attempts": attempts, "retry_backoff": 0, "sources": False, "chain_runs": chain, **records}
        with hr.Runtime(g, mode="inline", **options) as rt:
            if side is not None:
                rt.push("side", side)
            fires, raised = push(rt, events)
            before = counters(rt)
            # What is left waiting (a failed head, its retries) behaves the same.
            after, _ = one_by_one(rt, [5])
            outcomes.append((fires, raised, before, after, counters(rt)))
    (single, single_raised, *rest_single), (many, many_raised, *rest_many), runner_single = outcomes
    # Pushed one by one, the single-event runner gives what the engine gives.
    assert runner_single == outcomes[0]
    assert rest_many == rest_single
    if many_raised is None:
        assert many == single
        assert single_raised is None
    else:
        # push_many raises the first failure after taking every event.
        assert single_raised is not None


def chain_graph() -> hr.ComputationGraph:
    book = hr.passthrough_accumulator(name="book")(lambda e: e)
    g = hr.ComputationGraph("w", accumulators=[book], input_strategy="sequential")
    g.node(name="double")(lambda book: book * 2)
    g.node(name="out")(lambda double: double + 1)
    return g


def test_the_fire_list_of_a_run_reads_like_any_other() -> None:
    with hr.Runtime(chain_graph(), mode="inline") as rt:
        fires = rt.push_many("book", range(10))
        assert len(fires) == 10
        assert fires.outputs("out") == [2 * i + 1 for i in range(10)]
        assert [f.id for f in fires] == list(range(1, 11))
        assert fires[-1].outputs == {"out": 19}
        assert [f.outputs["out"] for f in fires[2:8:3]] == [5, 11]
        assert all(f.trigger == "book" and f.ok and f.attempt == 1 for f in fires)
        # Fires of a run share its time in order.
        starts = [f.started_at for f in fires]
        assert starts == sorted(starts)
        with pytest.raises(IndexError):
            fires[10]
        # The column is a copy: changing it changes nothing kept.
        fires.outputs("out").append("x")
        assert len(fires.outputs("out")) == 10
        # The next call's ids follow on.
        assert rt.push("book", 1).id == 11
        assert rt.stats()["fire_count"] == 11


def test_a_failure_mid_run_calls_nothing_twice() -> None:
    calls: list[int] = []
    book = hr.passthrough_accumulator(name="book")(lambda e: calls.append(e) or e)
    g = hr.ComputationGraph("w", accumulators=[book], input_strategy="sequential")

    @g.node
    def out(book: int) -> int:
        calls.append(-book)
        if book == 3:
            raise RuntimeError("three")
        return book

    with hr.Runtime(g, mode="inline", max_attempts=1) as rt:
        with pytest.raises(hr.NodeError, match="three") as raised:
            rt.push_many("book", [1, 2, 3, 4, 5])
        assert raised.value.fire.dead_lettered
        assert calls == [1, -1, 2, -2, 3, -3, 4, -4, 5, -5]
        stats = rt.stats()
        assert stats["fire_count"] == 4
        assert stats["accumulators"]["book"]["events"] == 5


def test_an_iterable_that_raises_stops_the_call_after_what_it_gave() -> None:
    def events():
        yield 1
        yield 2
        raise KeyError("source broke")

    with hr.Runtime(chain_graph(), mode="inline") as rt:
        with pytest.raises(KeyError, match="source broke"):
            rt.push_many("book", events())
        assert rt.stats()["fire_count"] == 2
        assert rt.push("book", 0).id == 3


def test_a_count_checkpoint_policy_is_kept(tmp_path, monkeypatch) -> None:
    """A run stops where a checkpoint falls due: as many checkpoints are
    handed to the writer, after the same fires, as pushing one by one gives."""
    from headrace.checkpoint.writer import CheckpointWriter

    submitted: list[tuple[str, int]] = []
    submit = CheckpointWriter.submit

    def recording(self: Any, checkpoint_id: int, *args: Any, **kwargs: Any) -> None:
        submitted.append((self.graph, checkpoint_id))
        submit(self, checkpoint_id, *args, **kwargs)

    monkeypatch.setattr(CheckpointWriter, "submit", recording)
    seen = []
    for many in (False, True):
        submitted.clear()
        store = f"sqlite:///{tmp_path / f'{many}.db'}"
        with hr.Runtime(chain_graph(), mode="inline", store=store, checkpoint_every=7, checkpoint_interval=None) as rt:
            if many:
                rt.push_many("book", range(30))
            else:
                for i in range(30):
                    rt.push("book", i)
            seen.append(list(submitted))
    assert seen[0] == seen[1] and len(seen[0]) == 4


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_a_cycle_through_the_runners_is_collected(mode: str) -> None:
    """The runners hold the graph's functions: a node that refers back to its
    runtime makes a cycle through them, which the GC must see and collect."""

    class Node:
        rt: Any = None

        def __call__(self, book: int) -> int:
            return book

    node = Node()
    ref = weakref.ref(node)
    book = hr.passthrough_accumulator(name="book")(lambda e: e)
    g = hr.ComputationGraph("w", accumulators=[book])
    g.node(name="out")(node)
    rt = hr.Runtime(g, mode=mode)
    node.rt = rt
    rt.push_many("book", range(3))
    rt.push("book", 3)
    if mode == "thread":
        rt.close()
    del rt, g, book, node
    gc.collect()
    assert ref() is None


def caller_graph(seen: list[str], raise_on: int | None = None) -> hr.ComputationGraph:
    """A graph whose node records who called it: the chain runner's loop, or
    the engine (no Python frame)."""
    import sys

    book = hr.passthrough_accumulator(name="book")(lambda e: e)
    g = hr.ComputationGraph("w", accumulators=[book], input_strategy="sequential")

    @g.node
    def out(book: int) -> int:
        try:
            caller = sys._getframe(1).f_code.co_filename
        except ValueError:  # called from the processor thread's engine code: no frame below
            caller = ""
        seen.append("runner" if caller == "<headrace chain runner>" else "engine")
        if book == raise_on:
            raise RuntimeError("boom")
        return book

    return g


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "runner"),
        ({"chain_runs": False}, "engine"),
        ({"profile": True}, "runner"),
        ({"record_inputs": True}, "runner"),
        ({"on_fire": lambda f: None}, "engine"),
        ({"check_checkpointable": True, "store": "memory://chain-check"}, "runner"),
    ],
)
def test_which_pushes_run_as_a_chain(options, expected) -> None:
    seen: list[str] = []
    with hr.Runtime(caller_graph(seen), mode="inline", **options) as rt:
        rt.push_many("book", range(3))
        # A single push takes the single-event runner.
        rt.push("book", 3)
    assert seen == [expected] * 4


def test_after_a_failure_the_run_goes_on_the_ordinary_way_until_nothing_waits() -> None:
    seen: list[str] = []
    with hr.Runtime(caller_graph(seen, raise_on=1), mode="inline", max_attempts=2, retry_backoff=0) as rt:
        with pytest.raises(hr.NodeError):
            rt.push_many("book", range(4))
        # 0 in the run; 1 fails in it; 2 retries 1 (fails: dead-lettered)
        # and then fires; 3 again in a run.
        assert seen == ["runner", "runner", "engine", "engine", "runner"]
        assert [d["attempts"] for d in rt.stats()["dead_letters"]] == [2]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_strategy,
    shape=st.sampled_from(["plain", "forward"]),
    criteria=st.sampled_from(["any", "all"]),
)
def test_thread_mode_runs_are_pushing_one_by_one(events, shape, criteria) -> None:
    """Thread mode: a batch's run of events goes through the runner, and the
    on_output sink sees what it sees when the events are taken one by one.
    (One attempt: thread mode retries on its timer, at a time of its own.)"""
    if shape == "forward":
        events = [e for e in events if e != ACC_RAISES]
    outcomes = []
    for mode in ("inline", "thread"):
        seen: list[Any] = []
        options = {"max_attempts": 1, "on_fire": hr.on_output("total", seen.append), "chain_runs": mode == "thread"}
        with hr.Runtime(graph(shape, "sequential", criteria), mode=mode, **options) as rt:
            rt.push("side", 3)
            if mode == "inline":
                one_by_one(rt, events)
            else:
                rt.push_many("book", events)
            rt.drain(timeout=30)
            outcomes.append((seen, counters(rt)))
    assert outcomes[0] == outcomes[1]


def test_a_raising_sink_is_logged_and_the_run_goes_on(caplog) -> None:
    seen: list[int] = []

    def sink(value: int) -> None:
        if value == 5:
            raise ValueError("sink broke")
        seen.append(value)

    for mode in ("inline", "thread"):
        seen.clear()
        with hr.Runtime(chain_graph(), mode=mode, on_fire=hr.on_output("out", sink)) as rt:
            rt.push_many("book", range(5))
            rt.drain(timeout=30)
            assert rt.stats()["fire_count"] == 5
        assert seen == [1, 3, 7, 9]
    assert sum("on_output callback of graph 'w' raised ValueError: sink broke" in r.message for r in caplog.records) == 2


def test_thread_mode_takes_a_batch_of_events_as_a_run() -> None:
    seen: list[str] = []
    with hr.Runtime(caller_graph(seen), mode="thread") as rt:
        rt.pause()
        rt.push_many("book", range(100))
        rt.resume()
        rt.push_many("book", range(100))
        rt.drain(timeout=30)
        assert rt.stats()["fire_count"] == 200
    # Paused, the events waited in the ordinary way; after, the queue's
    # batches went through the runner.
    assert seen[:100] == ["engine"] * 100
    assert "runner" in seen[100:]


def test_a_run_times_each_node_of_each_fire() -> None:
    import time

    book = hr.passthrough_accumulator(name="book")(lambda e: e)
    g = hr.ComputationGraph("w", accumulators=[book], input_strategy="sequential")
    g.node(name="slow")(lambda book: time.sleep(0.002 * book) or book)
    g.node(name="fast")(lambda slow: slow)
    with hr.Runtime(g, mode="inline", profile=True, record_inputs=True) as rt:
        fires = rt.push_many("book", [1, 2])
    for k, f in enumerate(fires, start=1):
        assert f.node_ns["slow"] >= 2_000_000 * k
        assert 0 <= f.node_ns["fast"] < 2_000_000
        assert f.inputs == {"book": k}


def pairs_graph(criteria: str, forward_b: bool) -> hr.ComputationGraph:
    a = hr.passthrough_accumulator(name="a")(acc_fn)
    b = hr.passthrough("b") if forward_b else hr.passthrough_accumulator(name="b")(acc_fn)
    crit = hr.when_all(a, b) if criteria == "all" else hr.when_any(a, b)
    g = hr.ComputationGraph("pairs", accumulators=[a, b], criteria=crit, input_strategy="sequential")

    @g.node
    def spread(a: Any, b: Any) -> Any:
        if NODE_RAISES in (a, b):
            raise RuntimeError("node failed")
        if ROUTE in (a, b):
            return hr.Route("x", a)
        return (a, b)

    @g.node
    def out(spread: Any) -> Any:
        return spread

    return g


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.one_of(st.integers(0, 9), st.sampled_from([SUPPRESS, ACC_RAISES, NODE_RAISES, ROUTE, UNCHECKPOINTABLE])),
        ),
        max_size=40,
    ),
    criteria=st.sampled_from(["any", "all"]),
    forward_b=st.booleans(),
    attempts=st.integers(1, 3),
    check=st.booleans(),
    bad=st.sampled_from([None, ("c", 1), 5]),
)
def test_push_pairs_runs_are_the_engine_one_by_one(pairs, criteria, forward_b, attempts, check, bad) -> None:
    """`push_pairs` through the pairs runner gives what the engine gives
    taking each pair one by one, including a bad pair or unknown name (which
    raises after the pairs before it were taken)."""
    if forward_b:
        pairs = [(n, e) for n, e in pairs if not (n == "b" and e == ACC_RAISES)]
    items: list[Any] = list(pairs)
    if bad is not None:
        items.insert(len(items) // 2, bad)
    outcomes = []
    for chain in (False, True):
        options = {"max_attempts": attempts, "retry_backoff": 0, "chain_runs": chain, "check_checkpointable": check}
        with hr.Runtime(pairs_graph(criteria, forward_b), mode="inline", **options) as rt:
            try:
                fires = [fire_view(f) for f in rt.push_pairs(items)]
                raised = None
            except (hr.HeadraceError, TypeError) as error:
                fires, raised = [], (type(error).__name__, str(error))
            before = counters(rt)
            after, _ = one_by_one_pairs(rt, [("a", 5), ("b", 6)])
            outcomes.append((fires, raised, before, after, counters(rt)))
    assert outcomes[1] == outcomes[0]


def one_by_one_pairs(rt: hr.Runtime, pairs: list[tuple[str, int]]) -> tuple[list[tuple[Any, ...]], str | None]:
    """Each pushed alone: the fires (a failed one's too) and the first error."""
    fires, first = [], None
    for name, e in pairs:
        try:
            f = rt.push(name, e)
        except hr.HeadraceError as error:
            first = first or type(error).__name__
            f = getattr(error, "fire", None)
        if f is not None:
            fires.append(fire_view(f))
    return fires, first


def test_push_pairs_go_through_one_loop_and_name_their_triggers() -> None:
    import sys

    callers: list[str] = []
    a, b = hr.passthrough_accumulator(name="a")(lambda e: e), hr.passthrough("b")
    g = hr.ComputationGraph("p", accumulators=[a, b], criteria=hr.when_all(a, b), input_strategy="sequential")

    @g.node
    def out(a: int, b: int) -> tuple[int, int]:
        callers.append(sys._getframe(1).f_code.co_filename)
        return (a, b)

    with hr.Runtime(g, mode="inline") as rt:
        fires = rt.push_pairs([("a", 1), ("b", 2), ("a", 3), ("b", 4)])
        assert [f.trigger for f in fires] == ["b", "a", "b"]
        assert fires.outputs("out") == [(1, 2), (3, 2), (3, 4)]
        assert rt.stats()["accumulators"]["a"]["boundaries"] == 2
    assert callers == ["<headrace chain runner>"] * 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.one_of(st.integers(0, 9), st.sampled_from([SUPPRESS, ACC_RAISES, NODE_RAISES, ROUTE])),
        ),
        max_size=40,
    ),
    criteria=st.sampled_from(["any", "all"]),
)
def test_thread_mode_pairs_runs_are_the_engine_one_by_one(pairs, criteria) -> None:
    """Thread mode: a batch of interleaved events goes through the pairs
    loop; the sink and the counters see what the engine's own path gives.
    (One attempt: thread mode retries on its timer, at a time of its own.)"""
    outcomes = []
    for chain in (False, True):
        seen: list[Any] = []
        options = {"max_attempts": 1, "on_fire": hr.on_output("out", seen.append), "chain_runs": chain}
        with hr.Runtime(pairs_graph(criteria, True), mode="thread", **options) as rt:
            rt.pause()
            rt.push_pairs([p for p in pairs if not (p[0] == "b" and p[1] == ACC_RAISES)])
            rt.resume()
            rt.drain(timeout=30)
            outcomes.append((seen, counters(rt)))
    assert outcomes[1] == outcomes[0]


def test_thread_mode_takes_interleaved_events_as_one_run() -> None:
    import sys

    callers: list[str] = []
    a, b = hr.passthrough_accumulator(name="a")(lambda e: e), hr.passthrough("b")
    g = hr.ComputationGraph("p", accumulators=[a, b], criteria=hr.when_all(a, b), input_strategy="sequential")

    @g.node
    def out(a: int, b: int) -> int:
        try:
            caller = sys._getframe(1).f_code.co_filename
        except ValueError:
            caller = ""
        callers.append("runner" if caller == "<headrace chain runner>" else "engine")
        return a + b

    with hr.Runtime(g, mode="thread") as rt:
        rt.push_pairs([(name, k) for k in range(200) for name in ("a", "b")])
        rt.drain(timeout=30)
        assert rt.stats()["fire_count"] == 399
    assert "runner" in callers


def test_names_never_enter_the_generated_code(caplog) -> None:
    """Names reach the runners only as bound values. Accumulator and node
    names are identifiers; a graph name may hold what Python code may not
    (`-`, `.`, a leading digit): such a graph runs through every runner as
    through the engine, and its raising sink is logged under its name."""

    def sink(value: int) -> None:
        if value == 2:
            raise ValueError("sink broke")

    tick = hr.passthrough_accumulator(name="tick")(lambda e: e)
    x = hr.passthrough("x")
    g = hr.ComputationGraph("0g-1.x", accumulators=[tick, x], criteria=hr.when_any(tick, x), input_strategy="sequential")
    g.node(name="out")(lambda x: hr.Route("r", x) if x == -1 else x)
    pairs = [("tick", 1), ("x", 2), ("tick", 3), ("x", -1), ("x", 4)]
    outcomes = []
    for chain in (False, True):
        with hr.Runtime(g, mode="inline", max_attempts=1, chain_runs=chain, on_fire=hr.on_output("out", sink)) as rt:
            with pytest.raises(hr.NodeError, match=r"node 'out' returned a Route but declares no routes") as raised:
                rt.push_pairs(pairs)
            many = rt.push_many("tick", [5, 6]).outputs("out")
            outcomes.append((str(raised.value), many, rt.push("tick", 7).outputs, counters(rt)))
    assert outcomes[1] == outcomes[0]
    assert outcomes[1][1] == [4, 4]
    # Two fires see x == 2 on each path: the engine logs both, so does the runner.
    logged = [r for r in caplog.records if "on_output callback of graph '0g-1.x' raised ValueError: sink broke" in r.message]
    assert len(logged) == 4
