"""`switchboard automations apply | list | runs | cancel | test`: automations from the command line.

`test` needs no hub: it runs automation files over a JSON-lines event stream in the simulator
(the engine's own step logic, on a fake clock) and prints the timeline.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from switchboard.automation_sim import StreamError, read_stream, simulate
from switchboard.automations import Automation, AutomationError, from_yaml, parse_automation
from switchboard.cli.common import Hub, JsonOpt, KeyOpt, UrlOpt, err, out, print_rows, table

app = typer.Typer(
    help="Automations: apply documents, list them and their runs, cancel runs, simulate.",
    no_args_is_help=True,
)
SUFFIXES = (".yaml", ".yml", ".json")


def read_documents(target: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The automation documents in a file (one, or a list under `automations:`) or in every
    YAML/JSON file of a folder, in name order."""
    import yaml

    files = (
        sorted(p for p in target.iterdir() if p.suffix in SUFFIXES) if target.is_dir() else [target]
    )
    docs: list[tuple[Path, dict[str, Any]]] = []
    for file in files:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            err.print(f"[red]{file}: {exc}[/red]")
            raise typer.Exit(2) from None
        items = loaded.get("automations") if isinstance(loaded, dict) else None
        for raw in items if isinstance(items, list) else [loaded]:
            doc = from_yaml(raw)
            if not isinstance(doc, dict):
                err.print(f"[red]{file}: an automation document is a mapping[/red]")
                raise typer.Exit(2)
            docs.append((file, doc))
    return docs


def _parse(docs: list[tuple[Path, dict[str, Any]]]) -> list[Automation]:
    autos, failed = [], False
    for file, doc in docs:
        try:
            autos.append(parse_automation(doc, version=1))
        except AutomationError as exc:
            failed = True
            err.print(f"[red]{file}: invalid automation {doc.get('name')!r}[/red]")
            for p in exc.problems:
                err.print(f"  {p['path']}: {p['message']}", markup=False)
    if failed:
        raise typer.Exit(2)
    return autos


@app.command("apply")
def apply(
    target: Annotated[Path, typer.Argument(help="A YAML/JSON file, or a folder of them.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Validate and apply automation documents (each PUT makes a new version)."""
    docs = read_documents(target)
    _parse(docs)  # every document checked locally before any is applied
    hub = Hub(url, api_key)
    for file, doc in docs:
        body = hub.request("PUT", f"/v1/automations/{doc['name']}", doc, what=f"{file}")
        out.print(f"applied {body['name']} v{body['version']}")


@app.command("list")
def list_(url: UrlOpt = None, api_key: KeyOpt = "", as_json: JsonOpt = False) -> None:
    """The tenant's automations (current versions)."""
    rows = Hub(url, api_key).get("/v1/automations")["data"]
    if as_json:
        print_rows(rows)
        return
    cells = []
    for a in rows:
        on = a["spec"].get("on")
        cells.append(
            [
                a["name"],
                str(a["version"]),
                on if isinstance(on, str) else ", ".join(map(str, on)),
                str(len(a["spec"].get("steps", []))),
                a["updated_at"],
            ]
        )
    out.print(table(["name", "version", "on", "steps", "updated"], cells))


@app.command("runs")
def runs(
    name: Annotated[str, typer.Argument(help="The automation's name.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
    status: Annotated[
        str | None,
        typer.Option(
            help="Only runs in this status: running, completed, stopped, cancelled, failed."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Most runs to show.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """An automation's runs, newest first."""
    params = {"limit": str(limit), **({"status": status} if status else {})}
    rows = Hub(url, api_key).get(f"/v1/automations/{name}/runs", params)["data"]
    if as_json:
        print_rows(rows)
        return
    cells = [
        [
            r["id"],
            r["status"],
            r["trigger"].get("subject") or "",
            r["next_step_at"] or "",
            r["reason"] or "",
            r["created_at"],
        ]
        for r in rows
    ]
    out.print(table(["run", "status", "subject", "next step", "reason", "started"], cells))


@app.command("cancel")
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id (`automations runs NAME`).")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
    reason: Annotated[str | None, typer.Option(help="Why, kept with the run.")] = None,
) -> None:
    """Cancel a run (durably: it takes no further step)."""
    body = Hub(url, api_key).request(
        "POST", f"/v1/runs/{run_id}/cancel", {"reason": reason} if reason else {}
    )
    out.print(f"{body['id']}: {body['status']} ({body['reason']})")


@app.command("test")
def test(
    target: Annotated[Path, typer.Argument(help="A YAML/JSON file, or a folder of them.")],
    events: Annotated[Path, typer.Option("--events", help="A JSON-lines event stream.")],
) -> None:
    """Run automations over an event stream on a fake clock and print the timeline."""
    autos = _parse(read_documents(target))
    try:
        stream = read_stream(events.read_text(encoding="utf-8"))
    except (OSError, StreamError) as exc:
        err.print(f"{events}: {exc}", markup=False)
        raise typer.Exit(2) from None
    try:
        sim = asyncio.run(simulate(autos, stream))
    except StreamError as exc:
        err.print(f"{events}: {exc}", markup=False)
        raise typer.Exit(2) from None
    for line in sim.lines():
        typer.echo(line)
