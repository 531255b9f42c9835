"""The workloads, each beside the plain-Python baseline measured in the same run.

The baseline calls the very same user functions (accumulator, compute, emit)
directly in a loop; every headrace figure is reported as a ratio to it.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import headrace as hr

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


def w1_graph() -> hr.ComputationGraph:
    orderbook = hr.passthrough_accumulator(name="orderbook")(orderbook_fn)
    g = hr.ComputationGraph("w1", accumulators=[orderbook], criteria=hr.when_any(orderbook), input_strategy="sequential")
    g.node(name="compute")(compute_fn)
    g.node(name="emit")(emit_fn)
    return g


def w2_graph() -> hr.ComputationGraph:
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


def best_of(runs: int, fn: Callable[[], float]) -> float:
    """Median of `runs` throughput figures (noise on a shared machine is large)."""
    return statistics.median(fn() for _ in range(runs))


def rate(n: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def w1(n: int, runs: int) -> list[Result]:
    data = events(n)

    def baseline() -> None:
        out = None
        for e in data:
            out = emit_fn(compute_fn(orderbook_fn(e)))
        assert out is not None

    def inline() -> None:
        with hr.Runtime(w1_graph(), mode="inline") as rt:
            fires = rt.push_many("orderbook", data)
            assert fires is not None and len(fires) == n

    def thread() -> None:
        with hr.Runtime(w1_graph(), mode="thread") as rt:
            rt.push_many("orderbook", data)
            rt.drain()
            assert rt.stats()["fire_count"] == n

    def profiled() -> None:
        with hr.Runtime(w1_graph(), mode="inline", profile=True) as rt:
            fires = rt.push_many("orderbook", data)
            assert fires is not None and len(fires) == n

    base = best_of(runs, lambda: rate(n, baseline))
    # Profiling's cost per fire: inline with and without it, interleaved.
    pairs = [(rate(n, inline), rate(n, profiled)) for _ in range(runs)]
    extra_ns = statistics.median(1e9 / p - 1e9 / i for i, p in pairs)
    profile_row = Result(
        "W1 throughput", "inline, profile=True", statistics.median(p for _, p in pairs), "events/s", base, "higher",
        f"<= +250 ns/fire (+{extra_ns:.0f} ns)", {"extra_ns_per_fire": round(extra_ns, 1)},
    )
    return [
        Result("W1 throughput", "inline push_many", best_of(runs, lambda: rate(n, inline)), "events/s", base, "higher", ">= 0.6x"),
        profile_row,
        Result("W1 throughput", "thread push_many", best_of(runs, lambda: rate(n, thread)), "events/s", base, "higher", ">= 0.6x"),
    ]


def w2(n_each: int, runs: int) -> list[Result]:
    a, b = events(n_each, seed=1), events(n_each, seed=2)
    pairs: list[tuple[str, dict[str, float]]] = []
    for x, y in zip(a, b, strict=True):
        pairs.append(("venue_a", x))
        pairs.append(("venue_b", y))
    total = len(pairs)

    def baseline() -> None:
        cache: dict[str, dict[str, float] | None] = {"venue_a": None, "venue_b": None}
        fires = 0
        for name, e in pairs:
            cache[name] = orderbook_fn(e)
            va, vb = cache["venue_a"], cache["venue_b"]
            if va is not None and vb is not None:
                emit_fn(pair_compute_fn(va, vb))
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

    base = best_of(runs, lambda: rate(total, baseline))
    return [
        Result("W2 when_all x2", "inline push_pairs", best_of(runs, lambda: rate(total, inline)), "events/s", base, "higher", ">= 0.6x"),
        Result("W2 when_all x2", "thread push_pairs", best_of(runs, lambda: rate(total, thread)), "events/s", base, "higher", ">= 0.6x"),
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

    base = best_of(runs, lambda: rate(n, baseline))
    return [
        Result("W1b JSON bytes", "plain loop + orjson", best_of(runs, lambda: rate(n, baseline_orjson)), "events/s", base, "higher", "ref"),
        Result("W1b JSON bytes", "inline push_bytes", best_of(runs, lambda: rate(n, inline)), "events/s", base, "higher", "report"),
    ]


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] / 1000

    return {"p50": at(0.50), "p99": at(0.99), "p99.9": at(0.999)}


def w3_inline(n: int) -> list[Result]:
    data = events(n, seed=3)
    clock = time.perf_counter_ns

    base_samples = []
    for e in data:
        t0 = clock()
        emit_fn(compute_fn(orderbook_fn(e)))
        base_samples.append(clock() - t0)

    samples = []
    with hr.Runtime(w1_graph(), mode="inline") as rt:
        push = rt.push
        for e in data:
            t0 = clock()
            push("orderbook", e)
            samples.append(clock() - t0)
    base, ours = percentiles(base_samples), percentiles(samples)
    targets = {"p50": "<= 1.5x", "p99": "<= 2x", "p99.9": ""}
    return [
        Result("W3 latency inline", q, ours[q], "µs", base[q], "lower", targets[q], {"samples": n})
        for q in ("p50", "p99", "p99.9")
    ]


def w3_thread(n: int) -> list[Result]:
    data = events(n, seed=4)
    clock = time.perf_counter_ns
    samples: list[int] = []
    fired = threading.Event()
    sent = [0]

    def on_fire(result: hr.FireResult) -> None:
        samples.append(clock() - sent[0])
        fired.set()

    base_samples = []
    for e in data:
        t0 = clock()
        emit_fn(compute_fn(orderbook_fn(e)))
        base_samples.append(clock() - t0)

    with hr.Runtime(w1_graph(), mode="thread", on_fire=on_fire) as rt:
        for e in data:
            fired.clear()
            sent[0] = clock()
            rt.push("orderbook", e)
            fired.wait(5)
    base, ours = percentiles(base_samples), percentiles(samples)
    return [
        Result("W3 latency thread", q, ours[q], "µs", base[q], "lower", "report", {"samples": n})
        for q in ("p50", "p99")
    ]
