"""headrace quick start: a price-signal graph, run in-process.

An order-book accumulator feeds `compute` (mid, spread, spread in bps); a
routing node sends wide spreads to `alert` and the rest to `ok`. The script
prints a few fires, then measures push-to-result latency in inline mode and
throughput in thread mode. State is checkpointed to SQLite (the embedded
default store): run it twice and the second run carries on from the first.

    python examples/quickstart.py
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import headrace as hr


@hr.passthrough_accumulator
def orderbook(event: dict[str, float]) -> dict[str, float]:
    return {"bid": event["best_bid"], "ask": event["best_ask"]}


@hr.passthrough_accumulator
def reference(event: dict[str, float]) -> float:
    return event["price"]


graph = hr.ComputationGraph(
    "price_signal",
    accumulators=[orderbook, reference],
    criteria=hr.when_any(orderbook),
    input_strategy="sequential",
)


@graph.node
def compute(orderbook: dict[str, float]) -> dict[str, float]:
    mid = (orderbook["bid"] + orderbook["ask"]) / 2
    spread = orderbook["ask"] - orderbook["bid"]
    return {"mid": mid, "spread": spread, "spread_bps": spread / mid * 10_000}


@graph.node(routes=["alert", "ok"])
def decide(compute: dict[str, float], reference: float | None) -> hr.Route:
    wide = compute["spread_bps"] > 15
    off_reference = reference is not None and abs(compute["mid"] - reference) > 0.5
    return hr.Route("alert" if wide or off_reference else "ok", compute)


@graph.node
def alert(decide: dict[str, float]) -> str:
    return f"ALERT mid={decide['mid']:.4f} spread={decide['spread_bps']:.1f}bps"


@graph.node
def ok(decide: dict[str, float]) -> str:
    return f"ok    mid={decide['mid']:.4f} spread={decide['spread_bps']:.1f}bps"


def book_events(n: int, seed: int = 42) -> list[dict[str, float]]:
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        bid = 100 + rng.uniform(-1, 1)
        events.append({"best_bid": round(bid, 4), "best_ask": round(bid + rng.uniform(0.01, 0.2), 4)})
    return events


STORE_PATH = Path(os.environ.get("HEADRACE_EXAMPLE_DB", ".cache/quickstart.db"))


def main() -> None:
    print(f"graph: {graph}\nexecution order: {graph.validate()}\n")
    STORE_PATH.parent.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{STORE_PATH}"

    # Inline mode: each push runs the whole path on this thread and returns its fire.
    with hr.Runtime(graph, mode="inline", store=store) as rt:
        restored = rt.stats()["fire_count"]
        print(f"store {store}: restored {restored:,} earlier fires" if restored else f"store {store}: first run")
        rt.push("reference", {"price": 100.0})
        for event in book_events(5):
            result = rt.push("orderbook", event)
            assert result is not None
            (line,) = result.outputs.values()
            print(f"fire {result.id}: {line}")

        samples = []
        for event in book_events(50_000, seed=1):
            started = time.perf_counter_ns()
            rt.push("orderbook", event)
            samples.append(time.perf_counter_ns() - started)
        samples.sort()
        p = {q: samples[int(q * (len(samples) - 1))] / 1000 for q in (0.5, 0.99, 0.999)}
        print(
            f"\ninline push -> result latency over {len(samples):,} events: "
            f"p50 {p[0.5]:.2f} µs, p99 {p[0.99]:.2f} µs, p99.9 {p[0.999]:.2f} µs"
            " (checkpointing every 1,000 fires)"
        )

    # Thread mode: pushes return once accepted; the processor thread fires.
    alerts = 0

    def count_alerts(result: hr.FireResult) -> None:
        nonlocal alerts
        alerts += "alert" in result.outputs

    events = book_events(200_000, seed=2)
    with hr.Runtime(graph, mode="thread", on_fire=count_alerts) as rt:
        started = time.perf_counter()
        rt.push_many("orderbook", events)
        rt.drain()
        elapsed = time.perf_counter() - started
        stats = rt.stats()
    print(
        f"thread mode: {len(events):,} events, {stats['fire_count']:,} fires in {elapsed:.2f} s "
        f"({len(events) / elapsed:,.0f} events/s), {alerts:,} alerts, health {stats['health']!r}"
    )


if __name__ == "__main__":
    main()
