"""Child process for the crash tests: consumes a numbered event stream from the
position its checkpoint restored, until killed or done.

    python _crash_child.py STORE TENANT N MODE
"""

from __future__ import annotations

import sys
import time

import headrace as hr
from exactly_once import INITIAL, check

store, tenant, total, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


@hr.stream_accumulator(topic="events", state=INITIAL)
def applied(event, state):
    return check(event, state)


@hr.batch_accumulator(max_buffer_size=7)
def batched(events):
    return len(events)


graph = hr.ComputationGraph(
    "crash", accumulators=[applied, batched], criteria=hr.when_any(applied), input_strategy="sequential"
)


@graph.node
def last(applied, batched):
    return applied


with hr.Runtime(
    graph, mode=mode, store=store, tenant=tenant, checkpoint_every=50, checkpoint_interval="10ms", sources=False  # type: ignore[arg-type]
) as rt:
    positions = {(t, p): o for _, t, p, o in rt.restored_positions()}
    start = positions.get(("events", 0), 0)
    print(f"START {start}", flush=True)
    for i in range(start, total):
        rt.push_from_source("applied", str(i).encode(), "events", 0, i)
        if i % 10 == 0:
            time.sleep(0.0005)  # a stream, not a burst: kills land mid-flight
print("DONE", flush=True)
