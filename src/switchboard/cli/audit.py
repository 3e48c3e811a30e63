"""`switchboard audit`: the tenant's audit log, read from a running hub (a manage key)."""

from __future__ import annotations

from typing import Annotated

import typer

from switchboard.cli.common import (
    FromOpt,
    Hub,
    JsonOpt,
    KeyOpt,
    ToOpt,
    UrlOpt,
    out,
    print_rows,
    short_time,
    table,
    when_param,
)


def audit(
    action: Annotated[
        str | None,
        typer.Option(help="An action (keys.create) or every action on a resource (keys)."),
    ] = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    limit: Annotated[int, typer.Option(help="Most entries to show.")] = 100,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Who changed what in the tenant, newest first: the key, the client address, the action,
    and (with --json) the masked documents before and after."""
    params = [
        *([("action", action)] if action else []),
        *when_param(from_, "from", "--from"),
        *when_param(to, "to", "--to"),
    ]
    rows = Hub(url, api_key).pages("/v1/audit", params, limit)
    if as_json:
        print_rows(rows)
        return
    out.print(
        table(
            ["at", "action", "status", "key", "ip", "path"],
            [
                [
                    short_time(r["at"]),
                    r["action"],
                    str(r["status"]),
                    r.get("key_name") or r["key_id"],
                    r.get("ip") or "",
                    r["path"],
                ]
                for r in rows
            ],
        )
    )
