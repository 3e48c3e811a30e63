"""Hub commands for a data subject's rights: `subjects export` and `subjects erase`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from switchboard.cli.common import Hub, KeyOpt, UrlOpt, err, fail, print_json

subjects_app = typer.Typer(
    help="A data subject's rights (LGPD art. 18): export what the hub holds, erase it.",
    no_args_is_help=True,
)


@subjects_app.command("export")
def subjects_export(
    subject: Annotated[str, typer.Argument(help="The subject (the events' `subject`).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON to this file, not stdout.")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Everything the hub holds about SUBJECT, as JSON (masked unless the key has `pii`)."""
    document = Hub(url, api_key).get(f"/v1/subjects/{quote(subject, safe='')}/export")
    if out is None:
        print_json(document)
        return
    out.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    err.print(f"wrote {len(document.get('events', []))} events and the profile to {out}")


@subjects_app.command("erase")
def subjects_erase(
    subject: Annotated[str, typer.Argument(help="The subject (the events' `subject`).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Erase SUBJECT's personal data (the key needs `manage` and `pii`); prints the receipt."""
    if not yes and not typer.confirm(f"erase every personal datum of {subject!r}?"):
        fail("nothing erased", 1)
    print_json(Hub(url, api_key).request("DELETE", f"/v1/subjects/{quote(subject, safe='')}"))
