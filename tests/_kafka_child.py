"""Child process for the Kafka crash test: consumes TOPIC until TOTAL messages
are in its state, checkpointing to STORE, until killed or done.

    python _kafka_child.py STORE TOPIC TOTAL GROUP
"""

from __future__ import annotations

import sys
import time

import headrace as hr
from exactly_once import INITIAL, check

store, topic, total, group = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
done = [False]


# Static membership: a restarted process takes its partitions back at once,
# instead of waiting out the killed member's session.
@hr.stream_accumulator(
    topic=topic,
    group=group,
    state=INITIAL,
    config={"group.instance.id": f"{group}-member", "session.timeout.ms": 10000},
)
def seen(event, state):
    check(event, state)
    if event % 100 == 0:
        time.sleep(0.001)  # throttled, so that kills land mid-stream
    if state.value["next"] == total:
        done[0] = True
    return event


graph = hr.ComputationGraph("kcrash", accumulators=[seen], input_strategy="sequential")
graph.node(name="n")(lambda seen: seen)

with hr.Runtime(graph, mode="thread", store=store, checkpoint_every=100, checkpoint_interval="10ms") as rt:
    print("START", flush=True)
    while not done[0]:
        time.sleep(0.01)
print("DONE", flush=True)
