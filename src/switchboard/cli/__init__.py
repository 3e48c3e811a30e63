"""The `switchboard` command. Three families, told apart in `switchboard --help`:

- running the hub (`serve`, `worker`, `migrate`, `quickstart`): cli/server.py;
- database commands that open SWITCHBOARD_DATABASE_URL directly (`catalog`, `tenants`, `keys`,
  `crypto`), usable before any hub runs: cli/admin.py, cli/crypto.py;
- hub commands that call a running hub's API at SWITCHBOARD_URL with SWITCHBOARD_API_KEY
  (`emit`, `events`, `routes`, `destinations`, `channels`, `sources`, `deliveries`, `dlq`,
  `replay`, `automations`, `templates`, `subjects`): cli/events.py, cli/routing.py,
  cli/channels.py, cli/deliveries.py, cli/automations.py, cli/templates.py, cli/subjects.py.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from switchboard.cli import (
    admin,
    audit,
    automations,
    channels,
    crypto,
    deliveries,
    events,
    routing,
    server,
    subjects,
    templates,
)
from switchboard.cli.common import DATABASE_PANEL, DB_HELP, HUB_PANEL, SERVER_PANEL

app = typer.Typer(
    help="Switchboard: a self-hosted, multi-tenant event hub.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        try:
            print(f"switchboard {version('switchboard')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print("switchboard (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Switchboard: a self-hosted, multi-tenant event hub.

    Hub commands find the hub at SWITCHBOARD_URL, else at SWITCHBOARD_HOST:SWITCHBOARD_PORT
    (what `serve` listens on), and authenticate with SWITCHBOARD_API_KEY. Database commands
    open SWITCHBOARD_DATABASE_URL (default sqlite:///./data/switchboard.db)."""


for command in (server.quickstart, server.serve, server.worker, server.migrate):
    app.command(rich_help_panel=SERVER_PANEL, epilog=DB_HELP)(command)
app.add_typer(admin.tenants_app, name="tenants", rich_help_panel=DATABASE_PANEL)
app.add_typer(admin.keys_app, name="keys", rich_help_panel=DATABASE_PANEL)
app.add_typer(admin.catalog_app, name="catalog", rich_help_panel=DATABASE_PANEL)
app.add_typer(crypto.crypto_app, name="crypto", rich_help_panel=DATABASE_PANEL)
app.command(rich_help_panel=HUB_PANEL)(events.emit)
app.add_typer(events.events_app, name="events", rich_help_panel=HUB_PANEL)
app.add_typer(routing.routes_app, name="routes", rich_help_panel=HUB_PANEL)
app.add_typer(routing.destinations_app, name="destinations", rich_help_panel=HUB_PANEL)
app.add_typer(channels.channels_app, name="channels", rich_help_panel=HUB_PANEL)
app.add_typer(routing.sources_app, name="sources", rich_help_panel=HUB_PANEL)
app.add_typer(deliveries.deliveries_app, name="deliveries", rich_help_panel=HUB_PANEL)
app.add_typer(deliveries.dlq_app, name="dlq", rich_help_panel=HUB_PANEL)
app.command(rich_help_panel=HUB_PANEL)(deliveries.replay)
app.add_typer(automations.app, name="automations", rich_help_panel=HUB_PANEL)
app.add_typer(templates.app, name="templates", rich_help_panel=HUB_PANEL)
app.add_typer(subjects.subjects_app, name="subjects", rich_help_panel=HUB_PANEL)
app.command(rich_help_panel=HUB_PANEL)(audit.audit)


def main() -> None:
    app()
