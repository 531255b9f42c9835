"""librdkafka's lines go through ``logging`` once per distinct line per
window: an unreachable broker no longer writes dozens of lines a second."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

import headrace as hr


def test_an_unreachable_broker_does_not_flood_the_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_VAR_NOWHERE", "127.0.0.1:9")  # nothing listens there

    @hr.stream_accumulator(topic="t", broker="NOWHERE")
    def quotes(event: Any) -> Any:
        return event

    g = hr.ComputationGraph("unreachable", accumulators=[quotes])
    g.node(name="n")(lambda quotes: quotes)
    with caplog.at_level(logging.DEBUG, logger="headrace"), hr.Runtime(g, mode="thread") as rt:
        deadline = time.monotonic() + 30
        while rt.stats()["accumulators"]["quotes"]["health"] != "disconnected":
            assert time.monotonic() < deadline, "the source says the broker is unreachable"
            time.sleep(0.1)
        time.sleep(2)  # librdkafka keeps retrying meanwhile
    lines = [r.getMessage() for r in caplog.records if r.name == "headrace.kafka"]
    assert lines, "librdkafka's lines reach logging"
    # Each distinct line once in the window (a repeat later carries its count).
    assert len(lines) == len(set(lines)), lines
