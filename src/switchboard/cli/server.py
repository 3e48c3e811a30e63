"""Running the hub: `serve`, `worker`, `migrate`, and `quickstart` (what `make run` does)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from switchboard import catalog as cat
from switchboard import logs
from switchboard.auth import mint_key
from switchboard.cli.common import (
    err,
    fail,
    settings,
    shown_url,
    with_store,
)
from switchboard.cli.templates import read_templates
from switchboard.config import Settings
from switchboard.crypto import new_master_key
from switchboard.envelope import now_us
from switchboard.errors import Conflict, SwitchboardError
from switchboard.registry import SHARED, Registry
from switchboard.resources import shipped
from switchboard.store import Store, Tenant
from switchboard.store import migrate as migrations
from switchboard.store.people import PeopleStore

QUICKSTART_KEY = "quickstart"  # the name of the demo tenant's key, found again on a second run
QUICKSTART_SCOPES = "ingest,read,manage,pii"  # the demo reads back what it sent


def load_catalog(path: Path) -> cat.CatalogSpec:
    try:
        return cat.load_catalog_dir(path)
    except cat.CatalogError as exc:
        for p in exc.problems:
            err.print(f"  {p}")
        fail(str(exc))


def serve(
    host: Annotated[str | None, typer.Option(help="Overrides SWITCHBOARD_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides SWITCHBOARD_PORT.")] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            help="API processes on the one port (PostgreSQL only), supervised with "
            "SWITCHBOARD_WORKER_PROCESSES delivery workers beside them. Overrides "
            "SWITCHBOARD_PROCESSES."
        ),
    ] = None,
    worker_processes: Annotated[
        int | None,
        typer.Option(help="With --processes above 1: overrides SWITCHBOARD_WORKER_PROCESSES."),
    ] = None,
    fd: Annotated[
        int | None,
        typer.Option(hidden=True, help="Serve on this inherited listening socket (supervised)."),
    ] = None,
) -> None:
    """Run the HTTP API and a delivery worker (migrating the database first); with
    --processes N, N API processes on one port and the delivery workers beside them."""
    if fd is not None:
        from switchboard.supervisor import as_child

        as_child()
    s = settings()
    overrides: dict[str, Any] = {}
    for name, value in (
        ("host", host),
        ("port", port),
        ("processes", processes),
        ("worker_processes", worker_processes),
    ):
        if value is not None:
            overrides[name] = value
    if overrides:
        try:
            s = Settings.from_env(**overrides)
        except SwitchboardError as exc:
            fail(f"configuration: {exc}", 2)
    logs.setup(s.log_level)
    if s.processes > 1 and fd is None:
        sys.exit(_supervise(s))
    import uvicorn

    from switchboard.api import create_app
    from switchboard.server import server_config

    server = uvicorn.Server(server_config(create_app(s, freeze=True), s))
    if fd is None:
        server.run()
        return
    import socket

    server.run(sockets=[socket.socket(fileno=fd)])


def _supervise(s: Settings) -> int:
    """`serve --processes N`: migrate once, bind the port, run and supervise the children."""
    from sqlalchemy.exc import SQLAlchemyError

    from switchboard.supervisor import Supervisor, bind_sockets

    if not s.is_postgres:
        fail(
            f"--processes {s.processes} needs PostgreSQL: SQLite has one writer, so one process "
            f"serves it ({shown_url(s.database_url)}); run `serve` without --processes, or set "
            "SWITCHBOARD_DATABASE_URL to a postgresql:// URL",
            2,
        )
    try:  # once, here: N children migrating at the same moment would race on the schema
        migrations.upgrade_sync(s.database_url)
    except (SwitchboardError, SQLAlchemyError, OSError) as exc:
        reason = str(exc).splitlines()[0]
        fail(f"cannot migrate {shown_url(s.database_url)}: {reason}")
    try:
        sockets = bind_sockets(s.host, s.port, s.processes)
    except OSError as exc:
        fail(f"cannot listen on {s.host}:{s.port}: {exc.strerror or exc}")
    workers = s.worker_processes if s.run_worker else 0
    err.print(
        f"serving http://{s.host}:{sockets[0].getsockname()[1]} with {s.processes} API processes "
        f"and {workers} delivery worker processes; SIGTERM or Ctrl-C stops them all",
        soft_wrap=True,
    )
    return Supervisor(s, sockets, workers).run()


def worker(
    supervised: Annotated[
        bool, typer.Option(hidden=True, help="Started by `serve --processes` (supervised).")
    ] = False,
) -> None:
    """Run a delivery worker without the API (any number can run against PostgreSQL)."""
    import signal

    from switchboard.hub import Hub, tune_gc

    if supervised:
        from switchboard.supervisor import as_child

        as_child()

    s = settings()
    logs.setup(s.log_level)

    async def run() -> None:
        hub = Hub(s)
        await hub.open(worker=True)
        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        err.print("worker running; SIGTERM or Ctrl-C stops it gracefully")
        await stop.wait()
        await hub.close()

    import uvloop

    uvloop.install()  # the same loop `serve` runs on: cheaper socket writes per delivery
    asyncio.run(run())


def migrate() -> None:
    """Bring the database's schema to the current revision."""
    from sqlalchemy.exc import SQLAlchemyError

    s = settings()
    try:
        migrations.upgrade_sync(s.database_url)
    except (SwitchboardError, SQLAlchemyError, OSError) as exc:
        reason = str(exc).splitlines()[0]
        fail(f"cannot migrate {shown_url(s.database_url)}: {reason} — set SWITCHBOARD_DATABASE_URL")
    print(f"{shown_url(s.database_url)} is at revision {migrations.head()}")


LOCAL_DEMO_EGRESS = "127.0.0.0/8"


def _demo_master_key(s: Settings) -> None:
    """The demo seals credentials like a real hub: with a master key in `master.key` beside
    the SQLite database (./data/ for PostgreSQL), created once and readable by its owner only,
    unless a key is configured already."""
    if s.master_key or s.master_key_file:
        return
    folder = Path("data")
    if not s.is_postgres:
        folder = Path(s.database_url.removeprefix("sqlite:///")).parent
    path = folder / "master.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(new_master_key() + "\n")
        err.print(
            f"created the master key {path}: it seals destination and source credentials and "
            "the personal data of events at rest; the database is unreadable without it, so "
            "keep a copy apart from it"
        )
    os.environ["SWITCHBOARD_MASTER_KEY_FILE"] = str(path.resolve())
    err.print(f"master key: SWITCHBOARD_MASTER_KEY_FILE={path}", soft_wrap=True)


def quickstart(
    catalogs: Annotated[
        Path | None,
        typer.Option(
            help="Folder of catalog folders; default: SWITCHBOARD_CATALOGS_DIR, else the "
            "example catalogs shipped with the package."
        ),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option(
            help="Folder of message templates given to the demo tenant if it lacks them; "
            "default: the templates shipped with the package."
        ),
    ] = None,
    tenant: Annotated[str, typer.Option(help="The demo tenant's id.")] = "demo",
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards.")
    ] = True,
) -> None:
    """Migrate, apply the example catalogs, create a demo tenant and key, give it the message
    templates it lacks, then serve.

    Run again, it reuses the demo tenant and mints no second key (the first run showed it)."""
    # The local demo delivers to receivers on this machine, which `serve` refuses (egress.py).
    os.environ["SWITCHBOARD_EGRESS_ALLOW"] = ",".join(
        filter(None, [os.environ.get("SWITCHBOARD_EGRESS_ALLOW", ""), LOCAL_DEMO_EGRESS])
    )
    err.print(
        f"[yellow]egress: this demo lets deliveries reach {LOCAL_DEMO_EGRESS} (this machine); "
        "`switchboard serve` and `worker` refuse loopback and private addresses[/yellow]"
    )
    _demo_master_key(settings())
    s = settings()
    root = catalogs or (Path(s.catalogs_dir) if s.catalogs_dir else shipped("catalogs"))
    dirs = (
        sorted(p for p in root.iterdir() if (p / "catalog.yaml").exists()) if root.exists() else []
    )

    template_dir = templates or shipped("templates")
    demo_templates = []
    if template_dir.is_dir():
        try:
            demo_templates = read_templates(template_dir)
        except typer.Exit:  # its problems are printed; the demo starts without them
            err.print(f"[yellow]skipped the templates in {template_dir}[/yellow]", soft_wrap=True)
    added: list[str] = []

    async def run(store: Store, _: Settings) -> tuple[str | None, bool, dict[str, Any] | None]:
        registry = Registry(store)
        example: dict[str, Any] | None = None
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("applying the example catalogs", total=len(dirs))
            for d in dirs:
                spec = load_catalog(d)
                try:
                    await registry.apply(SHARED, spec)
                except Conflict as exc:
                    err.print(f"[yellow]skipped {d.name}: {exc}[/yellow]")
                for t in spec.types:
                    if example is None and t.name == "lead.created" and t.latest().examples:
                        example = {"type": t.name, "data": t.latest().examples[0]}
                progress.advance(task)
        existed = await store.get_tenant(tenant) is not None
        if not existed:
            await store.create_tenant(Tenant(tenant, "Demo tenant", "reject", now_us()))
        people = PeopleStore(store)
        for _file, template in demo_templates:  # one the tenant already has (or changed) is kept
            if await people.template(tenant, template.name) is None:
                await people.put_template(tenant, template.name, template.to_dict(), now_us())
                added.append(template.name)
        keys = await store.list_keys(tenant)
        if any(k.name == QUICKSTART_KEY and k.revoked_us is None for k in keys):
            return None, existed, example
        secret, record = mint_key(tenant, QUICKSTART_KEY, QUICKSTART_SCOPES.split(","))
        await store.create_key(record)
        return secret, existed, example

    secret, existed, example = with_store(run)
    base = f"http://{'127.0.0.1' if s.host in ('0.0.0.0', '::') else s.host}:{s.port}"  # noqa: S104
    event = example or {"type": "lead.created", "data": {}}
    err.print(
        f"\n[bold green]Switchboard is ready[/bold green] — {len(dirs)} example catalogs applied "
        f"to {shown_url(s.database_url)}",
        soft_wrap=True,
    )
    if added:
        err.print(f"message templates given to {tenant}: {', '.join(added)}", soft_wrap=True)
    if secret is not None:
        what = "reusing" if existed else "created"
        err.print(f"{what} tenant [bold]{tenant}[/bold]; its API key (shown once) is below.")
        err.print("Point the CLI at this hub (paste into the shell where you run `switchboard`):")
        print(f"export SWITCHBOARD_URL={base} SWITCHBOARD_API_KEY={secret}", flush=True)
    else:
        err.print(
            f"reusing tenant [bold]{tenant}[/bold] from an earlier run: its quickstart key was "
            "shown then and is not shown again. Mint another with:"
        )
        err.print(
            f"  switchboard keys create --tenant {tenant} --scopes {QUICKSTART_SCOPES}",
            soft_wrap=True,
        )
        err.print("Point the CLI at this hub:")
        print(f"export SWITCHBOARD_URL={base} SWITCHBOARD_API_KEY=<that key>", flush=True)
    err.print("\nSend a first event, then read it back:")
    err.print(
        f"  switchboard emit {event['type']} "
        + shlex.quote(json.dumps(event["data"], ensure_ascii=False))
        + " --subject patient-42",
        soft_wrap=True,
    )
    err.print("  switchboard events list --subject patient-42")
    err.print(
        f"Example routes and automations to start from: {shipped('examples')}", soft_wrap=True
    )
    err.print(f"Dashboard: {base}/ui (sign in with the tenant's key)")
    err.print(f"API reference: {base}/docs    Every command: switchboard --help\n")
    sys.stderr.flush()
    if serve_after:
        serve()
