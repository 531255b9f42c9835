"""headrace.testing.crash_check: real SIGKILLs of a child process running a
graph, restarts from the store, and a comparison with an uninterrupted run
that passes for a graph whose state is all checkpointed and fails for one
that hides state outside its checkpoint."""

from __future__ import annotations

import pytest

import headrace as hr
from crash_graphs import fills_only
from headrace.testing import crash_check


@pytest.mark.parametrize(("backend", "mode", "kills"), [("sqlite", "thread", 4), ("sqlite", "inline", 2), ("postgres", "thread", 2)])
def test_a_checkpointed_graph_survives_kills_with_the_same_final_state(request, tmp_path, backend, mode, kills) -> None:
    store = f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    report = crash_check("crash_graphs:graph", "crash_graphs:events", store=store, kills=kills, mode=mode)
    assert report.ok and report.differences == []
    assert report.events == 2300
    assert report.kills == kills and len(report.resumed_from) == kills + 1
    # Restarts resumed from checkpointed positions, never behind an earlier one.
    assert report.resumed_from == sorted(report.resumed_from)
    assert report.resumed_from[0] == 0


def test_state_outside_the_checkpoint_is_reported(tmp_path) -> None:
    # Seeded so that the kill points are known to fall after a checkpoint: the
    # last run then resumes mid-stream with its module variable back at 0.
    with pytest.raises(AssertionError) as caught:
        crash_check("crash_graphs:broken", fills_only(), store=f"sqlite:///{tmp_path}/s.db", kills=4, seed=1)
    text = str(caught.value)
    assert "crash_check of graph 'broken': 1500 events" in text
    assert "difference(s) (crashed vs uninterrupted)" in text
    assert "reactor.cache[0][1]: " in text and "!= 1500" in text


def test_ignore_leaves_a_path_out(tmp_path) -> None:
    report = crash_check(
        "crash_graphs:broken",
        fills_only(),
        store=f"sqlite:///{tmp_path}/s.db",
        kills=3,
        seed=1,
        ignore=["reactor"],
    )
    assert report.ok and report.kills == 3


def test_hr_testing_is_the_module() -> None:
    assert hr.testing.crash_check is crash_check


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"graph_ref": "crash_graphs"}, "graph_ref must be 'module:attr'"),
        ({"graph_ref": "crash_graphs:nothing"}, "cannot be imported"),
        ({"graph_ref": "crash_graphs:_HIDDEN"}, "is a dict, not a ComputationGraph"),
        ({"events": [("nope", 1)]}, "has no accumulator 'nope'"),
        ({"events": [("fills",)]}, r"events\[0\] is not an \(accumulator, event\) pair"),
        ({"store": "memory://x"}, "outlives a process"),
        ({"runtime_options": {"tenant": "t"}}, "sets tenant= itself"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, error) -> None:
    args = {"graph_ref": "crash_graphs:graph", "events": [], "store": f"sqlite:///{tmp_path}/s.db", **kwargs}
    with pytest.raises(hr.SettingError, match=error):
        crash_check(args.pop("graph_ref"), args.pop("events"), **args)
