"""Hub commands for events: `emit` one, `events list` with the API's filters, `events trace`,
`events tail`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Annotated, Any

import typer

from switchboard.cli.common import (
    FromOpt,
    Hub,
    JsonOpt,
    KeyOpt,
    ToOpt,
    TypesOpt,
    UrlOpt,
    describe_error,
    err,
    fail,
    out,
    print_json,
    print_rows,
    short_time,
    table,
    type_params,
    when_param,
)
from switchboard.client import encode_event

INTERNAL_NOISE = {"destination_id", "event_id"}  # ids the other fields already stand for
events_app = typer.Typer(help="Read the tenant's events.", no_args_is_help=True)


def emit(
    event_type: Annotated[str, typer.Argument(help="The event type, e.g. lead.created.")],
    data: Annotated[str, typer.Argument(help="The data object, as JSON.")] = "{}",
    subject: Annotated[
        str | None, typer.Option(help="Whom it is about (a customer, patient or user id).")
    ] = None,
    source: Annotated[str | None, typer.Option(help="The sending system's name.")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="An idempotency id; default: a new UUIDv7.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hub's whole answer.")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Send one event; prints whether the hub accepted it (exit 1 when it did not)."""
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        fail(f"data is not JSON: {exc}", 2)
    if not isinstance(payload, dict):
        fail('data must be a JSON object, e.g. \'{"name": "Ana"}\'', 2)
    envelope = {"id": event_id, "subject": subject, "source": source}
    try:
        event = json.loads(encode_event(event_type, payload, envelope).body)
    except (TypeError, ValueError) as exc:
        fail(str(exc), 2)
    hub = Hub(url, api_key)
    status, answer = asyncio.run(hub.call("POST", "/v1/events", event))
    results = answer.get("results") if isinstance(answer, dict) else None
    if as_json:
        print_json(answer)
    elif results:
        r = results[0]
        line = f"{r.get('status')} {event_type} {r.get('id') or event['id']}"
        problems = [f"{e.get('path')}: {e.get('message')}" for e in r.get("errors") or []]
        (out if r.get("status") in ("accepted", "duplicate") else err).print(
            line + ("".join(f"\n  {p}" for p in problems)), markup=False
        )
    else:
        err.print(f"error: {describe_error(status, answer)}", markup=False)
    first = results[0] if results else {}
    accepted = status == 202 and first.get("status") in ("accepted", "duplicate", "quarantined")
    raise typer.Exit(0 if accepted else 1)


def _event_row(e: dict[str, Any]) -> list[str]:
    return [
        short_time(e.get("time")),
        e["type"],
        e.get("subject") or "",
        e.get("source") or "",
        e["id"],
    ]


@events_app.command("list")
def events_list(
    type_: TypesOpt = None,
    subject: Annotated[str | None, typer.Option(help="Only events about this subject.")] = None,
    source: Annotated[str | None, typer.Option(help="Only events from this source.")] = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help="A filter pattern, as JSON (docs/filters.md).")
    ] = None,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after a page: the cursor printed under it.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most events to show (1–1000).")] = 20,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """The newest events first, one line each (`events get ID` shows one in full)."""
    params = [
        ("limit", str(limit)),
        *type_params(type_),
        *when_param(from_, "from", "--from"),
        *when_param(to, "to", "--to"),
    ]
    for name, value in (("subject", subject), ("source", source), ("filter", filter_)):
        if value:
            params.append((name, value))
    if cursor:
        params.append(("cursor", cursor))
    page = Hub(url, api_key).get("/v1/events", params)
    if as_json:
        print_rows(page["data"])
        return
    rows = [_event_row(e) for e in page["data"]]
    out.print(table(["time (UTC)", "type", "subject", "source", "id"], rows))
    if page.get("next_cursor"):
        err.print(f"more: --cursor {page['next_cursor']}", markup=False)


@events_app.command("get")
def events_get(
    event_id: Annotated[str, typer.Argument(help="The event's id.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """One event in full, as JSON."""
    print_json(Hub(url, api_key).get(f"/v1/events/{event_id}"))


def _timeline_row(item: dict[str, Any]) -> list[str]:
    """One line of a trace: when, what, and the ids that say which."""
    kind = item["kind"]
    if kind == "event":
        e = item["event"]
        return [short_time(item["at"]), "event", e["type"], e["id"]]
    if kind == "delivery":
        d = item["delivery"]
        return [short_time(item["at"]), "delivery", d["status"], d["id"]]
    if kind == "attempt":
        a = item["attempt"]
        code = "" if a["status_code"] is None else f" {a['status_code']}"
        what = f"#{a['n']} {'ok' if a['ok'] else a['error'] or 'failed'}{code}"
        return [
            short_time(item["at"]),
            "attempt",
            f"{what} {a['latency_ms']} ms",
            item["delivery_id"],
        ]
    r = item["run"]
    return [short_time(item["at"]), "run", f"{r['automation']} {r['status']}", r["id"]]


@events_app.command("trace")
def events_trace(
    trace_id: Annotated[str, typer.Argument(help="The trace id (an event's trace_id).")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """A trace's timeline: its events, deliveries, attempts and automation runs, oldest first."""
    body = Hub(url, api_key).get(f"/v1/traces/{trace_id}")
    if as_json:
        print_rows(body["timeline"])
        return
    rows = [_timeline_row(i) for i in body["timeline"]]
    out.print(table(["time (UTC)", "kind", "what", "id"], rows, cut=["what"]))
    if body.get("truncated"):
        err.print("the trace has more than 1,000 events: the newest are not shown", markup=False)


@events_app.command("tail")
def events_tail(
    type_: TypesOpt = None,
    since: Annotated[
        str | None,
        typer.Option("--since", "--from", help="First print the events since then, e.g. 10m."),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    max_seconds: Annotated[float, typer.Option(help="Stop after this long (0 = never).")] = 0,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Follow new events live, like `tail -f`: the tenant's own and the hub's internal ones
    (`switchboard.delivery_succeeded|failed|dead`, `switchboard.destination_disabled`).

    Watch deliveries fail and dead-letter with --type 'switchboard.delivery_*'."""
    hub = Hub(url, api_key)
    params = [("limit", "200"), *type_params(type_)]
    backlog = when_param(since, "from", "--since")
    seen: deque[str] = deque(maxlen=5000)
    seen_set: set[str] = set()
    started = time.monotonic()

    async def loop() -> None:
        first = True
        while not max_seconds or time.monotonic() - started < max_seconds:
            status, body = await hub.call("GET", "/v1/events", params=params + backlog * first)
            if status != 200:
                fail(describe_error(status, body))
            for e in reversed(body["data"]):
                ident = f"{e['source']}\x00{e['id']}"
                if ident in seen_set:
                    continue
                if len(seen) == seen.maxlen:
                    seen_set.discard(seen[0])
                seen.append(ident)
                seen_set.add(ident)
                if not first or backlog:
                    _print_event(e, as_json)
            first = False
            await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(loop())


def _print_event(e: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(e)
        return
    if e["type"].startswith("switchboard.") and isinstance(e.get("data"), dict):
        # The hub's own events: what happened to which delivery, by destination name.
        data = " ".join(
            f"{k}={v}" for k, v in e["data"].items() if k not in INTERNAL_NOISE and v is not None
        )
    else:
        data = json.dumps(e.get("data"), ensure_ascii=False)
        if len(data) > 160:
            data = data[:159] + "…"
    subject = f" {e['subject']}" if e.get("subject") else ""
    print(f"{short_time(e.get('time'))}  {e['type']}{subject}  {e['id']}  {data}", flush=True)
