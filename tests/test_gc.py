"""A runtime torn down releases the user's callables, cycles included."""

from __future__ import annotations

import gc
import weakref

import pytest

import headrace as hr


class Node:
    def __call__(self, a):
        return a


def build(mode: str, cyclic: bool) -> tuple[list[weakref.ref], list]:
    node_fn, acc_fn = Node(), Node()
    refs = [weakref.ref(node_fn), weakref.ref(acc_fn)]
    acc = hr.passthrough_accumulator(name="a")(lambda e, f=acc_fn: f(e))
    g = hr.ComputationGraph("g", accumulators=[acc])
    g.node(name="n")(lambda a, f=node_fn: f(a))
    holder: list = []

    def on_fire(result, holder=holder):
        return holder  # closes over a list that will hold the runtime: a cycle

    rt = hr.Runtime(g, mode=mode, on_fire=on_fire)
    refs.append(weakref.ref(on_fire))
    rt.push("a", {"payload": 1})
    rt.drain()
    if cyclic:
        holder.append(rt)
    rt.close()
    return refs, holder


@pytest.mark.parametrize("cyclic", [False, True])
def test_runtime_releases_callables(mode, cyclic) -> None:
    refs, holder = build(mode, cyclic)
    del holder
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_unclosed_thread_runtime_is_collected(mode) -> None:
    fn = Node()
    ref = weakref.ref(fn)
    acc = hr.passthrough_accumulator(name="a")(lambda e: e)
    g = hr.ComputationGraph("g", accumulators=[acc])
    g.node(name="n")(lambda a, f=fn: f(a))
    rt = hr.Runtime(g, mode=mode)
    rt.push("a", 1)
    del rt, g, fn
    for _ in range(50):
        gc.collect()
        if ref() is None:
            break
        import time

        time.sleep(0.02)
    assert ref() is None


def test_unclosed_runtime_with_polling_is_collected_and_stops_polling() -> None:
    import threading
    import time

    calls = []

    class Poll:
        def __call__(self):
            calls.append(1)
            return len(calls)

    fn = Poll()
    ref = weakref.ref(fn)
    acc = hr.polling_accumulator(interval="1h", name="p")(lambda f=fn: f())
    g = hr.ComputationGraph("g", accumulators=[acc])
    g.node(name="n")(lambda p: p)
    rt = hr.Runtime(g, mode="thread")
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls
    del rt, g, acc, fn
    for _ in range(100):
        gc.collect()
        pollers = [t for t in threading.enumerate() if t.name.startswith("headrace-poll-")]
        if ref() is None and not pollers:
            break
        time.sleep(0.02)
    assert ref() is None
    assert not [t for t in threading.enumerate() if t.name.startswith("headrace-poll-")]


class Marker:
    """Something held only through the event, so that its death is visible."""


def _collected(ref: weakref.ref) -> bool:
    # Thread mode: breaking the cycle stops the processor thread, which then
    # releases what it held; give it the time it takes.
    for _ in range(250):
        gc.collect()
        if ref() is None:
            return True
        import time

        time.sleep(0.02)
    return False


def _cycle_through(mode: str, where: str) -> tuple[weakref.ref, weakref.ref]:
    """A runtime holding an event (as `where` says) that holds the runtime.
    Returns weak references to the runtime and to something only the event holds."""

    def accumulate(event):
        if event.get("fail"):
            raise ValueError("refused on purpose")
        return event

    acc = hr.passthrough_accumulator(name="a")(accumulate)
    g = hr.ComputationGraph("g", accumulators=[acc])
    g.node(name="n")(lambda a: None)
    rt = hr.Runtime(g, mode=mode)
    event = {"marker": Marker(), "fail": where == "dead letter"}
    if where == "queue":
        rt.pause()  # sequential (the default): the boundary waits in the queue
    try:
        rt.push("a", event)
    except hr.AccumulatorError:
        pass  # inline mode raises it; the event is now a dead letter
    rt.drain()
    if where == "cache":
        assert rt.stats()["fire_count"] == 1
    elif where == "queue":
        assert rt.counters().pending == 1
    else:
        assert len(rt.stats()["dead_letters"]) == 1
    event["runtime"] = rt  # the cycle: runtime -> engine -> event -> runtime
    return weakref.ref(rt), weakref.ref(event["marker"])


@pytest.mark.parametrize("where", ["cache", "queue", "dead letter"])
def test_a_cycle_through_a_held_event_is_collected(mode, where) -> None:
    runtime, marker = _cycle_through(mode, where)
    assert _collected(marker), f"the event held in the {where} was never released"
    assert runtime() is None
