"""`switchboard templates apply | list | preview`: message templates (messages.py) from files.

`apply` checks every document locally before it sends any, so a folder such as the repository's
`templates/` goes in whole or not at all; each changed document becomes a new version.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from switchboard import messages
from switchboard.cli.common import (
    Hub,
    JsonOpt,
    KeyOpt,
    UrlOpt,
    describe_error,
    err,
    fail,
    out,
    print_json,
    table,
)

app = typer.Typer(
    help="Message templates: apply YAML/JSON documents, list them, preview their variants.",
    no_args_is_help=True,
)
SUFFIXES = (".yaml", ".yml", ".json")


def read_templates(target: Path) -> list[tuple[Path, messages.MessageTemplate]]:
    """The template documents of a file, or of every YAML/JSON file of a folder in name order,
    each checked (every problem is printed with its file and path; then the command ends)."""
    import yaml

    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix in SUFFIXES)
    elif target.is_file():
        files = [target]
    else:
        err.print(f"[red]{target}: no such file or folder[/red]")
        raise typer.Exit(2)
    found: list[tuple[Path, messages.MessageTemplate]] = []
    failed = False
    for file in files:
        try:
            doc = yaml.safe_load(file.read_text(encoding="utf-8"))
            found.append((file, messages.parse_template(doc, name=None)))
        except (OSError, yaml.YAMLError) as exc:
            failed = True
            err.print(f"[red]{file}: {exc}[/red]", soft_wrap=True)
        except messages.MessageError as exc:
            failed = True
            err.print(f"[red]{file}: invalid template[/red]", soft_wrap=True)
            for path, problem in exc.problems:
                err.print(f"  {path}: {problem}", markup=False, soft_wrap=True)
    names = [t.name for _, t in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        failed = True
        err.print(f"[red]{target}: two documents name the template {name!r}[/red]")
    if failed:
        raise typer.Exit(2)
    return found


def apply_documents(hub: Hub, found: list[tuple[Path, messages.MessageTemplate]]) -> None:
    for file, template in found:
        doc = template.to_dict()
        status, answer = asyncio.run(hub.call("PUT", f"/v1/templates/{template.name}", doc))
        if status not in (200, 201):
            fail(f"{file}: {describe_error(status, answer)}")
        what = "applied" if status == 201 else "unchanged"
        out.print(f"{what} {answer['name']} v{answer['version']}")


@app.command("apply")
def apply(
    target: Annotated[Path, typer.Argument(help="A YAML/JSON file, or a folder of them.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Check and apply template documents (a changed one becomes a new version)."""
    found = read_templates(target)
    if not found:
        err.print(f"[yellow]{target}: no .yaml, .yml or .json documents[/yellow]")
        raise typer.Exit(2)
    apply_documents(Hub(url, api_key), found)


@app.command("list")
def list_(url: UrlOpt = None, api_key: KeyOpt = "", as_json: JsonOpt = False) -> None:
    """The tenant's templates and their latest versions."""
    rows = Hub(url, api_key).get("/v1/templates")["data"]
    if as_json:
        print_json(rows)
        return
    out.print(table(["name", "version"], [[r["name"], str(r["version"])] for r in rows]))


def _read_event(path: Path) -> dict[str, Any]:
    import yaml

    try:
        event = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        err.print(f"[red]{path}: {exc}[/red]")
        raise typer.Exit(2) from None
    if not isinstance(event, dict):
        err.print(f"[red]{path}: an event is an object with type and data[/red]")
        raise typer.Exit(2)
    return event


@app.command("preview")
def preview(
    name: Annotated[str, typer.Argument(help="The template's name.")],
    event: Annotated[
        Path, typer.Option("--event", help="A JSON or YAML file with the event (type, data, …).")
    ],
    recipient: Annotated[
        str | None, typer.Option(help="A recipient id whose profile (and locale) to use.")
    ] = None,
    locale: Annotated[
        str | None, typer.Option(help="The wanted locale, instead of the recipient's.")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Every channel's variant of a template rendered for an event, or its errors."""
    body: dict[str, Any] = {"event": _read_event(event)}
    if recipient is not None:
        body["recipient"] = recipient
    if locale is not None:
        body["locale"] = locale
    answer = Hub(url, api_key).request("POST", f"/v1/templates/{name}/preview", body, what=name)
    if as_json:
        print_json(answer)
        return
    chain = " → ".join(answer["chain"])
    out.print(f"[bold]{answer['name']}[/bold] v{answer['version']}  locales: {chain}")
    failed = False
    for variant in answer["variants"]:
        out.print(f"\n[bold]{variant['channel']}[/bold] ({variant['locale']})")
        for field, value in variant["rendered"].items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out.print(f"  {field}: {shown}", markup=False, highlight=False)
        for problem in variant["errors"]:
            failed = True
            out.print(f"  [red]error[/red] {problem}", highlight=False)
    if failed:
        raise typer.Exit(1)
