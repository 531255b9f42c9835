"""The `headrace` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from headrace.errors import HeadraceError
from headrace.packages import build_package

app = typer.Typer(help="headrace: low-latency computation graphs.", no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """headrace: low-latency computation graphs."""


@app.command()
def package(
    directory: Annotated[Path, typer.Argument(help="Folder with package.toml and the graph's Python source.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Archive to write.")] = None,
) -> None:
    """Builds a graph package archive (<name>-<version>.tar.gz) from DIRECTORY."""
    try:
        path = build_package(directory, output)
    except HeadraceError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))
