"""Prometheus metrics, built per scrape from the workers' stats.

The counters and histograms live in the workers (they count on the
processor thread); a scrape asks each worker for its stats and renders them
with prometheus_client's metric families, labelled by tenant and graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from headrace.supervisor.firelog import BUCKETS

if TYPE_CHECKING:
    from headrace.supervisor.process import GraphWorker

__all__ = ["render_metrics"]


class _Collected:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _histogram(name: str, doc: str, rows: Iterable[tuple[list[str], dict[str, Any]]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["tenant", "graph"])
    for labels, h in rows:
        cumulative, buckets = 0, []
        for bound, count in zip([*BUCKETS, float("inf")], h["counts"], strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric(labels, buckets, h["sum"])
    return family


def render_metrics(graphs: list[tuple[GraphWorker, dict[str, Any] | None]]) -> bytes:
    up = GaugeMetricFamily("headrace_graph_up", "1 while the graph's worker runs", labels=["tenant", "graph", "state"])
    restarts = CounterMetricFamily("headrace_worker_restarts", "Worker restarts", labels=["tenant", "graph"])
    events = CounterMetricFamily(
        "headrace_events", "Events received per accumulator", labels=["tenant", "graph", "accumulator"]
    )
    errors = CounterMetricFamily(
        "headrace_accumulator_errors", "Accumulator errors", labels=["tenant", "graph", "accumulator"]
    )
    fires = CounterMetricFamily("headrace_fires", "Successful graph fires", labels=["tenant", "graph"])
    failed = CounterMetricFamily("headrace_fires_failed", "Fires in which a node raised", labels=["tenant", "graph"])
    depth = GaugeMetricFamily("headrace_queue_depth", "Events waiting in the worker's queue", labels=["tenant", "graph"])
    cp_seconds = GaugeMetricFamily(
        "headrace_checkpoint_duration_seconds", "Duration of the last checkpoint commit", labels=["tenant", "graph"]
    )
    cp_count = CounterMetricFamily("headrace_checkpoints", "Checkpoints committed", labels=["tenant", "graph"])
    cp_failures = CounterMetricFamily("headrace_checkpoint_failures", "Checkpoint failures", labels=["tenant", "graph"])
    durations, latencies = [], []
    for worker, stats in graphs:
        labels = [worker.spec.tenant, worker.spec.graph]
        up.add_metric([*labels, worker.state], 1.0 if worker.state == "running" else 0.0)
        restarts.add_metric(labels, worker.restarts)
        if stats is None:
            continue
        for acc, s in stats["accumulators"].items():
            events.add_metric([*labels, acc], s["events"])
            errors.add_metric([*labels, acc], s["errors"])
        fires.add_metric(labels, stats["fire_count"])
        failed.add_metric(labels, stats["fires_failed"])
        depth.add_metric(labels, stats["queue_depth"])
        cp = stats.get("checkpoint") or {}
        if cp.get("last_checkpoint_seconds") is not None:
            cp_seconds.add_metric(labels, cp["last_checkpoint_seconds"])
        cp_count.add_metric(labels, cp.get("checkpoints", 0))
        cp_failures.add_metric(labels, cp.get("failures", 0))
        durations.append((labels, stats["histograms"]["fire_duration"]))
        latencies.append((labels, stats["histograms"]["push_to_fire"]))
    families: list[Metric] = [
        up,
        restarts,
        events,
        errors,
        fires,
        failed,
        depth,
        cp_seconds,
        cp_count,
        cp_failures,
        _histogram("headrace_fire_duration_seconds", "Time the graph's nodes ran per fire", durations),
        _histogram(
            "headrace_push_to_fire_seconds",
            "From a push batch reaching the worker to the fire it triggered starting",
            latencies,
        ),
    ]
    return generate_latest(_Collected(families))
