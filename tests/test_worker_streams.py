"""A worker's stdout and stderr belong to the package: whatever it prints
(megabytes from a node, at import, one endless line) never wedges the graph,
and the supervisor's own messages never share a stream with it."""

from __future__ import annotations

import asyncio
import logging

from headrace.supervisor.streams import MAX_LINE, TAIL_LINES, OutputTail, drain
from server_util import PRICES, Server, package_bytes, send_acked

NOISY = PRICES.replace(
    "import headrace as hr",
    "import sys\nimport headrace as hr\nsys.stdout.write('import noise ' * 100_000 + '\\n')\nsys.stdout.flush()",
).replace(
    'return price["p"] * 2',
    'sys.stdout.write("x" * 400_000 + "\\n")\n'
    '    sys.stdout.flush()\n'
    '    sys.stderr.write("e" * 300_000)  # one line over 64 KiB, no newline\n'
    '    sys.stderr.flush()\n'
    '    print("small line", flush=True)\n'
    '    return price["p"] * 2',
)


def test_a_graph_that_prints_megabytes_keeps_serving(server: Server) -> None:
    server.deploy(package_bytes("prices", NOISY), "prices")
    for round_ in range(3):
        replies = asyncio.run(send_acked(server, "price", [{"p": i} for i in range(5)]))
        assert all("ack" in r for r in replies), (round_, replies)
    # 15 fires, each printing ~700 KB: about 10 MB through the pipes.
    fires = server.fires("prices", 20)
    assert len(fires) == 15 and all(f["ok"] for f in fires)
    detail = server.graph("prices")
    assert detail["health"]["state"] == "running" and detail["worker"]["restarts"] == 0
    assert server.http.get("/ready").status_code == 200
    assert "small line" in server.log()


def test_output_tail_is_bounded_whatever_the_stream_holds() -> None:
    tail = OutputTail(logging.getLogger("test.streams"))

    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"y" * 5_000_000)  # one line of 5 MB
        reader.feed_data(b"\n" + b"line\n" * 100_000)
        reader.feed_eof()
        await drain(reader, tail, "stdout")

    asyncio.run(run())
    assert tail.total_bytes == 5_000_001 + 500_000
    assert len(tail.lines) == TAIL_LINES and tail.lines[-1] == "line"
    assert all(len(line) <= MAX_LINE + 60 for line in tail.lines)


def test_the_upload_check_keeps_only_the_tail_of_what_a_package_prints(server: Server) -> None:
    loud = "import sys\nsys.stdout.write('z' * 30_000_000)\nsys.stdout.flush()\n" + PRICES
    broken = loud.replace("graph = hr.ComputationGraph", "raise RuntimeError('boom')\ngraph = hr.ComputationGraph")
    r = server.upload(package_bytes("prices", broken))
    assert r.status_code == 400 and "boom" in r.text, r.text
    assert len(r.content) < 100_000
    server.deploy(package_bytes("prices", loud), "prices")
    replies = asyncio.run(send_acked(server, "price", [{"p": 1}]))
    assert "ack" in replies[0], replies
