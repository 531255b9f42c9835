"""Checkpoint costs: codecs, store commits, and W1 with checkpointing on."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import tempfile
import time
import uuid
import zoneinfo
from dataclasses import dataclass

import headrace as hr
from benches import workloads
from benches.interleave import interleaved
from benches.workloads import Result, rates, throughput
from headrace import _core
from headrace.checkpoint import open_store


@dataclass
class Cost:
    what: str
    variant: str
    p50_us: float
    p99_us: float


def state_of(size: int) -> dict[str, object]:
    """A book-like state of about `size` bytes when encoded with bincode."""
    levels = max(1, size // 16)
    return {
        "symbol": "ESZ6",
        "bids": [[100.0 - i * 0.25, 10 + i] for i in range(levels // 2)],
        "asks": [[100.25 + i * 0.25, 10 + i] for i in range(levels - levels // 2)],
        "seq": 123456789,
    }


def trades_of(count: int) -> dict[str, object]:
    """An order blotter: datetimes with a zone, Decimal prices, UUID ids."""
    start = dt.datetime(2026, 3, 6, 9, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    return {
        "orders": [
            {
                "id": uuid.UUID(int=i),
                "at": start + dt.timedelta(microseconds=i),
                "px": decimal.Decimal("101.25") + i,
                "ttl": dt.timedelta(seconds=30),
            }
            for i in range(count)
        ]
    }


def timed(fn, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[min(len(samples) - 1, int(0.99 * len(samples)))] / 1000


def codecs() -> list[Cost]:
    out = []
    for size in (1024, 65536):
        value = state_of(size)
        for codec in ("bincode", "msgpack", "json"):
            blob = _core.encode_checkpoint(value, codec)
            n = 2000 if size < 4096 else 200
            enc = timed(lambda v=value, c=codec: _core.encode_checkpoint(v, c), n)
            dec = timed(lambda b=blob: _core.decode_checkpoint(b), n)
            label = f"{size // 1024} KiB ({len(blob):,} B)"
            out.append(Cost(f"encode {label}", codec, *enc))
            out.append(Cost(f"decode {label}", codec, *dec))
    trades = trades_of(16)
    for codec in ("bincode", "msgpack", "json"):
        blob = _core.encode_checkpoint(trades, codec)
        label = f"16 trades ({len(blob):,} B)"
        out.append(Cost(f"encode {label}", codec, *timed(lambda c=codec: _core.encode_checkpoint(trades, c), 2000)))
        out.append(Cost(f"decode {label}", codec, *timed(lambda b=blob: _core.decode_checkpoint(b), 2000)))
    return out


def commits(postgres: str | None) -> list[Cost]:
    components = {"reactor": _core.encode_checkpoint(state_of(4096)), "control": _core.encode_checkpoint(False)}
    out = []
    with tempfile.TemporaryDirectory() as d:
        targets = [
            ("sqlite FULL", f"sqlite:///{d}/full.db"),
            ("sqlite NORMAL", f"sqlite:///{d}/normal.db?synchronous=NORMAL"),
        ]
        if postgres:
            targets.append(("postgresql", postgres))
        for label, url in targets:
            store = open_store(url)
            try:
                out.append(Cost("commit 4 KiB checkpoint", label, *timed(lambda s=store: s.save("bench", "g", components), 300)))
            finally:
                store.close()
    return out


def w1_checkpointed(n: int, runs: int) -> list[Result]:
    data = workloads.events(n)

    def plain() -> None:
        with hr.Runtime(workloads.w1_graph(), mode="thread") as rt:
            rt.push_many("orderbook", data)
            rt.drain()

    def checkpointed(check: bool) -> None:
        with tempfile.TemporaryDirectory() as d:
            with hr.Runtime(
                workloads.w1_graph(),
                mode="thread",
                store=f"sqlite:///{d}/w1.db",
                checkpoint_every=1000,
                check_checkpointable=check,
            ) as rt:
                rt.push_many("orderbook", data)
                rt.drain()
                assert rt.stats()["checkpoint"]["failures"] == 0

    r = interleaved(runs, rates(n, {"plain": plain, "check": lambda: checkpointed(True), "nocheck": lambda: checkpointed(False)}))
    return [
        throughput(r, "W1 + checkpoints", "thread, sqlite, /1000", "check", "plain", ">= 0.9x (vs W1 thread)"),
        # The same without checking each boundary for checkpointability on entry.
        throughput(r, "W1 + checkpoints", "... check off", "nocheck", "plain", "report"),
    ]


def table(costs: list[Cost]) -> str:
    head = f"{'checkpoint cost':<34} {'variant':<16} {'p50':>10} {'p99':>10}"
    lines = [head, "-" * len(head)]
    for c in costs:
        lines.append(f"{c.what:<34} {c.variant:<16} {c.p50_us:>8.1f}µs {c.p99_us:>8.1f}µs")
    return "\n".join(lines)


def postgres_url() -> str | None:
    return os.environ.get("HEADRACE_BENCH_POSTGRES") or os.environ.get("HEADRACE_TEST_POSTGRES")


def all_costs() -> list[Cost]:
    return codecs() + commits(postgres_url())


def summary(costs: list[Cost]) -> list[dict[str, object]]:
    return [c.__dict__ for c in costs]
