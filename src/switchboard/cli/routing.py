"""Hub commands for where events go and where they come from: `routes`, `destinations`,
`sources`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

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
    print_rows,
    short_time,
    table,
)
from switchboard.envelope import format_us

routes_app = typer.Typer(help="Apply, list and delete routes.", no_args_is_help=True)
destinations_app = typer.Typer(
    help="Where deliveries go: webhook, slack, discord, email, whatsapp, inbox.",
    no_args_is_help=True,
)
sources_app = typer.Typer(
    help="Receiving URLs for provider webhooks (Stripe, Asaas, Z-API, a lead form…).",
    no_args_is_help=True,
)


def _json_option(value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        fail(f"{option} is not JSON: {exc}", 2)


def _print_secret(name: str, answer: dict[str, Any]) -> None:
    secrets = answer.get("secrets") or []
    if secrets:
        out.print(f"  signing secret of {name} (shown once): {secrets[0]}", markup=False)


# -- routes ----------------------------------------------------------------------------------


def _item_name(item: Any) -> str:
    return str(item.get("name")) if isinstance(item, dict) and item.get("name") else "?"


@routes_app.command("apply")
def routes_apply(
    file: Annotated[Path, typer.Argument(help="A YAML file of `destinations:` and `routes:`.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Create or update destinations and routes by name, item by item.

    A new webhook destination's generated signing secret is printed once; a failing item is
    named by its place in the file (`destinations[1] (crm)`) and stops the run."""
    import yaml

    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        fail(f"{file}: {exc}", 2)
    if not isinstance(doc, dict) or not set(doc) <= {"destinations", "routes"}:
        fail(f"{file}: expected a mapping with `destinations:` and `routes:`", 2)
    hub = Hub(url, api_key)
    existing = set(hub.destination_names().values())
    for section in ("destinations", "routes"):
        items = doc.get(section) or []
        if not isinstance(items, list):
            fail(f"{file}: {section}: must be a list", 2)
        for i, item in enumerate(items):
            where = f"{file}: {section}[{i}] ({_item_name(item)})"
            if not isinstance(item, dict) or not item.get("name"):
                fail(f"{where}: each item is a mapping with a name", 2)
            if section == "routes":
                status, answer = asyncio.run(hub.call("POST", "/v1/routes", item))
                verb = "applied route"
            elif item["name"] in existing:
                body = {k: v for k, v in item.items() if k != "kind"}
                status, answer = asyncio.run(
                    hub.call("PATCH", f"/v1/destinations/{item['name']}", body)
                )
                verb = "updated destination"
            else:
                status, answer = asyncio.run(hub.call("POST", "/v1/destinations", item))
                verb = "created destination"
            if not 200 <= status < 300:
                fail(f"{where}: {describe_error(status, answer)}")
            out.print(f"{verb} {item['name']}", markup=False)
            if verb == "created destination" and "secrets" not in item:
                _print_secret(item["name"], answer)


@routes_app.command("list")
def routes_list(as_json: JsonOpt = False, url: UrlOpt = None, api_key: KeyOpt = "") -> None:
    """Every route of the tenant, with the destinations it sends to."""
    hub = Hub(url, api_key)
    routes = hub.get("/v1/routes")["data"]
    if as_json:
        print_rows(routes)
        return
    names = hub.destination_names()
    rows = [
        [
            r.get("name", ""),
            ",".join(r.get("types") or []),
            ",".join(names.get(d, d) for d in r.get("destination_ids") or []),
            "yes" if r.get("enabled", True) else "no",
            r["id"],
        ]
        for r in routes
    ]
    out.print(table(["name", "types", "destinations", "enabled", "id"], rows))


@routes_app.command("delete")
def routes_delete(
    name: Annotated[str, typer.Argument(help="The route's name or id.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Delete a route."""
    Hub(url, api_key).request("DELETE", f"/v1/routes/{name}", what=f"route {name!r}")
    out.print(f"deleted route {name}", markup=False)


# -- destinations ----------------------------------------------------------------------------


def _schedule(delays: list[float] | None) -> str:
    """[0, 5, 300, 7200] → '0,5s,5m,2h', as a retry_schedule is written."""
    if not delays:
        return "default"
    parts = []
    for d in delays:
        unit, size = next(
            ((u, n) for u, n in (("h", 3600), ("m", 60), ("s", 1)) if d >= n), ("", 1)
        )
        parts.append(f"{d / size:g}{unit}")
    return ",".join(parts)


@destinations_app.command("list")
def destinations_list(as_json: JsonOpt = False, url: UrlOpt = None, api_key: KeyOpt = "") -> None:
    """Every destination of the tenant (secrets masked)."""
    dests = Hub(url, api_key).get("/v1/destinations")["data"]
    if as_json:
        print_rows(dests)
        return
    rows = [
        [
            d["name"],
            d["kind"],
            "yes" if d["enabled"] else f"no: {d.get('disabled_reason') or 'paused'}",
            _schedule(d.get("retry_schedule")),
            d["id"],
        ]
        for d in dests
    ]
    out.print(table(["name", "kind", "enabled", "retry schedule", "id"], rows))


@destinations_app.command("show")
def destinations_show(
    name: Annotated[str, typer.Argument(help="The destination's name or id.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """One destination, as JSON (secrets masked)."""
    print_json(Hub(url, api_key).request("GET", f"/v1/destinations/{name}", what=name))


@destinations_app.command("create")
def destinations_create(
    name: Annotated[str, typer.Argument(help="Unique in the tenant; routes refer to it.")],
    kind: Annotated[
        str, typer.Option(help="webhook, slack, discord, email, whatsapp or inbox.")
    ] = "webhook",
    config: Annotated[
        str | None, typer.Option(help='The channel\'s config as JSON, e.g. \'{"url": "…"}\'.')
    ] = None,
    to: Annotated[
        str | None, typer.Option("--url-to", help='Shortcut for config {"url": …}.')
    ] = None,
    retry_schedule: Annotated[
        str | None,
        typer.Option(help="Delays before attempts 1…n, e.g. 0,5s,10s (default 0,5s,5m,…,10h)."),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt (default 10).")] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="A secret (signing secret, token, password); repeat while rotating."),
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Create a destination; a webhook's generated signing secret is printed once."""
    body: dict[str, Any] = {"name": name, "kind": kind, "config": _json_option(config, "--config")}
    if body["config"] is None:
        body["config"] = {}
    if to:
        body["config"]["url"] = to
    for field, value in (
        ("retry_schedule", retry_schedule),
        ("timeout", timeout),
        ("secrets", secret),
    ):
        if value is not None:
            body[field] = value
    answer = Hub(url, api_key).request("POST", "/v1/destinations", body, what=name)
    out.print(f"created destination {name} ({kind})", markup=False)
    if not secret:
        _print_secret(name, answer)


@destinations_app.command("update")
def destinations_update(
    name: Annotated[str, typer.Argument(help="The destination's name or id.")],
    config: Annotated[
        str | None, typer.Option(help="A new config as JSON (replaces the old one).")
    ] = None,
    retry_schedule: Annotated[
        str | None, typer.Option(help="Delays before attempts 1…n, e.g. 0,5s,10s.")
    ] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Resume or pause it.")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Change a destination's config, retry schedule or state."""
    body: dict[str, Any] = {}
    for field, value in (
        ("config", _json_option(config, "--config")),
        ("retry_schedule", retry_schedule),
        ("enabled", enabled),
    ):
        if value is not None:
            body[field] = value
    if not body:
        fail("nothing to change: give --config, --retry-schedule, --enable or --disable", 2)
    Hub(url, api_key).request("PATCH", f"/v1/destinations/{name}", body, what=name)
    out.print(f"updated destination {name}", markup=False)


@destinations_app.command("delete")
def destinations_delete(
    name: Annotated[str, typer.Argument(help="The destination's name or id.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Delete a destination (its open deliveries are cancelled)."""
    Hub(url, api_key).request("DELETE", f"/v1/destinations/{name}", what=name)
    out.print(f"deleted destination {name}", markup=False)


# -- sources ---------------------------------------------------------------------------------


def _source_id(hub: Hub, ref: str) -> str:
    """A source's id from its name or id (the API addresses sources by id only)."""
    for s in hub.get("/v1/sources")["data"]:
        if ref in (s["id"], s["name"]):
            return str(s["id"])
    fail(f"no source named {ref!r} in this tenant (see `switchboard sources list`)")


@sources_app.command("list")
def sources_list(as_json: JsonOpt = False, url: UrlOpt = None, api_key: KeyOpt = "") -> None:
    """Every source of the tenant with its receiving URL."""
    found = Hub(url, api_key).get("/v1/sources")["data"]
    if as_json:
        print_rows(found)
        return
    rows = [[s["name"], s["preset"], s.get("mapping") or "", s["url"], s["id"]] for s in found]
    out.print(table(["name", "preset", "mapping", "url", "id"], rows))


@sources_app.command("show")
def sources_show(
    name: Annotated[str, typer.Argument(help="The source's name or id.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """One source, as JSON (secrets masked), with its counters."""
    hub = Hub(url, api_key)
    print_json(hub.get(f"/v1/sources/{_source_id(hub, name)}"))


@sources_app.command("create")
def sources_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '.', '_' or '-'.")],
    preset: Annotated[
        str,
        typer.Option(help="How requests are verified: stripe, svix, github, hmac, token, asaas…"),
    ],
    mapping: Annotated[
        str | None, typer.Option(help="The mapping that turns payloads into events.")
    ] = None,
    preset_config: Annotated[
        str | None, typer.Option(help="The preset's settings as JSON, e.g. '{\"headers\": […]}'.")
    ] = None,
    mapping_version: Annotated[
        str | None, typer.Option(help="Pin this version of the mapping; default: the newest.")
    ] = None,
    event_source: Annotated[
        str | None, typer.Option(help="The `source` of the events made; default: the mapping.")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="The provider's signing secret; default: generated.")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Create a source; prints its receiving URL (and a generated secret, once)."""
    body: dict[str, Any] = {"name": name, "preset": preset}
    for field, value in (
        ("mapping", mapping),
        ("mapping_version", mapping_version),
        ("event_source", event_source),
    ):
        if value:
            body[field] = value
    if preset_config:
        body["preset_config"] = _json_option(preset_config, "--preset-config")
    if secret:
        body["secrets"] = [secret]
    answer = Hub(url, api_key).request("POST", "/v1/sources", body, what=name)
    out.print(f"created source {name}: POST {answer['url']}", markup=False)
    if answer.get("secret"):
        out.print(f"  secret (shown once): {answer['secret']}", markup=False)


@sources_app.command("delete")
def sources_delete(
    name: Annotated[str, typer.Argument(help="The source's name or id.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Delete a source (its URL stops answering)."""
    hub = Hub(url, api_key)
    hub.request("DELETE", f"/v1/sources/{_source_id(hub, name)}", what=name)
    out.print(f"deleted source {name}", markup=False)


@sources_app.command("requests")
def sources_requests(
    name: Annotated[str, typer.Argument(help="The source's name or id.")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """The source's request log, newest first (headers masked)."""
    hub = Hub(url, api_key)
    found = hub.get(f"/v1/sources/{_source_id(hub, name)}/requests")["data"]
    if as_json:
        print_rows(found)
        return
    rows = [
        [
            short_time(format_us(int(r["received_us"]))),
            str(r.get("status", "")),
            "yes" if r.get("verified") else "no",
            ",".join(r.get("event_ids") or []),
            str(r.get("verification_error") or r.get("error") or ""),
            str(r.get("id", "")),
        ]
        for r in found
    ]
    err.print(f"{len(rows)} requests", markup=False)
    out.print(
        table(
            ["received (UTC)", "status", "verified", "events", "error", "id"], rows, cut=["error"]
        )
    )
