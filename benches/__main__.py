"""Runs the benchmark suite, prints one table and writes JSON results.

    python -m benches [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benches import checkpoints, journal, workloads
from benches import kafka as kafka_bench
from benches import server as server_bench
from benches.workloads import Result


def table(results: list[Result]) -> str:
    head = f"{'workload':<20} {'variant':<20} {'headrace':>14} {'baseline':>14} {'ratio':>7}  target"
    lines = [head, "-" * len(head)]
    for r in results:
        fmt = {"events/s": "{:>14,.0f}", "ms": "{:>12.2f}ms"}.get(r.unit, "{:>12.2f}µs")
        spread = r.extra.get("ratio_range") or r.extra.get("p50_ratio_range")
        lines.append(
            f"{r.workload:<20} {r.variant:<20} {fmt.format(r.value)} {fmt.format(r.baseline)} "
            f"{r.ratio:>6.2f}x  {r.target}" + (f"  [{spread[0]:.2f}-{spread[1]:.2f}]" if spread else "")
        )
    lines.append("ratio = headrace / plain-Python loop calling the same functions, same run")
    lines.append("(W1b's baseline decodes with json.loads in the loop; Kafka's is confluent-kafka's bare")
    lines.append(" consume loop calling the same functions; Kafka latency is producer timestamp -> fire)")
    lines.append("(WS push -> fire's baseline is a raw Unix-socket round trip between two Python processes;")
    lines.append(" WS throughput's is the same graph fed the same bytes in-process, no server)")
    lines.append("(W1 + results' baseline appends each result to a list; 'no acc fn' rows push book-shaped events")
    lines.append(" through hr.passthrough and their baseline calls no accumulator function either;")
    lines.append(" W3 gap: 50 µs idle before each event; thread's baseline is a bare SimpleQueue hop to a")
    lines.append(" Python thread calling the same functions, send -> callback, measured the same way)")
    lines.append("(throughput: higher is better; latency: lower is better)")
    lines.append("(baseline and variants run interleaved, round-robin in one run: throughput is the median")
    lines.append(" of --runs rounds, latency pools blocks of events taken in turns; [lo-hi] is the range of")
    lines.append(" the per-round ratios (latency: of the per-round p50s))")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benches", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", default="bench-results", help="folder for JSON results")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds per throughput figure (median)")
    args = parser.parse_args()

    scale = 20 if args.quick else 1
    results: list[Result] = []
    results += workloads.w1(1_000_000 // scale, args.runs)
    results += workloads.w1_apush(50_000 // scale, args.runs)
    results += workloads.w1_apush_latency(max(50_000 // scale, 5_000))
    results += workloads.w1_bytes(200_000 // scale, args.runs)
    results += workloads.w2(500_000 // scale, args.runs)
    results += workloads.w3_inline(max(100_000 // scale, 10_000))
    results += workloads.w3_thread(max(20_000 // scale, 2_000))
    results += workloads.w3_gap_inline(max(20_000 // scale, 5_000))
    results += workloads.w3_gap_thread(max(10_000 // scale, 1_000))
    results += checkpoints.w1_checkpointed(1_000_000 // scale, args.runs)
    results += journal.w1_journaled(1_000_000 // scale, args.runs)
    costs = checkpoints.all_costs()
    if kafka_bench.broker():
        results += kafka_bench.throughput(200_000 // scale)
        results += kafka_bench.latency(max(2000 // scale, 200))
    server_skipped = None
    try:
        results += server_bench.run(max(200_000 // scale, 20_000), max(5000 // scale, 500), args.runs)
    except server_bench.ServerUnavailable as e:
        server_skipped = str(e)

    print(table(results))
    print()
    print(checkpoints.table(costs))
    if kafka_bench.broker() is None:
        print("(no Kafka broker: set HEADRACE_BENCH_KAFKA, or run `make bench`, which starts one)")
    if server_skipped is not None:
        print(f"(server benchmarks skipped: {server_skipped})")
    if checkpoints.postgres_url() is None:
        print("(no PostgreSQL: set HEADRACE_BENCH_POSTGRES, or run `make bench`, which starts one)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    payload = {
        "when": stamp,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "results": [asdict(r) | {"ratio": r.ratio} for r in results],
        "checkpoint_costs": checkpoints.summary(costs),
    }
    for name in (f"bench-{stamp}.json", "latest.json"):
        (out / name).write_text(json.dumps(payload, indent=2))
    print(f"results written to {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
