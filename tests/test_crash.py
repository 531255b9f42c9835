"""SIGKILL at random points: after restarts, every event of the stream is in
the accumulator state exactly once, in order: no gap, nothing applied twice."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headrace.checkpoint import inspect

CHILD = Path(__file__).with_name("_crash_child.py")
# Long enough that no child finishes before its kill (each gets ~0.02-0.3 s).
TOTAL = 100_000


def start_child(store: str, tenant: str, mode: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), store, tenant, str(TOTAL), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("START"):
        child.kill()
        _, err = child.communicate(timeout=30)
        raise AssertionError(f"child did not start: {line!r} {err}")
    return child


def applied_state(store: str, tenant: str) -> dict[str, object]:
    state: dict[str, object] = inspect(store, "crash", tenant)["accumulator:applied"]["user_state"]
    return state


@pytest.mark.parametrize(("backend", "mode", "kills"), [("sqlite", "thread", 20), ("sqlite", "inline", 10), ("postgres", "thread", 10)])
def test_sigkill_loses_nothing_and_applies_nothing_twice(request, tmp_path, tenant, backend, mode, kills) -> None:
    store = f"sqlite:///{tmp_path}/crash.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    progress = []
    for _ in range(kills):
        child = start_child(store, tenant, mode)
        time.sleep(rng.uniform(0.02, 0.3))
        assert child.poll() is None, "the child finished before its kill: the stream is too short"
        child.kill()  # SIGKILL: no cleanup, no final checkpoint
        child.communicate(timeout=30)
        progress.append(applied_state(store, tenant)["next"])
    assert progress == sorted(progress) and progress[-1] > 0, progress
    child = start_child(store, tenant, mode)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0 and "DONE" in out, err
    state = applied_state(store, tenant)
    assert state["violations"] == [], f"events replayed into state or skipped: {state['violations'][:5]}"
    assert state["next"] == TOTAL
    # Every event was applied once per run that did not die before checkpointing it;
    # replays after a kill re-apply only what the lost run had not checkpointed.
    assert state["applied"] == TOTAL
