"""`switchboard catalog codegen`: the command around `codegen.generate` (read a catalog folder,
write one module). Its own module so the CLI only registers it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from switchboard import catalog as cat
from switchboard.codegen import Lang, generate

_err = Console(stderr=True)


def catalog_codegen(
    directory: Annotated[Path, typer.Argument(help="A catalog folder (catalog.yaml, types/).")],
    lang: Annotated[Lang, typer.Option("--lang", help="The language to write.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The file to write; default: standard output."),
    ] = None,
) -> None:
    """Write typed definitions of every event type's latest schema (TypeScript or Python)."""
    try:
        spec = cat.load_catalog_dir(directory)
    except cat.CatalogError as exc:
        _err.print(f"[red]{exc.where}[/red]")
        for problem in exc.problems:
            _err.print(f"  {problem}")
        raise typer.Exit(1) from None
    text = generate(spec, lang)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    _err.print(f"wrote {len(spec.types)} {lang} event types of {spec.name} to {out}")
