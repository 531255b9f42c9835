"""A PostgreSQL store without psycopg installed names the install command."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Runs in a fresh interpreter whose imports of psycopg* fail as if it were not installed.
SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoPsycopg(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("psycopg", "psycopg_pool", "psycopg_binary"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoPsycopg())

    import headrace as hr
    """
)


@pytest.mark.parametrize("body", [
    'from headrace.checkpoint.store import open_store\nopen_store("postgresql://x@127.0.0.1:1/db")',
    textwrap.dedent("""
        @hr.passthrough_accumulator
        def price(event):
            return event

        graph = hr.ComputationGraph("prices", accumulators=[price])

        @graph.node
        def out(price):
            return price

        hr.Runtime(graph, store="postgresql://x@127.0.0.1:1/db")
    """),
], ids=["open_store", "Runtime"])
def test_a_postgres_store_without_psycopg_names_the_install_command(body: str) -> None:
    p = subprocess.run([sys.executable, "-c", SCRIPT + textwrap.dedent(body)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("headrace.errors.MissingDependencyError:"), p.stderr
    assert "pip install 'headrace[postgres]'" in last and "psycopg" in last, p.stderr
