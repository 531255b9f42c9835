"""The `headrace` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from headrace.errors import HeadraceError
from headrace.packages import build_package
from headrace.server.auth import KeyStore

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


keys = typer.Typer(help="API keys of a server's data folder.", no_args_is_help=True)
app.add_typer(keys, name="keys")

DataDir = Annotated[Path, typer.Option("--data-dir", "-d", help="The server's data folder.")]


def _key_store(data_dir: Path) -> KeyStore:
    data_dir.mkdir(parents=True, exist_ok=True)
    return KeyStore(data_dir / "keys.db")


@keys.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")] = "public",
    role: Annotated[str, typer.Option(help="read, write or admin.")] = "read",
    graph: Annotated[list[str] | None, typer.Option(help="Limit the key to this graph (repeatable).")] = None,
    label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
    data_dir: DataDir = Path("headrace-data"),
) -> None:
    """Creates a key and prints it once (only its hash is stored)."""
    store = _key_store(data_dir)
    try:
        key, grant = store.create(tenant, role, tuple(graph or ()), label)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(key)
    typer.echo(f"id {grant.key_id}, tenant '{grant.tenant}', role {grant.role}", err=True)


@keys.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    data_dir: DataDir = Path("headrace-data"),
) -> None:
    """Lists active keys (ids, never the keys)."""
    store = _key_store(data_dir)
    try:
        for g in store.list(tenant):
            scope = ",".join(g.graphs) or "*"
            typer.echo(f"{g.key_id}\t{g.tenant}\t{g.role}\t{scope}\t{g.label}")
    finally:
        store.close()


@keys.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `keys list` shows it.")],
    data_dir: DataDir = Path("headrace-data"),
) -> None:
    """Revokes a key."""
    store = _key_store(data_dir)
    try:
        if not store.revoke(key_id):
            typer.echo(f"error: no active key with id '{key_id}'", err=True)
            raise typer.Exit(1)
    finally:
        store.close()
    typer.echo(f"revoked {key_id}")
