"""The input journal and replay: a live thread-mode run recorded with
``Runtime(journal=...)`` replays, on a simulated clock, to the same fires."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app
from headrace.journal import read_journal

T0 = 1_767_323_045.0


def recorded_graph() -> hr.ComputationGraph:
    tick = hr.passthrough("tick")

    @hr.batch_accumulator(flush_interval="15ms")
    def fills(events: list[Any]) -> list[Any]:
        return list(events)

    g = hr.ComputationGraph("recorded", accumulators=[tick, fills], criteria=hr.when_any(tick, fills))

    @g.node
    def out(tick: Any, fills: Any) -> Any:
        if tick == 3:
            raise RuntimeError("three is refused")
        return {"tick": tick, "fills": fills}

    return g


def shape(fires: list[hr.FireResult]) -> list[tuple[Any, ...]]:
    return [(f.id, f.trigger, f.outputs, None if f.error is None else str(f.error), f.attempt) for f in fires]


OPTIONS: dict[str, Any] = {"retry_backoff": "5ms", "max_attempts": 2}


def test_a_recorded_thread_mode_run_with_timers_replays_to_the_same_fires(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    live: list[hr.FireResult] = []
    with hr.Runtime(recorded_graph(), mode="thread", on_fire=live.append, journal=journal, **OPTIONS) as rt:
        for k in range(8):
            rt.push("fills", {"fill": k})
            if k % 3 == 0:
                time.sleep(0.03)  # the batch flushes on its timer
            rt.push("tick", k)  # tick 3 fails, then is retried on the backoff timer
            if k == 3:
                time.sleep(0.02)
        rt.push_bytes("tick", b"42")
        rt.drain()
        rt.pause()
        rt.push("tick", 8)
        rt.resume()
        rt.fire()
        rt.drain()
        stats = rt.stats()["journal"]
        assert stats["path"] == str(journal) and stats["failing"] is False and stats["unrecorded"] == 0
    kinds = [e.kind for e in read_journal(journal)]
    assert kinds.count("event") == 18 and "advance" in kinds and "fire" in kinds and kinds.count("pause") == 2
    assert any(f.trigger == "fills" for f in live), "a batch flushed on its timer"
    assert any(f.attempt == 2 for f in live), "a failed fire was retried"
    assert shape(hr.replay(recorded_graph(), journal, **OPTIONS)) == shape(live)


def test_replay_of_files_of_timed_events(tmp_path: Path) -> None:
    rows = [[T0, "fills", {"fill": 1}], [T0 + 0.001, "tick", 1], [T0 + 0.050, "fills", {"fill": 2}]]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mp = tmp_path / "in.msgpack"
    mp.write_bytes(b"".join(msgpack.packb(r) for r in rows))
    expected = [
        ("tick", {"tick": 1, "fills": None}),
        ("fills", {"tick": 1, "fills": [{"fill": 1}]}),  # flushed after the successful fire
        ("fills", {"tick": 1, "fills": [{"fill": 2}]}),  # flushed on its timer
    ]
    for source in (jsonl, mp, [tuple(r) for r in rows]):
        fires = hr.replay(recorded_graph(), source, until=T0 + 1)
        assert [(f.trigger, f.outputs["out"]) for f in fires] == expected
        assert round(fires[2].started_at - T0, 6) == 0.065
    bad = tmp_path / "bad.jsonl"
    bad.write_text('[1.0, "tick"]\n')
    with pytest.raises(hr.HeadraceError, match=r"record 1 is not \[time, accumulator, event\]"):
        hr.replay(recorded_graph(), bad)
    with pytest.raises(hr.HeadraceError, match="give a journal directory"):
        hr.replay(recorded_graph(), tmp_path / "in.csv")


def test_a_journal_of_another_graph_names_the_missing_accumulator(tmp_path: Path) -> None:
    other = hr.ComputationGraph("recorded", accumulators=[hr.passthrough("quotes")])
    other.node(name="n")(lambda quotes: quotes)
    with hr.Runtime(other, journal=tmp_path / "j") as rt:
        rt.push("quotes", 1)
    with pytest.raises(hr.HeadraceError, match="accumulator 'quotes', which graph 'recorded' does not have"):
        hr.replay(recorded_graph(), tmp_path / "j")


def test_an_event_the_journal_cannot_encode_is_taken_and_counted(tmp_path: Path) -> None:
    with hr.Runtime(recorded_graph(), journal=tmp_path / "j", check_checkpointable=False) as rt:
        fire = rt.push("tick", object())
        assert fire is not None and fire.error is None
        s = rt.stats()
        assert s["journal"]["unrecorded"] == 1
        assert "accumulator 'tick': event not journaled" in s["journal"]["last_error"]
    assert [e.kind for e in read_journal(tmp_path / "j")] == []


def test_headrace_replay_prints_the_fires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mygraph.py").write_text(
        "import headrace as hr\n"
        "g = hr.ComputationGraph('cli', accumulators=[hr.passthrough('a')])\n"
        "g.node(name='double')(lambda a: a * 2)\n"
    )
    rows = tmp_path / "in.jsonl"
    rows.write_text('[1.0, "a", 2]\n[2.0, "a", 5]\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["replay", str(rows), "--graph", "mygraph:g"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(x["outputs"], x["started_at"]) for x in lines] == [({"double": 4}, 1.0), ({"double": 10}, 2.0)]
    result = CliRunner().invoke(app, ["replay", str(rows), "--graph", "mygraph:nothing"])
    assert result.exit_code != 0 and "is not a ComputationGraph" in result.output


def chain_graph() -> hr.ComputationGraph:
    book = hr.passthrough("book")
    g = hr.ComputationGraph("chain", accumulators=[book])

    @g.node
    def mid(book: Any) -> Any:
        if book % 97 == 13:
            raise RuntimeError(f"{book} refused")
        return book * 2

    @g.node
    def fmt(mid: Any) -> Any:
        return {"mid": mid}

    return g


@pytest.mark.parametrize("pairs", [False, True])
def test_a_recorded_thread_mode_chain_run_journals_each_event_once(tmp_path: Path, pairs: bool) -> None:
    # on_output keeps the graph's events on chain runs (on_fire would not).
    journal = tmp_path / "journal"
    live: list[Any] = []
    events = list(range(2000))
    options: dict[str, Any] = {"max_attempts": 2, "retry_backoff": 0}
    with hr.Runtime(chain_graph(), mode="thread", on_fire=hr.on_output("fmt", live.append), journal=journal, **options) as rt:
        if pairs:
            rt.push_pairs([("book", e) for e in events])
        else:
            rt.push_many("book", events)
        rt.drain()
        assert rt.stats()["fires_failed"] > 0
    recorded = [e for e in read_journal(journal) if e.kind == "event"]
    assert len(recorded) == len(events)
    replayed = hr.replay(chain_graph(), journal, **options)
    assert [f.outputs["fmt"] for f in replayed if f.error is None] == live
    assert len(live) == len(events) - sum(1 for e in events if e % 97 == 13)


@pytest.mark.parametrize("mode", ["thread", "inline"])
@pytest.mark.parametrize("strategy", ["latest", "burst"])
def test_updates_a_live_run_collapsed_collapse_again_in_the_replay(tmp_path: Path, strategy: str, mode: str) -> None:
    book = hr.passthrough("book")
    trades = hr.passthrough("trades")

    def graph() -> hr.ComputationGraph:
        g = hr.ComputationGraph("collapsing", accumulators=[book, trades], input_strategy=strategy)  # type: ignore[arg-type]

        @g.node
        def seen(book: Any, trades: Any) -> Any:
            return (book, trades)

        return g

    journal = tmp_path / "journal"
    live: list[hr.FireResult] = []
    with hr.Runtime(graph(), mode=mode, on_fire=live.append, journal=journal) as rt:  # type: ignore[arg-type]
        for burst in range(20):
            rt.push_many("book", range(burst * 100, burst * 100 + 100))
            rt.push("trades", burst)
            time.sleep(0.002)
        rt.drain()
    # Thread mode collapses updates that arrived together; inline fires for each.
    assert len(live) < 2000 if mode == "thread" else len(live) == 2020
    assert "settle" in {e.kind for e in read_journal(journal)}
    replayed = hr.replay(graph(), journal)
    assert shape(replayed) == shape(live)


ROUTED = """
import headrace as hr

graph = hr.ComputationGraph("routed", accumulators=[hr.passthrough("a")])

@graph.node
def half(a):
    return a / 2

@graph.node(routes={"big": ["shout"], "small": ["whisper"]})
def size(half):
    return hr.Route("big" if half > 5 else "small", half)

@graph.node
def shout(size):
    return f"{size}!"

@graph.node
def whisper(size):
    return f"({size})"
"""


def test_one_fire_traced_node_by_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from headrace.trace import trace_fire

    (tmp_path / "routed.py").write_text(ROUTED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import routed

    with hr.Runtime(routed.graph, journal=tmp_path / "j") as rt:
        rt.push("a", 4)
        rt.push("a", 30)
    fires = hr.replay(routed.graph, tmp_path / "j", record_inputs=True)
    steps = trace_fire(routed.graph, fires[1])
    assert [(s.node, s.output, s.route, s.skipped) for s in steps] == [
        ("half", 15.0, None, False),
        ("size", 15.0, "big", False),
        ("shout", "15.0!", None, False),
        ("whisper", None, None, True),
    ]
    assert steps[0].args == {"a": 30} and steps[0].ns > 0
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "j"), "--graph", "routed:graph", "--fire", "1"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[0]["fire"] == 1 and lines[0]["inputs"] == {"a": 4}
    assert [(x["node"], x["output"]) for x in lines[1:]] == [("half", 2.0), ("size", 2.0), ("shout", None), ("whisper", "(2.0)")]
    missing = CliRunner().invoke(app, ["replay", str(tmp_path / "j"), "--graph", "routed:graph", "--fire", "9"])
    assert missing.exit_code == 1 and "no fire 9 in the replay (its fires: 1-2)" in missing.output
