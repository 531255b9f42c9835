"""One run of :func:`headrace.testing.crash_check`'s graph, in a child process:
pushes the numbered events from where the checkpoint left off, reporting on
stdout how many it has taken, until killed or done.

    python -m headrace.testing._crash_child '{"graph": ..., "events": ..., ...}'
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgpack

from headrace.errors import AccumulatorError, NodeError
from headrace.runtime import Runtime
from headrace.testing._crash import TOPIC, load_graph


def main(argv: list[str]) -> None:
    args = json.loads(argv[1])
    graph = load_graph(args["graph"])
    records = msgpack.unpackb(Path(args["events"]).read_bytes(), raw=False)
    step = int(args["step"])
    with Runtime(
        graph, mode=args["mode"], store=args["store"], tenant=args["tenant"], sources=False, **args["options"]
    ) as rt:
        # The checkpoint saves each accumulator's next position; the events
        # are one numbered sequence, so the furthest one is where to resume.
        start = max((o for _, t, p, o in rt.restored_positions() if t == TOPIC and p == 0), default=0)
        print(f"START {start}", flush=True)
        for i in range(start, len(records)):
            name, data = records[i]
            try:
                rt.push_from_source(name, data, TOPIC, 0, i)
            except (NodeError, AccumulatorError):
                pass  # inline raises what thread mode reports: the fire failed either way
            if (i + 1) % step == 0:
                # Taken, not just queued (thread mode): kills fall between
                # processed events, not in a burst the processor has not reached.
                print(f"AT {i + 1 - rt.counters().queue_depth}", flush=True)
        print("END", flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv)
