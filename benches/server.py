"""The server: WebSocket push → fire latency and events/s through `headrace serve`.

Latency is beside a raw Unix-socket round trip between two Python processes
(the floor), measured in the same run: push → fire crosses two process hops
(client → supervisor → worker) and a thread hand-off in the worker, a round
trip crosses two, so the ratio says what the server adds on top of bare
hops. A TCP loopback round trip is reported beside it, because the client's
hop is TCP and costs more than a Unix one.

Throughput is one connection's events/s, beside the same graph fed the same
bytes in-process (the worker's engine without the server in front of it).

The client is a thin WebSocket producer (websockets' sans-I/O protocol for
the handshake and for reading acks, frames built here): the machine this was
written on has two cores for client, supervisor and worker together, and
websockets' asyncio client spends ~7 µs of CPU per frame there, 70% of a
core at 100k events/s, which the figure would charge to the server.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri
from websockets.utils import apply_mask

from headrace.packages import build_package

import headrace as hr
from benches import workloads
from benches.workloads import Result, percentiles

# --- the floor: a raw socket round trip between two processes -------------------------

#: A fixed-size message: about one small JSON event with a length prefix.
FLOOR_MESSAGE = 32

#: The echo child: pins itself to a CPU if told, then reads exactly one
#: message and writes it back, until EOF.
_ECHO = """
import os, socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
size, cpu = int(sys.argv[2]), int(sys.argv[3])
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
buf = bytearray(size)
view = memoryview(buf)
while True:
    got = 0
    while got < size:
        k = sock.recv_into(view[got:])
        if not k:
            sys.exit(0)
        got += k
    sock.sendall(buf)
"""


def _socket_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    if kind == "unix":
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    for s in (near, far):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return near, far


def round_trip(n: int, kind: str = "unix", cpus: tuple[int, int] | None = None, warmup: int = 2000) -> dict[str, float]:
    """p50/p99 (µs) of a blocking send + receive of one message to a child
    process that echoes it, one at a time; ``kind`` "unix" or "tcp"
    (loopback); ``cpus``: pin this process and the child to these CPUs."""
    near, far = _socket_pair(kind)
    child_cpu = -1 if cpus is None else cpus[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _ECHO, str(far.fileno()), str(FLOOR_MESSAGE), str(child_cpu)], pass_fds=[far.fileno()]
    )
    far.close()
    affinity = os.sched_getaffinity(0)
    try:
        if cpus is not None:
            os.sched_setaffinity(0, {cpus[0]})
        message = b"x" * FLOOR_MESSAGE
        buf = bytearray(FLOOR_MESSAGE)
        view = memoryview(buf)
        clock = time.perf_counter_ns
        samples: list[int] = []
        for i in range(warmup + n):
            t0 = clock()
            near.sendall(message)
            got = 0
            while got < FLOOR_MESSAGE:
                k = near.recv_into(view[got:])
                if not k:
                    raise RuntimeError("the echo child closed its socket")
                got += k
            if i >= warmup:
                samples.append(clock() - t0)
        return percentiles(samples)
    finally:
        os.sched_setaffinity(0, affinity)
        near.close()  # EOF: the child exits
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def floor_cpus() -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(different cores, same core) to pin the floor to, or None on one CPU.

    Unpinned, the scheduler puts the two processes on one core (a wake-up is
    a context switch: ~10 µs on the 2-vCPU VM this was written on) or on two
    (a cross-core wake-up: ~35 µs there) and keeps that choice for a run, so
    an unpinned floor flips between runs by 3x. The baseline is the cross-core figure: the server's three busy
    processes cannot share one core, so its hops are cross-core ones."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return (cpus[0], cpus[1]), (cpus[1], cpus[1])


# --- `headrace serve` in a child process ----------------------------------------------


class ServerUnavailable(Exception):
    """`headrace serve` could not start here; the server benchmarks are skipped."""


def package(graph: str, source: str) -> bytes:
    """A .tar.gz graph package: package.toml + bench_graph.py (entry ``bench_graph:graph``)."""
    name = graph.replace("_", "-")
    manifest = textwrap.dedent(
        f"""
        [package]
        name = "{name}"
        version = "0.1.0"

        [metadata]
        graph_name = "{graph}"
        language = "python"
        entry = "bench_graph:graph"
        """
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "src"
        folder.mkdir()
        (folder / "package.toml").write_text(manifest)
        (folder / "bench_graph.py").write_text(source)
        return build_package(folder, Path(tmp) / "package.tar.gz").read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``headrace serve`` on a free port with a throw-away data dir. Use as a
    context manager: on exit the server is stopped and any worker it started
    that outlived it is killed, also when the benchmark failed."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="headrace-bench-")
        self.root = Path(self.tmp.name)
        self.port = _free_port()
        self.key = "clk_" + secrets.token_urlsafe(32)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, headers=self.auth, timeout=60.0)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 60.0) -> None:
        # None of the caller's HEADRACE_* settings: a configured store (say a
        # production PostgreSQL) or admin tenant must not leak into the bench.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
        env |= {
            "HEADRACE_ADMIN_KEY": self.key,
            "HEADRACE_DATA_DIR": str(self.root / "data"),
            "HEADRACE_PORT": str(self.port),
            "HEADRACE_HOST": "127.0.0.1",
        }
        with self.log_path.open("ab") as log:
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "headrace", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
                )
            except OSError as e:
                raise ServerUnavailable(f"cannot run `headrace serve`: {e}") from e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerUnavailable(f"`headrace serve` exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise ServerUnavailable(f"`headrace serve` did not answer /health within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:].strip() or "(no output)"
        except OSError:
            return "(no log)"

    def deploy(self, graph: str, source: str, timeout: float = 60.0) -> None:
        r = self.http.post("/tenants/public/workflows", files={"file": ("pkg.tar.gz", package(graph, source))})
        if r.status_code not in (200, 201):
            raise RuntimeError(f"upload of '{graph}' refused: {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.http.get(f"/v1/health/graphs/{graph}")
            if r.status_code == 200:
                detail = r.json()
                if detail["health"]["state"] == "running":
                    return
                if detail["health"]["state"] == "crash_loop":
                    raise RuntimeError(f"graph '{graph}' cannot start: {detail['last_error']}")
            time.sleep(0.05)
        raise RuntimeError(f"graph '{graph}' not running within {timeout:.0f} s: {r.text}\n{self.log_tail()}")

    def fires(self, graph: str, limit: int = 1000) -> list[dict[str, Any]]:
        r = self.http.get(f"/v1/health/reactors/{graph}/fires", params={"limit": limit})
        r.raise_for_status()
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the supervisor checkpoints and stops its workers
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Workers run in their own session and stop when the supervisor's pipe
        # closes; one that did not (a hung node, a killed supervisor) is killed.
        deadline = time.monotonic() + 10
        while self.workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.workers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.http.close()
        self.tmp.cleanup()

    def workers(self) -> list[int]:
        """Pids of live worker processes of this server (their command line
        names this server's data dir, unique to it)."""
        marker = str(self.root).encode()
        pids = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"headrace.supervisor.worker" in cmdline and marker in cmdline:
                pids.append(int(entry.name))
        return pids


# --- a thin WebSocket producer --------------------------------------------------------


class Producer:
    """A blocking WebSocket client for one accumulator.

    websockets' sans-I/O ``ClientProtocol`` does the handshake and parses what
    the server sends (acks, pings); outgoing frames are built here (`frame`),
    masked with websockets' C ``apply_mask`` as RFC 6455 requires: about a
    microsecond a frame, and for throughput they are all built before the
    clock starts. Writes are serialised by a lock: a writer thread and the
    thread reading acks (which answers pings) share the socket.
    """

    def __init__(self, url: str, headers: dict[str, str], timeout: float = 60.0) -> None:
        uri = parse_uri(url)
        self.sock = socket.create_connection((uri.host, uri.port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proto = ClientProtocol(uri, max_size=None)
        self.lock = threading.Lock()
        self.inbox: deque[dict[str, Any]] = deque()
        request = self.proto.connect()
        for name, value in headers.items():
            request.headers[name] = value
        self.proto.send_request(request)
        self._flush()
        while self.proto.state is State.CONNECTING:
            self._pump()
        if self.proto.handshake_exc is not None:
            self.sock.close()
            raise RuntimeError(f"WebSocket handshake to {url} failed: {self.proto.handshake_exc}")

    @staticmethod
    def frame(payload: bytes) -> bytes:
        """One masked text frame (payloads here are JSON)."""
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        # A fast non-cryptographic mask: it only has to differ between frames.
        mask = random.randbytes(4)
        return head + mask + apply_mask(payload, mask)

    def send_raw(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def recv(self) -> dict[str, Any]:
        """The next JSON message from the server (an ack or a refusal)."""
        while not self.inbox:
            self._pump()
        return self.inbox.popleft()

    def _pump(self) -> None:
        data = self.sock.recv(1 << 16)
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
        for event in self.proto.events_received():
            if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.inbox.append(orjson.loads(event.data))
            elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                raise RuntimeError(f"the server closed the WebSocket: {event.data!r}")
            elif isinstance(event, Response) and event.status_code != 101:
                raise RuntimeError(f"WebSocket handshake refused: {event.status_code} {event.body!r}")
        self._flush()  # pongs, close replies
        if not data:
            raise RuntimeError("the server closed the connection")

    def _flush(self) -> None:
        out = self.proto.data_to_send()
        if out:
            self.send_raw(b"".join(out))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proto.send_close()
            self._flush()
        self.sock.close()


def _expect_ack(reply: dict[str, Any], seq: int) -> None:
    if reply.get("ack") != seq:
        raise RuntimeError(f"expected {{'ack': {seq}}}, got {reply}")


# --- push → fire latency ---------------------------------------------------------------

#: The node computes the latency itself, in the worker, when it runs: the
#: frame carries the client's CLOCK_MONOTONIC (system-wide on Linux) send time.
LATENCY_GRAPH = """
import time

import headrace as hr


@hr.passthrough_accumulator
def stamped(event):
    return event


# sequential: every event fires, none is coalesced into a later one.
graph = hr.ComputationGraph("ws_latency", accumulators=[stamped], input_strategy="sequential")


@graph.node
def latency_ns(stamped):
    return time.monotonic_ns() - stamped["t"]
"""

#: Fires per fetch: the worker's fire log keeps the newest 1000.
_FIRES_PER_FETCH = 500


def push_to_fire(server: Server, n: int, warmup: int = 200) -> list[int]:
    """Latency samples (ns) of ``n`` events sent one at a time.

    Each event waits for the previous one's ack before it is sent, so it
    meets an idle pipeline: this is push → fire, not queueing. The ack (which
    waits for a durable checkpoint) is not inside the measured interval,
    which ends when the node runs; it only paces the sends. Pacing by a clock
    instead (no waiting) gives the same p50 at 1 kHz, but its p99 also counts
    the checkpoints of earlier events running beside later ones."""
    producer = Producer(f"{server.ws_url}/v1/ws/accumulator/stamped", server.auth)
    samples: dict[int, int] = {}
    try:
        seq = 0
        total = warmup + n
        while seq < total:
            for _ in range(min(_FIRES_PER_FETCH, total - seq)):
                seq += 1
                # The stamp is taken before the frame is built: framing (~1 µs)
                # is part of a producer's push.
                payload = b'{"t":%d,"i":%d}' % (time.monotonic_ns(), seq)
                producer.send_raw(Producer.frame(payload))
                _expect_ack(producer.recv(), seq)
            for fire in server.fires("ws_latency", _FIRES_PER_FETCH):
                if not fire["ok"]:
                    raise RuntimeError(f"a latency fire failed: {fire['error']}")
                samples[fire["inputs"]["stamped"]["i"]] = fire["outputs"]["latency_ns"]
    finally:
        producer.close()
    missing = [i for i in range(warmup + 1, total + 1) if i not in samples]
    if missing:
        raise RuntimeError(f"{len(missing)} events have no fire in the log (first: {missing[:5]})")
    return [samples[i] for i in range(warmup + 1, total + 1)]


# --- throughput -------------------------------------------------------------------------


def throughput_graph_source() -> str:
    """W1 (orderbook → compute → emit) as a package, with the very functions
    the in-process baseline calls."""
    functions = "\n\n".join(
        inspect.getsource(fn) for fn in (workloads.orderbook_fn, workloads.compute_fn, workloads.emit_fn)
    )
    return f"""
import headrace as hr

{functions}

orderbook = hr.passthrough_accumulator(name="orderbook")(orderbook_fn)
graph = hr.ComputationGraph("ws_w1", accumulators=[orderbook], criteria=hr.when_any(orderbook), input_strategy="sequential")
graph.node(name="compute")(compute_fn)
graph.node(name="emit")(emit_fn)
"""


def _chunks(frames: list[bytes], size: int = 256 * 1024) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    total = 0
    for i, f in enumerate(frames):
        total += len(f)
        if total >= size:
            out.append(b"".join(frames[start : i + 1]))
            start, total = i + 1, 0
    if start < len(frames):
        out.append(b"".join(frames[start:]))
    return out


def ws_rate(server: Server, payloads: list[bytes], ack: str) -> float:
    """Events/s of one connection sending every payload back to back, from
    the first byte sent to the ack covering the last frame. With
    ``ack="each"`` this client parses one ack per event (a few µs of its CPU
    each, in websockets' parser), so that row is a reference, not a target."""
    chunks = _chunks([Producer.frame(p) for p in payloads])
    n = len(payloads)
    producer = Producer(f"{server.ws_url}/v1/ws/accumulator/orderbook?ack={ack}", server.auth)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            for chunk in chunks:
                producer.send_raw(chunk)
        except BaseException as e:  # noqa: BLE001 - reported by the reading thread
            failed.append(e)

    writer = threading.Thread(target=write, name="bench-ws-writer", daemon=True)
    try:
        started = time.perf_counter()
        writer.start()
        last = 0
        while last < n:
            reply = producer.recv()
            if "ack" not in reply:
                raise RuntimeError(f"frame refused: {reply}")
            last = reply["ack"]
        elapsed = time.perf_counter() - started
        writer.join(30)
        if failed:
            raise RuntimeError(f"sending failed: {failed[0]}")
    finally:
        producer.close()
    return n / elapsed


def in_process_rate(payloads: list[bytes], runs: int) -> float:
    """The same graph and bytes in this process (thread mode, push_bytes,
    no checkpoints): what the worker's engine does without the server."""

    def once() -> float:
        with hr.Runtime(workloads.w1_graph(), mode="thread") as rt:
            push = rt.push_bytes
            started = time.perf_counter()
            for p in payloads:
                push("orderbook", p)
            rt.drain()
            elapsed = time.perf_counter() - started
            assert rt.stats()["fire_count"] == len(payloads)
        return len(payloads) / elapsed

    return statistics.median(once() for _ in range(runs))


# --- the suite's entry point --------------------------------------------------------


def run(events: int, samples: int, runs: int) -> list[Result]:
    """Every server row; raises ServerUnavailable if the server cannot start."""
    trips = max(samples * 4, 5000)
    pins = floor_cpus()
    floor = round_trip(trips, "unix", pins[0] if pins else None)
    same_core = round_trip(trips, "unix", pins[1]) if pins else floor
    tcp = round_trip(trips, "tcp", pins[0] if pins else None)
    with Server() as server:
        server.deploy("ws_latency", LATENCY_GRAPH)
        lat = percentiles(push_to_fire(server, samples))

        server.deploy("ws_w1", throughput_graph_source())
        payloads = [orjson.dumps(e) for e in workloads.events(events, seed=11)]
        ws_rate(server, payloads[: min(5000, events)], "batch")  # warm-up: imports, caches, first checkpoints
        batch = [ws_rate(server, payloads, "batch") for _ in range(runs)]
        each_n = max(events // 4, 1000)
        each = ws_rate(server, payloads[:each_n], "each")
    engine = in_process_rate(payloads, runs)
    floors = {"unix_cross_core": floor, "unix_same_core": same_core, "tcp_cross_core": tcp, "pinned": pins is not None}
    lat_meta = {"samples": samples, "floors": floors, "p99.9": lat["p99.9"]}
    return [
        Result("WS push → fire", "p50", lat["p50"], "µs", floor["p50"], "lower", "<= 4x", lat_meta),
        Result("WS push → fire", "p99", lat["p99"], "µs", floor["p99"], "lower", "<= 4x", lat_meta),
        Result("Loopback RTT", "TCP p50", tcp["p50"], "µs", floor["p50"], "lower", "ref", {"floors": floors}),
        Result(
            "WS throughput", "ack=batch", statistics.median(batch), "events/s", engine, "higher", ">= 100,000/s",
            {"events": events, "runs": [round(r) for r in batch]},
        ),
        Result("WS throughput", "ack=each", each, "events/s", engine, "higher", "ref", {"events": each_n}),
    ]


def _print(results: list[Result]) -> None:
    for r in results:
        print(f"{r.workload:<16} {r.variant:<10} {r.value:>12,.1f} {r.unit:<9} baseline {r.baseline:>12,.1f}  {r.target}")


if __name__ == "__main__":
    # `python -m benches.server [--quick]`: the server rows alone.
    quick = "--quick" in sys.argv[1:]
    started = time.perf_counter()
    _print(run(20_000 if quick else 200_000, 500 if quick else 5000, 1 if quick else 3))
    print(f"({time.perf_counter() - started:.1f} s)")
