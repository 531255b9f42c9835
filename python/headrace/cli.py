"""The `headrace` command."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from headrace.errors import HeadraceError
from headrace.packages import build_package
from headrace.server.auth import KeyStore
from headrace.server.config import DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, ENV, ServerConfig

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


checkpoints = typer.Typer(help="Checkpoints of a server's graphs.", no_args_is_help=True)
app.add_typer(checkpoints, name="checkpoint")


def _check_names(**names: str) -> None:
    """Exits with an error naming the first of ``names`` (kind=value) that is
    not a valid name: names become file and folder names."""
    from headrace.names import name_problem

    for kind, value in names.items():
        if (problem := name_problem(kind, value)) is not None:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(1)


@checkpoints.command("discard")
def checkpoint_discard(
    tenant: Annotated[str, typer.Option(help="The graph's tenant.")],
    graph: Annotated[str, typer.Option(help="The graph whose checkpoint to delete.")],
    data_dir: DataDir = Path("headrace-data"),
    store: Annotated[
        str | None,
        typer.Option(envvar=ENV["store"], help="Checkpoint store URL (default: sqlite:///DATA_DIR/tenants/TENANT/state.db)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Deletes a graph's checkpoint (e.g. one that cannot be read), so that it
    starts with empty state. A worker running the graph is fenced: it stops,
    and the server's restart (or `POST .../workflows/GRAPH/restart` after a
    crash loop) starts it empty."""
    from headrace.checkpoint import open_store

    _check_names(tenant=tenant, graph=graph)
    url = ServerConfig(data_dir=data_dir, store=store).tenant_store_url(tenant)
    if not yes:
        typer.confirm(f"Delete the checkpoint of graph '{graph}' (tenant '{tenant}') in {url}?", abort=True)
    try:
        s = open_store(url)
    except Exception as e:  # noqa: BLE001 - named for the operator
        typer.echo(f"error: cannot open the store {url}: {e}", err=True)
        raise typer.Exit(1) from None
    try:
        components = s.load(tenant, graph)
        discard = getattr(s, "discard")
        discard(tenant, graph)
    except HeadraceError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    finally:
        s.close()
    what = f"{len(components)} component(s)" if components else "no checkpoint (nothing to delete)"
    typer.echo(f"graph '{graph}' (tenant '{tenant}'): discarded {what} in {s.describe()}")


@checkpoints.command("on-corrupt")
def checkpoint_on_corrupt(
    policy: Annotated[str, typer.Argument(help="refuse (the default) or start_empty.")],
    tenant: Annotated[str, typer.Option(help="The graph's tenant.")],
    graph: Annotated[str, typer.Option(help="The graph.")],
    data_dir: DataDir = Path("headrace-data"),
) -> None:
    """Sets what the graph's worker does with a checkpoint it cannot read:
    refuse to start (crash loop, naming it) or log it and start empty. Taken
    at the worker's next start (`POST .../workflows/GRAPH/restart`)."""
    from headrace.supervisor.graph_settings import write_on_corrupt

    _check_names(tenant=tenant, graph=graph)
    try:
        write_on_corrupt(data_dir, tenant, graph, policy)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"graph '{graph}' (tenant '{tenant}'): on_corrupt = {policy} from its next start")


def _graph_from(ref: str) -> Any:
    """A graph from ``module:attribute`` (the current folder importable) or a package folder."""
    import importlib

    from headrace.graph import ComputationGraph
    from headrace.packages.loader import load_graph

    if Path(ref).is_dir():
        return load_graph(Path(ref))
    module_name, _, attribute = ref.partition(":")
    if not attribute:
        raise typer.BadParameter(f"--graph takes module:attribute or a package folder, got {ref!r}")
    sys.path.insert(0, os.getcwd())
    graph = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(graph, ComputationGraph):
        raise typer.BadParameter(f"{ref} is not a ComputationGraph")
    return graph


@app.command()
def replay(
    source: Annotated[Path, typer.Argument(help="A journal folder, or a .jsonl / .msgpack file of (time, accumulator, event).")],
    graph: Annotated[str, typer.Option(help="The graph: module:attribute, or a package folder.")],
    until: Annotated[float | None, typer.Option(help="Advance the clock to this epoch time after the last input.")] = None,
    fire: Annotated[int | None, typer.Option(help="Show this fire alone, node by node (run again on its inputs).")] = None,
) -> None:
    """Runs a graph over recorded inputs on a simulated clock, as fast as it
    can, and prints each fire as a JSON line; with --fire, that fire's inputs
    and each node's arguments, output and time."""
    import json

    from headrace.replay import replay as run_replay

    try:
        the_graph = _graph_from(graph)
        fires = run_replay(the_graph, source, until=until, record_inputs=fire is not None)
        if fire is not None:
            _show_fire(the_graph, fires, fire)
            return
    except HeadraceError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for f in fires:
        line = {
            "id": f.id,
            "trigger": f.trigger,
            "started_at": f.started_at,
            "outputs": f.outputs,
            "error": None if f.error is None else str(f.error),
        }
        typer.echo(json.dumps(line, default=repr))


def _show_fire(graph: Any, fires: list[Any], fire_id: int) -> None:
    import json

    from headrace.trace import trace_fire

    found = [f for f in fires if f.id == fire_id]
    if not found:
        ids = f"{fires[0].id}-{fires[-1].id}" if fires else "none"
        raise HeadraceError(f"no fire {fire_id} in the replay (its fires: {ids})")
    f = found[0]
    typer.echo(json.dumps({"fire": f.id, "trigger": f.trigger, "started_at": f.started_at, "inputs": f.inputs}, default=repr))
    for step in trace_fire(graph, f):
        line = {"node": step.node, "ms": round(step.ns / 1e6, 3), "output": step.output, "route": step.route}
        if step.error is not None or step.skipped:
            line.update(error=step.error, skipped=step.skipped)
        typer.echo(json.dumps(line, default=repr))


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar=ENV["host"], help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar=ENV["port"], help="Port to listen on.")] = DEFAULT_PORT,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", "-d", envvar=ENV["data_dir"], help="Packages, keys, logs, SQLite state.")
    ] = DEFAULT_DATA_DIR,
    store: Annotated[
        str | None,
        typer.Option(envvar=ENV["store"], help="Checkpoint store URL (default: a SQLite file per tenant, DATA_DIR/tenants/T/state.db)."),
    ] = None,
    admin_tenant: Annotated[
        str, typer.Option(envvar=ENV["admin_tenant"], help="Tenant of the first admin key.")
    ] = "public",
    init: Annotated[
        bool, typer.Option("--init", help="Create the first admin key, print it once, then serve.")
    ] = False,
    heartbeat_timeout: Annotated[
        float, typer.Option(envvar=ENV["heartbeat_timeout"], help="Seconds of silence before a worker is killed.")
    ] = 10.0,
    crash_limit: Annotated[
        int, typer.Option(envvar=ENV["crash_limit"], help="Crashes within --crash-window that stop restarts.")
    ] = 5,
    crash_window: Annotated[float, typer.Option(envvar=ENV["crash_window"], help="Seconds.")] = 60.0,
    restart_initial: Annotated[
        float, typer.Option(envvar=ENV["restart_initial"], help="First restart delay, seconds (doubles per crash).")
    ] = 0.2,
    restart_max: Annotated[float, typer.Option(envvar=ENV["restart_max"], help="Longest restart delay, seconds.")] = 30.0,
    allowed_origins: Annotated[
        str | None,
        typer.Option(
            envvar=ENV["allowed_origins"],
            help="Comma-separated origins a browser's WebSocket handshake may come from ('*': any; default none).",
        ),
    ] = None,
    sandbox: Annotated[
        str,
        typer.Option(
            envvar=ENV["sandbox"],
            help="How workers are confined: auto, uid (a uid per tenant; needs root), landlock, "
            "or off (nothing: as on a host that offers no confinement). See docs/security.md.",
        ),
    ] = "auto",
    sandbox_uids: Annotated[
        str, typer.Option(envvar=ENV["sandbox_uids"], help="Uids given to tenants, FIRST-LAST (gid = uid).")
    ] = "200000-265535",
    trust_uploads: Annotated[
        bool,
        typer.Option(
            "--trust-uploads",
            envvar=ENV["trust_uploads"],
            help="Accept uploads from several tenants even when workers cannot be confined.",
        ),
    ] = False,
    worker_memory_mb: Annotated[
        int, typer.Option(envvar=ENV["worker_memory_mb"], help="Heap and anonymous memory per worker, MiB (0: none).")
    ] = 8192,
    worker_cpu_seconds: Annotated[
        int, typer.Option(envvar=ENV["worker_cpu_seconds"], help="CPU seconds per worker run (0: none).")
    ] = 0,
    worker_processes: Annotated[
        int, typer.Option(envvar=ENV["worker_processes"], help="Processes and threads per tenant (0: none).")
    ] = 512,
    worker_open_files: Annotated[
        int, typer.Option(envvar=ENV["worker_open_files"], help="Open files per worker (0: none).")
    ] = 4096,
    worker_file_mb: Annotated[
        int, typer.Option(envvar=ENV["worker_file_mb"], help="Largest file a worker may write, MiB (0: none).")
    ] = 0,
    worker_rss_mb: Annotated[
        int,
        typer.Option(
            envvar=ENV["worker_rss_mb"],
            help="Resident memory per worker, MiB, checked every second; past it the worker is restarted (0: none).",
        ),
    ] = 4096,
    worker_python: Annotated[
        str | None,
        typer.Option(envvar=ENV["worker_python"], help="Interpreter for workers (default: the server's own)."),
    ] = None,
) -> None:
    """Runs the server: the HTTP/WebSocket API and one worker process per graph.

    The first admin key comes from --init (printed once) or HEADRACE_ADMIN_KEY."""
    import logging

    from headrace.server.datadir import DataDirLocked, lock_data_dir
    from headrace.server.run import open_keys, serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Settings without an option (limits, allowed origins) come from the environment.
    config = ServerConfig.from_env(
        host=host,
        port=port,
        data_dir=data_dir,
        store=store,
        admin_key=os.environ.get(ENV["admin_key"]) or None,
        admin_tenant=admin_tenant,
        heartbeat_timeout=heartbeat_timeout,
        crash_limit=crash_limit,
        crash_window=crash_window,
        restart_initial=restart_initial,
        restart_max=restart_max,
        allowed_origins=tuple(o.strip() for o in allowed_origins.split(",") if o.strip()) if allowed_origins else None,
        sandbox=sandbox,
        sandbox_uids=sandbox_uids,
        trust_uploads=trust_uploads,
        worker_memory_mb=worker_memory_mb,
        worker_cpu_seconds=worker_cpu_seconds,
        worker_processes=worker_processes,
        worker_open_files=worker_open_files,
        worker_file_mb=worker_file_mb,
        worker_rss_mb=worker_rss_mb,
        worker_python=worker_python,
    )
    try:
        config.check()
        lock = lock_data_dir(config.data_dir)  # held until the process ends
        keys = open_keys(config)
    except (ValueError, DataDirLocked) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    if init:
        if any(g.role == "admin" for g in keys.list(admin_tenant)):
            typer.echo(f"tenant '{admin_tenant}' already has an admin key; --init creates none", err=True)
        else:
            key, grant = keys.create(admin_tenant, "admin", label="serve --init")
            typer.echo(key)
            typer.echo(f"admin key {grant.key_id} for tenant '{admin_tenant}': shown once, store it now", err=True)
    keys.close()
    try:
        run_server(config)
    except ValueError as e:  # a setting the host cannot honour (e.g. --sandbox uid), found at start
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    finally:
        lock.close()


@app.command()
def upload(
    archive: Annotated[Path, typer.Argument(help="A package archive (headrace package builds one).")],
    url: Annotated[str, typer.Option(envvar="HEADRACE_URL", help="The server's base URL.")] = "http://127.0.0.1:8080",
    key: Annotated[str | None, typer.Option(envvar="HEADRACE_KEY", help="An admin API key.")] = None,
    tenant: Annotated[str, typer.Option(help="Tenant to upload to.")] = "public",
    wait: Annotated[float, typer.Option(help="Seconds to wait until the graph runs (0: do not wait).")] = 60.0,
) -> None:
    """Uploads a package archive and waits until its graph is running."""
    import httpx
    import orjson

    if key is None:
        typer.echo("error: an API key is needed (--key or HEADRACE_KEY)", err=True)
        raise typer.Exit(2)
    if not archive.is_file():
        typer.echo(f"error: {archive} is not a file", err=True)
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120.0) as client:
        try:
            with archive.open("rb") as f:
                r = client.post(
                    f"/v1/tenants/{tenant}/workflows", files={"file": (archive.name, f, "application/octet-stream")}
                )
        except httpx.HTTPError as e:
            typer.echo(f"error: could not reach {url}: {e}", err=True)
            raise typer.Exit(1) from None
        body: Any = _json_or_text(r)
        if r.status_code >= 300:
            typer.echo(f"error: upload refused ({r.status_code}): {_message(body)}", err=True)
            for problem in body.get("problems", []) if isinstance(body, dict) else []:
                typer.echo(f"  - {problem}", err=True)
            raise typer.Exit(1)
        graph = body["graph"]
        typer.echo(f"uploaded {body['package']} {body['version']}: graph '{graph}'", err=True)
        deadline = time.monotonic() + wait
        state = body.get("state")
        while wait > 0 and time.monotonic() < deadline:
            r = client.get(f"/v1/health/graphs/{graph}")
            detail = _json_or_text(r)
            state = detail.get("health", {}).get("state") if isinstance(detail, dict) else None
            if state in ("running", "crash_loop"):
                break
            time.sleep(0.25)
        sys.stdout.write(orjson.dumps({**body, "state": state}, option=orjson.OPT_INDENT_2).decode() + "\n")
        if state == "crash_loop":
            typer.echo(f"error: graph '{graph}' is crash-looping: {detail.get('last_error')}", err=True)
            raise typer.Exit(1)


def _json_or_text(r: Any) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return f"{body.get('error')} [{body.get('code')}]"
    return str(body)[:500]
