"""Uploads are unpacked and checked off the event loop, at most
``upload_concurrency`` at a time: while heavy uploads are being checked, other
tenants are served at once."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_util import PRICES, Server, package_bytes

from headrace.server.config import ServerLimits

UPLOADS = 4


def cli_key(data_dir: Path, tenant: str, role: str) -> str:
    p = subprocess.run([sys.executable, "-m", "headrace", "keys", "create", "--tenant", tenant, "--role", role,
                        "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def heavy_package(graph: str, data: list[bytes]) -> bytes:
    """A valid bz2 package whose data files take seconds to decompress, within
    every package limit (archive, expanded size, ratio)."""
    manifest = f'[package]\nname = "{graph}"\nversion = "0.1.0"\n\n[metadata]\ngraph_name = "{graph}"\nentry = "graph_module:graph"\n'
    source = PRICES.replace('ComputationGraph("prices"', f'ComputationGraph("{graph}"')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2", compresslevel=9) as tar:
        for name, raw in [("package.toml", manifest.encode()), ("graph_module.py", source.encode())] + [
            (f"data{i}.txt", d) for i, d in enumerate(data)
        ]:
            info = tarfile.TarInfo(f"{graph}/{name}")
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture(scope="module")
def heavy() -> Iterator[list[bytes]]:
    # Two symbols at random: ~1 bit a byte, so bz2 works hard and the archive stays big.
    symbols = bytes(65 if b & 1 else 66 for b in range(256))
    data = [os.urandom(8 * 1024 * 1024).translate(symbols) for _ in range(2)]
    archives = [heavy_package(f"heavy{i}", data) for i in range(UPLOADS)]
    limits = ServerLimits().package
    for a in archives:
        assert len(a) <= limits.max_archive_bytes and 16 * 1024 * 1024 <= limits.max_ratio * len(a)
    yield archives


def test_other_tenants_are_served_while_heavy_uploads_are_checked(tmp_path: Path, heavy: list[bytes]) -> None:
    server = Server(tmp_path / "data")
    try:
        other = cli_key(server.data_dir, "other", "admin")
        server.start()
        server.deploy(package_bytes("prices", PRICES), "prices", tenant="other", key=other)
        started = threading.Event()

        def upload(archive: bytes) -> httpx.Response:
            started.set()
            with httpx.Client(base_url=server.url, headers=server.auth(), timeout=300) as client:
                return client.post("/v1/tenants/public/workflows", files={"file": ("pkg.tar.bz2", archive)})

        with ThreadPoolExecutor(UPLOADS) as pool, httpx.Client(base_url=server.url, headers=server.auth(other),
                                                               timeout=60) as health:
            assert health.get("/v1/health/graphs").status_code == 200  # the connection is open before timing
            futures: list[Future[httpx.Response]] = [pool.submit(upload, a) for a in heavy]
            # Each upload being checked has a folder in packages/.incoming: count them.
            incoming = server.data_dir / "packages" / ".incoming"
            checked_at_once: list[int] = []

            def watch() -> None:
                while not all(f.done() for f in futures):
                    with contextlib.suppress(OSError):
                        checked_at_once.append(len(list(incoming.iterdir())) if incoming.exists() else 0)
                    time.sleep(0.02)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            started.wait(10)

            def checking() -> bool:
                with contextlib.suppress(OSError):
                    return incoming.exists() and any(incoming.iterdir())
                return False

            # Each measurement counts only if an upload was being unpacked or
            # checked both before and after it (a fast machine may finish the
            # checks quickly: the test waits for them, then measures).
            latencies: list[float] = []
            deadline = time.monotonic() + 120
            while len(latencies) < 10 and not all(f.done() for f in futures) and time.monotonic() < deadline:
                if not checking():
                    time.sleep(0.01)
                    continue
                t = time.perf_counter()
                r = health.get("/v1/health/graphs")
                took = time.perf_counter() - t
                assert r.status_code == 200 and [g["name"] for g in r.json()["items"]] == ["prices"], r.text
                if checking():
                    latencies.append(took)
                time.sleep(0.05)
            results = [f.result(timeout=300) for f in futures]
            watcher.join(10)
        print(f"health latency during {UPLOADS} uploads: max {max(latencies) * 1000:.1f} ms, "
              f"median {statistics.median(latencies) * 1000:.1f} ms")
        assert len(latencies) >= 5, f"only {len(latencies)} requests were answered while uploads were checked"
        assert max(latencies) <= 0.1, [round(x * 1000, 1) for x in latencies]
        assert all(r.status_code == 201 for r in results), [r.text for r in results]
        # At most upload_concurrency (2) are unpacked and checked at once.
        assert max(checked_at_once) == ServerLimits().upload_concurrency, sorted(set(checked_at_once))
    finally:
        server.close()
