"""Every command and option of the CLI explains itself in `--help`."""

from __future__ import annotations

from typing import Any

import typer

from switchboard.cli import app


def _walk(command: Any, path: str) -> list[tuple[str, Any]]:
    """Every command under `command` (Typer's groups are click groups by duck type only)."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _walk(sub, f"{path} {name}")
    return found


COMMANDS = _walk(typer.main.get_command(app), "switchboard")


def test_the_walk_reaches_every_group() -> None:
    paths = {path for path, _ in COMMANDS}
    assert {"switchboard deliveries attempts", "switchboard dlq retry"} <= paths


def test_every_command_and_option_has_help_text() -> None:
    missing = []
    for path, command in COMMANDS:
        if not (command.help or command.short_help):
            missing.append(path)
        for param in command.params:
            if not getattr(param, "help", None):
                missing.append(f"{path} {param.opts[0]}")
    assert not missing, missing


def test_type_options_are_repeatable_globs_everywhere() -> None:
    checked = 0
    for path, command in COMMANDS:
        for param in command.params:
            if "--type" in param.opts:
                assert param.multiple, path
                assert param.help and "glob" in param.help, path
                checked += 1
    assert checked >= 6
