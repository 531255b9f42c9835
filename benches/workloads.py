"""The workloads, each beside the plain-Python baseline measured in the same run.

The baseline calls the very same user functions (accumulator, compute, emit)
directly in a loop; every headrace figure is reported as a ratio to it.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import headrace as hr
from benches.interleave import (
    LATENCY_ROUNDS,
    Rounds,
    interleaved,
    interleaved_blocks,
    p50_ratio_range,
    pooled,
    split,
)

# --- the user's functions, shared by headrace and the baselines -----------------------


def orderbook_fn(event: dict[str, float]) -> dict[str, float]:
    return {"bid": event["best_bid"], "ask": event["best_ask"]}


def compute_fn(orderbook: dict[str, float]) -> dict[str, float]:
    mid = (orderbook["bid"] + orderbook["ask"]) / 2
    spread = orderbook["ask"] - orderbook["bid"]
    return {"mid": mid, "spread": spread, "spread_bps": spread / mid * 10_000}


def emit_fn(compute: dict[str, float]) -> float:
    return compute["spread_bps"]


def pair_compute_fn(venue_a: dict[str, float], venue_b: dict[str, float]) -> dict[str, float]:
    bid = max(venue_a["bid"], venue_b["bid"])
    ask = min(venue_a["ask"], venue_b["ask"])
    mid = (bid + ask) / 2
    return {"mid": mid, "spread": ask - bid, "spread_bps": (ask - bid) / mid * 10_000}


def events(n: int, seed: int = 7) -> list[dict[str, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        bid = 100 + rng.uniform(-1, 1)
        out.append({"best_bid": bid, "best_ask": bid + rng.uniform(0.01, 0.2)})
    return out


# --- graphs ---------------------------------------------------------------------------


def book(event: dict[str, float]) -> dict[str, float]:
    """An event already in the shape the nodes want (what orderbook_fn returns)."""
    return orderbook_fn(event)


def w1_graph(forward: bool = False) -> hr.ComputationGraph:
    """With ``forward``, the accumulator is ``hr.passthrough`` (no function):
    fed book-shaped events it computes what orderbook_fn on raw events does."""
    orderbook = hr.passthrough("orderbook") if forward else hr.passthrough_accumulator(name="orderbook")(orderbook_fn)
    g = hr.ComputationGraph("w1", accumulators=[orderbook], criteria=hr.when_any(orderbook), input_strategy="sequential")
    g.node(name="compute")(compute_fn)
    g.node(name="emit")(emit_fn)
    return g


async def enrich_fn(gate: dict[str, float]) -> dict[str, float]:
    return gate


async def enrich_compute_fn(compute: dict[str, float]) -> dict[str, float]:
    return compute


def w1_idle_branch_graph(async_branch: bool) -> hr.ComputationGraph:
    """W1 with a router after compute whose second branch is never taken:
    `enrich` there is async or not, so the two graphs differ only in that."""
    orderbook = hr.passthrough_accumulator(name="orderbook")(orderbook_fn)
    g = hr.ComputationGraph("w1_idle", accumulators=[orderbook], criteria=hr.when_any(orderbook), input_strategy="sequential")
    g.node(name="compute")(compute_fn)
    g.node(name="gate", routes={"emit": ["emit"], "enrich": ["enrich"]})(lambda compute: hr.Route("emit", compute))
    g.node(name="emit")(lambda gate: emit_fn(gate))
    g.node(name="enrich")(enrich_fn if async_branch else (lambda gate: gate))
    return g


def w1_async_graph() -> hr.ComputationGraph:
    """W1 with an async node after compute that runs on every fire (and
    returns at once: what is measured is the engine's cost of awaiting it)."""
    orderbook = hr.passthrough_accumulator(name="orderbook")(orderbook_fn)
    g = hr.ComputationGraph("w1_async", accumulators=[orderbook], criteria=hr.when_any(orderbook), input_strategy="sequential")
    g.node(name="compute")(compute_fn)
    g.node(name="enrich")(enrich_compute_fn)
    g.node(name="emit")(lambda enrich: emit_fn(enrich))
    return g


def w2_graph(forward: bool = False) -> hr.ComputationGraph:
    if forward:
        a, b = hr.passthrough("venue_a"), hr.passthrough("venue_b")
    else:
        a = hr.passthrough_accumulator(name="venue_a")(orderbook_fn)
        b = hr.passthrough_accumulator(name="venue_b")(orderbook_fn)
    g = hr.ComputationGraph("w2", accumulators=[a, b], criteria=hr.when_all(a, b), input_strategy="sequential")
    g.node(name="compute")(pair_compute_fn)
    g.node(name="emit")(emit_fn)
    return g


# --- measurements ---------------------------------------------------------------------


@dataclass
class Result:
    workload: str
    variant: str
    value: float
    unit: str
    baseline: float
    #: ratio direction: "higher" (throughput) or "lower" (latency) is better.
    better: str
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


def rate(n: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def rates(n: int, fns: dict[str, Callable[[], object]]) -> dict[str, Callable[[], float]]:
    """Each variant as a callable returning its events/s over `n` events."""
    return {name: (lambda fn=fn: rate(n, fn)) for name, fn in fns.items()}  # type: ignore[misc]


def throughput(rounds: Rounds, workload: str, variant: str, name: str, base: str, target: str) -> Result:
    """A throughput row: medians over interleaved rounds, and the range of the
    per-round ratios to `base`."""
    return Result(
        workload, variant, rounds.median(name), "events/s", rounds.median(base), "higher", target,
        {"runs": len(rounds.figures[name]), "ratio_range": rounds.ratio_range(name, base)},
    )


def w1(n: int, runs: int) -> list[Result]:
    data = events(n)
    books = [book(e) for e in data]

    def baseline() -> None:
        out = None
        for e in data:
            out = emit_fn(compute_fn(orderbook_fn(e)))
        assert out is not None

    def baseline_append() -> None:
        out: list[float] = []
        append = out.append
        for e in data:
            append(emit_fn(compute_fn(orderbook_fn(e))))
        assert len(out) == n

    def baseline_book_append() -> None:
        out: list[float] = []
        append = out.append
        for e in books:
            append(emit_fn(compute_fn(e)))
        assert len(out) == n

    def inline() -> None:
        with hr.Runtime(w1_graph(), mode="inline") as rt:
            fires = rt.push_many("orderbook", data)
            assert fires is not None and len(fires) == n

    def inline_results() -> None:
        with hr.Runtime(w1_graph(), mode="inline") as rt:
            fires = rt.push_many("orderbook", data)
            assert fires is not None
            out = [f.outputs["emit"] for f in fires]
            assert len(out) == n

    def inline_column(forward: bool) -> Callable[[], None]:
        def run() -> None:
            with hr.Runtime(w1_graph(forward), mode="inline") as rt:
                fires = rt.push_many("orderbook", books if forward else data)
                assert fires is not None
                assert len(fires.outputs("emit")) == n

        return run

    def thread() -> None:
        with hr.Runtime(w1_graph(), mode="thread") as rt:
            rt.push_many("orderbook", data)
            rt.drain()
            assert rt.stats()["fire_count"] == n

    def thread_sink(forward: bool) -> Callable[[], None]:
        def run() -> None:
            out: list[float] = []
            with hr.Runtime(w1_graph(forward), mode="thread", on_fire=hr.on_output("emit", out.append)) as rt:
                rt.push_many("orderbook", books if forward else data)
                rt.drain()
            assert len(out) == n

        return run

    def idle_branch(async_branch: bool) -> None:
        with hr.Runtime(w1_idle_branch_graph(async_branch), mode="inline") as rt:
            fires = asyncio.run(rt.apush_many("orderbook", data)) if async_branch else rt.push_many("orderbook", data)
            assert fires is not None and len(fires) == n

    def profiled() -> None:
        with hr.Runtime(w1_graph(), mode="inline", profile=True) as rt:
            fires = rt.push_many("orderbook", data)
            assert fires is not None and len(fires) == n

    r = interleaved(runs, rates(n, {
        "base": baseline, "base_append": baseline_append, "base_book": baseline_book_append,
        "inline": inline, "profiled": profiled, "thread": thread,
        "inline_results": inline_results, "inline_column": inline_column(False), "thread_sink": thread_sink(False),
        "inline_column_fwd": inline_column(True), "thread_sink_fwd": thread_sink(True),
        "idle_sync": lambda: idle_branch(False), "idle_async": lambda: idle_branch(True),
    }))
    tgt_i, tgt_t = ">= 0.9x", ">= 0.8x"
    # Profiling's cost per fire: inline with and without it, per round.
    extra_ns = statistics.median(
        1e9 / p - 1e9 / i for i, p in zip(r.figures["inline"], r.figures["profiled"], strict=True)
    )
    profile_row = throughput(r, "W1 throughput", "inline, profile=True", "profiled", "base", f"<= +250 ns/fire (+{extra_ns:.0f} ns)")
    profile_row.extra["extra_ns_per_fire"] = round(extra_ns, 1)
    return [
        throughput(r, "W1 throughput", "inline push_many", "inline", "base", tgt_i),
        profile_row,
        throughput(r, "W1 throughput", "thread push_many", "thread", "base", tgt_t),
        throughput(r, "W1 + results", "inline FireResult", "inline_results", "base_append", "report"),
        throughput(r, "W1 + results", "inline .outputs()", "inline_column", "base_append", tgt_i),
        throughput(r, "W1 + results", "thread on_output", "thread_sink", "base_append", tgt_t),
        throughput(r, "W1 no acc fn", "inline .outputs()", "inline_column_fwd", "base_book", tgt_i),
        throughput(r, "W1 no acc fn", "thread on_output", "thread_sink_fwd", "base_book", tgt_t),
        throughput(r, "W1 throughput", "inline, router + idle sync branch", "idle_sync", "base", "ref"),
        throughput(r, "W1 throughput", "inline, router + idle async node", "idle_async", "base", "= row above"),
    ]


def w1_apush(n: int, runs: int) -> list[Result]:
    """One event per call from a coroutine: push vs apush on the W1 graph (no
    async callables: apush is push), and apush on a graph with an async node,
    idle or run in every fire (the fire runs on the caller's thread; only the
    async node is awaited on its loop)."""
    data = events(n, seed=9)

    def baseline() -> None:
        for e in data:
            emit_fn(compute_fn(orderbook_fn(e)))

    def push() -> None:
        async def go(rt: hr.Runtime) -> None:
            for e in data:
                rt.push("orderbook", e)

        with hr.Runtime(w1_graph(), mode="inline") as rt:
            asyncio.run(go(rt))

    def apush(graph: hr.ComputationGraph) -> None:
        async def go(rt: hr.Runtime) -> None:
            for e in data:
                await rt.apush("orderbook", e)

        with hr.Runtime(graph, mode="inline") as rt:
            asyncio.run(go(rt))

    r = interleaved(runs, rates(n, {
        "base": baseline, "push": push, "apush": lambda: apush(w1_graph()),
        "apush_idle": lambda: apush(w1_idle_branch_graph(True)),
        "apush_runs": lambda: apush(w1_async_graph()),
    }))
    return [
        throughput(r, "W1 per-event from asyncio", "inline push", "push", "base", "ref"),
        throughput(r, "W1 per-event from asyncio", "inline apush (no async nodes)", "apush", "base", "~ push"),
        throughput(r, "W1 per-event from asyncio", "inline apush (idle async node)", "apush_idle", "base", "report"),
        throughput(r, "W1 per-event from asyncio", "inline apush (async node runs)", "apush_runs", "base", "report"),
    ]


def w1_apush_latency(n: int) -> list[Result]:
    """Per-event latency of `await rt.apush(...)` from a coroutine, against a
    sync `push` of the W1 graph measured in the same loop: on a graph with an
    async node on an untaken branch, and on one where an async node runs in
    every fire."""
    data = events(n, seed=10)
    clock = time.perf_counter_ns

    def measure(graph: hr.ComputationGraph, sync: bool) -> dict[str, float]:
        samples: list[int] = []

        async def go(rt: hr.Runtime) -> None:
            for e in data:
                t0 = clock()
                if sync:
                    rt.push("orderbook", e)
                else:
                    await rt.apush("orderbook", e)
                samples.append(clock() - t0)

        with hr.Runtime(graph, mode="inline") as rt:
            asyncio.run(go(rt))
        return percentiles(samples)

    base = measure(w1_graph(), True)
    idle = measure(w1_idle_branch_graph(True), False)
    used = measure(w1_async_graph(), False)
    rows = []
    for label, ours in (("idle async node", idle), ("async node runs", used)):
        for q in ("p50", "p99"):
            rows.append(Result("W1 apush latency", f"{label} {q}", ours[q], "µs", base[q], "lower", "report", {"samples": n}))
    return rows


def w2(n_each: int, runs: int) -> list[Result]:
    a, b = events(n_each, seed=1), events(n_each, seed=2)
    pairs: list[tuple[str, dict[str, float]]] = []
    for x, y in zip(a, b, strict=True):
        pairs.append(("venue_a", x))
        pairs.append(("venue_b", y))
    book_pairs = [(name, book(e)) for name, e in pairs]
    total = len(pairs)

    def plain(
        items: list[tuple[str, dict[str, float]]], accumulate: Callable[[Any], Any] | None, out: list[float] | None
    ) -> None:
        cache: dict[str, dict[str, float] | None] = {"venue_a": None, "venue_b": None}
        fires = 0
        for name, e in items:
            cache[name] = e if accumulate is None else accumulate(e)
            va, vb = cache["venue_a"], cache["venue_b"]
            if va is not None and vb is not None:
                v = emit_fn(pair_compute_fn(va, vb))
                if out is not None:
                    out.append(v)
                fires += 1
        assert fires == total - 1

    def inline() -> None:
        with hr.Runtime(w2_graph(), mode="inline") as rt:
            fires = rt.push_pairs(pairs)
            assert fires is not None and len(fires) == total - 1

    def thread() -> None:
        with hr.Runtime(w2_graph(), mode="thread") as rt:
            rt.push_pairs(pairs)
            rt.drain()
            assert rt.stats()["fire_count"] == total - 1

    def inline_column() -> None:
        with hr.Runtime(w2_graph(forward=True), mode="inline") as rt:
            fires = rt.push_pairs(book_pairs)
            assert fires is not None and len(fires.outputs("emit")) == total - 1

    def thread_sink() -> None:
        out: list[float] = []
        with hr.Runtime(w2_graph(forward=True), mode="thread", on_fire=hr.on_output("emit", out.append)) as rt:
            rt.push_pairs(book_pairs)
            rt.drain()
        assert len(out) == total - 1

    r = interleaved(runs, rates(total, {
        "base": lambda: plain(pairs, orderbook_fn, None),
        # Book-shaped events need no accumulator call in the plain loop either.
        "base_book": lambda: plain(book_pairs, None, []),
        "inline": inline, "thread": thread, "inline_column": inline_column, "thread_sink": thread_sink,
    }))
    return [
        throughput(r, "W2 when_all x2", "inline push_pairs", "inline", "base", ">= 0.8x"),
        throughput(r, "W2 when_all x2", "thread push_pairs", "thread", "base", ">= 0.8x"),
        throughput(r, "W2 no acc fn", "inline .outputs()", "inline_column", "base_book", ">= 0.8x"),
        throughput(r, "W2 no acc fn", "thread on_output", "thread_sink", "base_book", ">= 0.8x"),
    ]


def w1_bytes(n: int, runs: int) -> list[Result]:
    """Raw JSON payloads, one push_bytes per event: decoding happens in the
    engine (orjson called from Rust, no Python frame) vs json.loads in the loop."""
    import json

    import orjson

    raw = [orjson.dumps(e) for e in events(n, seed=5)]

    def baseline() -> None:
        for b in raw:
            emit_fn(compute_fn(orderbook_fn(json.loads(b))))

    def baseline_orjson() -> None:
        loads = orjson.loads
        for b in raw:
            emit_fn(compute_fn(orderbook_fn(loads(b))))

    def inline() -> None:
        with hr.Runtime(w1_graph(), mode="inline") as rt:
            push_bytes = rt.push_bytes
            for b in raw:
                push_bytes("orderbook", b)

    r = interleaved(runs, rates(n, {"base": baseline, "orjson": baseline_orjson, "inline": inline}))
    return [
        throughput(r, "W1b JSON bytes", "plain loop + orjson", "orjson", "base", "ref"),
        throughput(r, "W1b JSON bytes", "inline push_bytes", "inline", "base", "report"),
    ]


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] / 1000

    return {"p50": at(0.50), "p99": at(0.99), "p99.9": at(0.999)}


def latency(
    workload: str, blocks: dict[str, list[list[int]]], name: str, base: str, targets: dict[str, str], extra: dict[str, Any]
) -> list[Result]:
    """Latency rows: percentiles over every round's samples, and the range of
    the per-round p50 ratios to `base`."""
    ours, theirs = percentiles(pooled(blocks[name])), percentiles(pooled(blocks[base]))
    extra = extra | {"rounds": len(blocks[name])}
    spread = {"p50_ratio_range": p50_ratio_range(blocks[name], blocks[base])}
    return [
        Result(workload, q, ours[q], "µs", theirs[q], "lower", t, extra | (spread if q == "p50" else {}))
        for q, t in targets.items()
    ]


def chain_samples(data: list[dict[str, float]], gap_ns: int = 0) -> list[int]:
    """The plain function chain called in this thread, timed around the call."""
    clock = time.perf_counter_ns
    samples = []
    for e in data:
        if gap_ns:
            idle(gap_ns)
        t0 = clock()
        emit_fn(compute_fn(orderbook_fn(e)))
        samples.append(clock() - t0)
    return samples


def push_samples(rt: hr.Runtime, data: list[dict[str, float]], gap_ns: int = 0) -> list[int]:
    """Inline push, timed around the call."""
    clock = time.perf_counter_ns
    push = rt.push
    samples = []
    for e in data:
        if gap_ns:
            idle(gap_ns)
        t0 = clock()
        push("orderbook", e)
        samples.append(clock() - t0)
    return samples


class Hops:
    """One event in flight to another thread: the time from sending it to the
    callback there (a fire's on_fire, or the consumer of a bare queue)."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self.sent = 0
        self.samples: list[int] = []

    def arrived(self, *_: object) -> None:
        self.samples.append(time.perf_counter_ns() - self.sent)
        self.fired.set()

    def run(self, send: Callable[[dict[str, float]], object], data: list[dict[str, float]], gap_ns: int = 0) -> list[int]:
        self.samples = []
        clock = time.perf_counter_ns
        for e in data:
            if gap_ns:
                idle(gap_ns)
            self.fired.clear()
            self.sent = clock()
            send(e)
            self.fired.wait(5)
        return self.samples


def w3_inline(n: int) -> list[Result]:
    data = split(events(n, seed=3), LATENCY_ROUNDS)
    with hr.Runtime(w1_graph(), mode="inline") as rt:
        blocks = interleaved_blocks(LATENCY_ROUNDS, {
            "base": lambda k: chain_samples(data[k]),
            "ours": lambda k: push_samples(rt, data[k]),
        })
    targets = {"p50": "<= 1.3x", "p99": "<= 2x", "p99.9": ""}
    return latency("W3 latency inline", blocks, "ours", "base", targets, {"samples": n})


def w3_thread(n: int) -> list[Result]:
    data = split(events(n, seed=4), LATENCY_ROUNDS)
    hops = Hops()
    with hr.Runtime(w1_graph(), mode="thread", on_fire=hops.arrived) as rt:
        blocks = interleaved_blocks(LATENCY_ROUNDS, {
            "base": lambda k: chain_samples(data[k]),
            "ours": lambda k: hops.run(lambda e: rt.push("orderbook", e), data[k]),
        })
    return latency("W3 latency thread", blocks, "ours", "base", {"p50": "report", "p99": "report"}, {"samples": n})


#: Idle time before each event of the W3-with-gap variants (sporadic market data).
GAP_NS = 50_000


def idle(ns: int) -> None:
    """Busy-waits `ns`: a precise gap (sleep overshoots by its timer slack)."""
    clock = time.perf_counter_ns
    until = clock() + ns
    while clock() < until:
        pass


def w3_gap_inline(n: int) -> list[Result]:
    """W3 with one event in flight and a 50 µs idle gap before each: the plain
    function chain vs inline push, both measured around the call alone."""
    data = split(events(n, seed=8), LATENCY_ROUNDS)
    with hr.Runtime(w1_graph(), mode="inline") as rt:
        blocks = interleaved_blocks(LATENCY_ROUNDS, {
            "base": lambda k: chain_samples(data[k], GAP_NS),
            "ours": lambda k: push_samples(rt, data[k], GAP_NS),
        })
    targets = {"p50": "<= 1.3x", "p99": "<= 2x"}
    return latency("W3 gap inline", blocks, "ours", "base", targets, {"samples": n, "gap_us": GAP_NS / 1000})


def w3_gap_thread(n: int, **runtime_options: Any) -> list[Result]:
    """W3 with a 50 µs gap, thread mode: push -> on_fire on the processor
    thread, vs a bare `queue.SimpleQueue` hop to a Python thread that calls the
    same functions, measured the same way (send time -> callback on the other
    thread). Both stay up for the whole run, and take turns block by block."""
    import queue

    data = split(events(n, seed=9), LATENCY_ROUNDS)
    q: queue.SimpleQueue[dict[str, float] | None] = queue.SimpleQueue()
    hop, ours = Hops(), Hops()

    def consumer() -> None:
        while (e := q.get()) is not None:
            emit_fn(compute_fn(orderbook_fn(e)))
            hop.arrived()

    t = threading.Thread(target=consumer)
    t.start()
    try:
        with hr.Runtime(w1_graph(), mode="thread", on_fire=ours.arrived, **runtime_options) as rt:
            blocks = interleaved_blocks(LATENCY_ROUNDS, {
                "hop": lambda k: hop.run(q.put, data[k], GAP_NS),
                "ours": lambda k: ours.run(lambda e: rt.push("orderbook", e), data[k], GAP_NS),
            })
    finally:
        q.put(None)
        t.join()
    targets = {"p50": "<= 1x (hop)", "p99": "report"}
    return latency("W3 gap thread", blocks, "ours", "hop", targets, {"samples": n, "gap_us": GAP_NS / 1000})
