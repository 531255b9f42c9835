"""A deployed graph whose package asks for a journal records every input
under its tenant's folder; replaying it gives the fires the server made."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import headrace as hr
from headrace.journal import read_journal
from headrace.packages.manifest import ManifestError, parse_manifest
from server_util import PRICES, Server, package_bytes

JOURNAL = """
[journal]
fsync = "never"
keep_mb = 8
"""


def test_a_deployed_graph_journals_its_inputs_and_replays_to_its_fires(server: Server, tmp_path: Path) -> None:
    server.deploy(package_bytes("prices", PRICES, extra_manifest=JOURNAL), "prices")
    for p in range(5):
        r = server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": p}})
        assert r.status_code == 200, r.text
    server.wait_for(lambda: server.graph("prices")["health"]["fire_count"] == 5, what="five fires")
    journal = server.graph("prices")["journal"]
    assert journal["failing"] is False and journal["next_seq"] == 6, journal
    # A restarted worker appends to the same journal.
    os.kill(server.graph("prices")["worker"]["pid"], signal.SIGKILL)
    server.wait_for(lambda: server.graph("prices")["worker"]["restarts"] == 1, what="restart")
    server.wait_for(lambda: server.graph("prices")["health"]["state"] == "running", what="running again")
    server.http.post("/v1/health/accumulators/price/inject", json={"event": {"p": 5}})
    server.wait_for(lambda: server.graph("prices")["health"]["fire_count"] == 6, what="sixth fire")

    directory = server.data_dir / "tenants" / "public" / "journals" / "prices"
    events = [e for e in read_journal(directory) if e.kind == "event"]
    assert [e.accumulator for e in events] == ["price"] * 6
    ns: dict[str, object] = {}
    exec(PRICES, ns)  # the package's own graph, built here
    fires = hr.replay(ns["graph"], directory)  # type: ignore[arg-type]
    served = [f["outputs"] for f in reversed(server.fires("prices"))]
    assert [f.outputs for f in fires] == served == [{"double": 2 * p} for p in range(6)]


def test_journal_settings_are_checked() -> None:
    base = '[package]\nname = "x"\nversion = "1"\n[metadata]\ngraph_name = "x"\nentry = "m:graph"\n'
    assert parse_manifest(base + JOURNAL).journal is not None
    assert parse_manifest(base).journal is None
    with pytest.raises(ManifestError, match='journal.fsync: must be "batch", "never" or a positive number'):
        parse_manifest(base + '[journal]\nfsync = "sometimes"\n')
    with pytest.raises(ManifestError, match="journal.keep_mb: must be a positive integer"):
        parse_manifest(base + "[journal]\nkeep_mb = -1\n")
    with pytest.raises(ManifestError, match="journal"):
        parse_manifest(base + '[journal]\npath = "/etc"\n')


def test_a_package_cannot_ask_for_more_journal_than_the_server_allows(tmp_path: Path) -> None:
    """A hostile package asking for a huge journal (a flood in bytes) gets the
    server's journal_mb, in segments its worker may write, under its own
    tenant's folder whatever its graph is called."""
    from types import SimpleNamespace

    from headrace.names import path_under
    from headrace.server.config import ServerConfig, ServerLimits
    from headrace.supervisor.process import GraphWorker
    from headrace.supervisor.sandbox import Limits

    package = tmp_path / "pkg"
    package.mkdir()
    base = '[package]\nname = "x"\nversion = "1"\n[metadata]\ngraph_name = "x"\nentry = "m:graph"\n'
    (package / "package.toml").write_text(base + "[journal]\nkeep_mb = 1000000000\n")
    worker = SimpleNamespace(
        spec=SimpleNamespace(package_dir=package, graph="x"),
        config=ServerConfig(limits=ServerLimits(journal_mb=64)),
    )
    launch = SimpleNamespace(policy=SimpleNamespace(limits=Limits(file_mb=10)))
    home = tmp_path / "tenants" / "t1"
    settings = GraphWorker._journal(worker, home, launch)  # type: ignore[arg-type]
    assert settings is not None
    assert settings["keep_bytes"] == 64 << 20 and settings["segment_bytes"] == 5 << 20
    assert Path(settings["path"]) == home / "journals" / "x"
    # A graph name built to leave the tenant's folder is refused.
    with pytest.raises(hr.errors.InvalidNameError):
        path_under(home, "journals", "../t2")
