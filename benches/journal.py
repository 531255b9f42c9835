"""The input journal's cost: W1 in thread mode with every input recorded."""

from __future__ import annotations

import tempfile

import headrace as hr
from benches import workloads
from benches.interleave import interleaved
from benches.workloads import Result, rates, throughput


def w1_journaled(n: int, runs: int) -> list[Result]:
    data = workloads.events(n)

    def plain() -> None:
        with hr.Runtime(workloads.w1_graph(), mode="thread") as rt:
            rt.push_many("orderbook", data)
            rt.drain()

    def journaled(fsync: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            with hr.Runtime(workloads.w1_graph(), mode="thread", journal=f"{d}/journal", journal_fsync=fsync) as rt:  # type: ignore[arg-type]
                rt.push_many("orderbook", data)
                rt.drain()
                stats = rt.stats()["journal"]
            assert stats["unrecorded"] == 0 and not stats["failing"]

    r = interleaved(runs, rates(n, {"plain": plain, "batch": lambda: journaled("batch"), "never": lambda: journaled("never")}))
    return [
        throughput(r, "W1 + journal", "thread, fsync per write", "batch", "plain", ">= 0.8x (vs W1 thread)"),
        throughput(r, "W1 + journal", "... fsync never", "never", "plain", "report"),
    ]
