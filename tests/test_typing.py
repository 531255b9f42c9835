"""The public API is typed: mypy --strict passes and _core.pyi matches the extension."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_package_passes_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_stub_matches_the_extension() -> None:
    result = run("mypy.stubtest", "headrace._core")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_ships_py_typed() -> None:
    import headrace

    assert (Path(headrace.__file__).parent / "py.typed").exists()
