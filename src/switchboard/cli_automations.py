"""`switchboard automations apply | list | runs | cancel | test`: automations from the command line.

`test` needs no hub: it runs automation files over a JSON-lines event stream in the simulator
(the engine's own step logic, on a fake clock) and prints the timeline.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.table import Table

from switchboard.automation_sim import StreamError, read_stream, simulate
from switchboard.automations import Automation, AutomationError, from_yaml, parse_automation

app = typer.Typer(
    help="Automations: apply documents, list them and their runs, cancel runs, simulate.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)
UrlOpt = Annotated[str, typer.Option(envvar="SWITCHBOARD_URL", help="The hub's base URL.")]
KeyOpt = Annotated[str, typer.Option(envvar="SWITCHBOARD_API_KEY", help="An API key.")]
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


async def _request(
    method: str, url: str, key: str, body: Any = None, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, json=body, params=params, headers={"Authorization": f"Bearer {key}"}
        ) as resp,
    ):
        text = await resp.read()
        return resp.status, json.loads(text) if text else None


def _api(
    method: str,
    url: str,
    key: str,
    path: str,
    body: Any = None,
    params: dict[str, str] | None = None,
) -> Any:
    try:
        status, answer = asyncio.run(_request(method, url.rstrip("/") + path, key, body, params))
    except aiohttp.ClientError as exc:
        err.print(f"[red]cannot reach {url}: {exc}[/red]")
        raise typer.Exit(1) from None
    if status >= 300:
        error = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
        err.print(f"[red]{status}[/red] {error.get('message', answer)}", markup=False)
        for d in error.get("details") or []:
            err.print(f"  {d.get('path')}: {d.get('message')}", markup=False)
        raise typer.Exit(1)
    return answer


@app.command("apply")
def apply(
    target: Annotated[Path, typer.Argument(help="A YAML/JSON file, or a folder of them.")],
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
) -> None:
    """Validate and apply automation documents (each PUT makes a new version)."""
    docs = read_documents(target)
    _parse(docs)  # every document checked locally before any is applied
    for _, doc in docs:
        body = _api("PUT", url, api_key, f"/v1/automations/{doc['name']}", doc)
        out.print(f"applied {body['name']} v{body['version']}")


@app.command("list")
def list_(url: UrlOpt = "http://127.0.0.1:8080", api_key: KeyOpt = "") -> None:
    """The tenant's automations (current versions)."""
    table = Table("name", "version", "on", "steps", "updated")
    for a in _api("GET", url, api_key, "/v1/automations")["data"]:
        on = a["spec"].get("on")
        table.add_row(
            a["name"],
            str(a["version"]),
            on if isinstance(on, str) else ", ".join(on),
            str(len(a["spec"].get("steps", []))),
            a["updated_at"],
        )
    out.print(table)


@app.command("runs")
def runs(
    name: str,
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
    status: Annotated[str | None, typer.Option(help="running, completed, stopped, …")] = None,
    limit: int = 100,
) -> None:
    """An automation's runs, newest first."""
    params = {"limit": str(limit), **({"status": status} if status else {})}
    body = _api("GET", url, api_key, f"/v1/automations/{name}/runs", params=params)
    table = Table("run", "status", "subject", "next step", "reason", "started")
    for r in body["data"]:
        table.add_row(
            r["id"],
            r["status"],
            r["trigger"].get("subject") or "",
            r["next_step_at"] or "",
            r["reason"] or "",
            r["created_at"],
        )
    out.print(table)


@app.command("cancel")
def cancel(
    run_id: str,
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Cancel a run (durably: it takes no further step)."""
    body = _api(
        "POST", url, api_key, f"/v1/runs/{run_id}/cancel", {"reason": reason} if reason else {}
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
