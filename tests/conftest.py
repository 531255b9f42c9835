"""Shared fixtures: every semantic test runs in inline and in thread mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import os
import uuid

import pytest
from hypothesis import HealthCheck, settings

import headrace as hr

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("ci" if __import__("os").environ.get("CI") else "default")


@pytest.fixture(params=["inline", "thread"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Harness:
    """A runtime plus the fires it reported, the same way in both modes."""

    def __init__(self, graph: hr.ComputationGraph, mode: str, **options: Any) -> None:
        self.fires: list[hr.FireResult] = []
        self.rt = hr.Runtime(graph, mode=mode, on_fire=self.fires.append, **options)  # type: ignore[arg-type]

    def push(self, name: str, event: Any) -> None:
        self.rt.push(name, event)

    def settle(self) -> None:
        self.rt.drain(timeout=30)

    def outputs(self, node: str) -> list[Any]:
        self.settle()
        return [f.outputs[node] for f in self.fires if f.ok and node in f.outputs]

    def close(self) -> None:
        self.rt.close()


class AsyncHarness(Harness):
    """A Harness for graphs that may have async callables: inline pushes of
    such a graph go through `apush` on a fresh event loop; the errors an
    inline push raises are collected instead of raised."""

    def __init__(self, graph: hr.ComputationGraph, mode: str, **options: Any) -> None:
        super().__init__(graph, mode, **options)
        self.errors: list[BaseException] = []

    def push(self, name: str, *events: Any) -> None:  # type: ignore[override]
        if self.rt.mode == "thread":
            for e in events:
                self.rt.push(name, e)
            self.settle()
            return

        async def each() -> None:
            for e in events:
                try:
                    await self.rt.apush(name, e)
                except hr.HeadraceError as err:
                    self.errors.append(err)

        asyncio.run(each())

    def outputs(self, node: str) -> list[Any]:
        return [f.outputs[node] for f in self.fires if f.ok and node in f.outputs]

    def wait_for(self, count: int) -> None:
        """Thread mode retries on its timer: wait (up to 30 s) for `count` fires."""
        deadline = time.monotonic() + 30
        while self.rt.mode == "thread" and len(self.fires) < count and time.monotonic() < deadline:
            time.sleep(0.005)

    def retry(self) -> None:
        """Inline: retries failed inputs now (thread mode does on its timer)."""
        if self.rt.mode == "inline":
            try:
                self.rt.drain()
            except hr.HeadraceError as err:
                self.errors.append(err)


def _harnesses(cls: type[Harness], mode: str) -> Iterator[Any]:
    """A factory of `cls` harnesses in `mode`, all closed at the test's end."""
    made: list[Harness] = []

    def make(graph: hr.ComputationGraph, **options: Any) -> Harness:
        h = cls(graph, mode, **options)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def harness(mode: str) -> Iterator[Any]:
    yield from _harnesses(Harness, mode)


@pytest.fixture
def async_harness(mode: str) -> Iterator[Any]:
    yield from _harnesses(AsyncHarness, mode)


def _service(variable: str, what: str, start: str) -> str:
    """A test server's address from `variable`. In CI its absence is a failure,
    never a skip; elsewhere the tests that need it are skipped."""
    address = os.environ.get(variable)
    if not address:
        if os.environ.get("CI"):
            pytest.fail(f"{variable} is not set: CI must run the {what} tests (make test)")
        pytest.skip(f"no test {what}: run `{start}` and set {variable}")
    return address


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL server (scripts/postgres.sh start)."""
    return _service("HEADRACE_TEST_POSTGRES", "PostgreSQL", "scripts/postgres.sh start")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A durable store. Tests stay apart on PostgreSQL through the `tenant` fixture."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def kafka_broker() -> str:
    """The test Kafka broker (scripts/kafka.sh start)."""
    return _service("HEADRACE_TEST_KAFKA", "Kafka broker", "scripts/kafka.sh start")


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Any]:
    """A real ``headrace serve`` on a data dir of its own (tests/server_util.py);
    test files that need other settings define their own."""
    from server_util import Server

    s = Server(tmp_path / "data").start()
    try:
        yield s
    finally:
        s.close()
