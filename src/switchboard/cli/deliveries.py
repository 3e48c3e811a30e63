"""Hub commands for what happened to events: `deliveries` (and their attempts), the `dlq`,
and `replay`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress import Progress

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

deliveries_app = typer.Typer(
    help="Deliveries (one event × one destination) and their attempts.", no_args_is_help=True
)
dlq_app = typer.Typer(help="Inspect, retry and archive dead deliveries.", no_args_is_help=True)

FINAL = {"succeeded", "dead", "cancelled", "delivered", "read", "failed"}
DestinationOpt = Annotated[
    str | None, typer.Option(help="Only deliveries to this destination (name or id).")
]
LimitOpt = Annotated[int, typer.Option(help="Most deliveries to show.")]
WatchOpt = Annotated[
    bool, typer.Option("--watch", help="Keep refreshing until Ctrl-C (or --max-seconds).")
]
IntervalOpt = Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")]
MaxSecondsOpt = Annotated[
    float, typer.Option(help="With --watch: stop after this long (0 = never).")
]


def _filters(
    destination: str | None,
    types: list[str] | None,
    from_: str | None,
    to: str | None,
) -> list[tuple[str, str]]:
    return [
        *([("destination", destination)] if destination else []),
        *type_params(types),
        *when_param(from_, "from", "--from"),
        *when_param(to, "to", "--to"),
    ]


def _delivery_rows(hub: Hub, rows: list[dict[str, Any]]) -> list[list[str]]:
    names = hub.destination_names()
    return [
        [
            short_time(d.get("updated_at")),
            d["status"],
            str(d["attempts"]),
            names.get(d["destination_id"], d["destination_id"]),
            (d.get("event") or {}).get("type", ""),
            (d.get("event") or {}).get("subject") or "",
            d.get("last_error") or "",
            d["id"],
        ]
        for d in rows
    ]


DELIVERY_COLUMNS = [
    "updated (UTC)",
    "status",
    "attempts",
    "destination",
    "type",
    "subject",
    "last error",
    "id",
]


def _show_listing(
    hub: Hub,
    path: str,
    params: list[tuple[str, str]],
    limit: int,
    as_json: bool,
    watch: bool,
    interval: float,
    max_seconds: float,
) -> None:
    def fetch() -> list[dict[str, Any]]:
        return hub.pages(path, [("limit", str(min(limit, 1000))), *params], limit)

    if as_json:
        print_rows(fetch())
        return
    if not watch:
        rows = fetch()
        out.print(table(DELIVERY_COLUMNS, _delivery_rows(hub, rows), cut=["last error"]))
        if not rows:
            err.print("no deliveries match")
        return
    started = time.monotonic()
    with Live(console=out, auto_refresh=False) as live:
        try:
            while not max_seconds or time.monotonic() - started < max_seconds:
                shown = _delivery_rows(hub, fetch())
                live.update(table(DELIVERY_COLUMNS, shown, cut=["last error"]), refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[
        str | None,
        typer.Option(
            help="pending, sending, retrying, succeeded, dead, cancelled, delivered, read, failed."
        ),
    ] = None,
    destination: DestinationOpt = None,
    type_: TypesOpt = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    event: Annotated[str | None, typer.Option(help="Only the deliveries of this event id.")] = None,
    replay: Annotated[str | None, typer.Option(help="Only those made by this replay id.")] = None,
    limit: LimitOpt = 50,
    as_json: JsonOpt = False,
    watch: WatchOpt = False,
    interval: IntervalOpt = 1.0,
    max_seconds: MaxSecondsOpt = 0,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Deliveries, most recently changed first, with destination names."""
    hub = Hub(url, api_key)
    if event:
        rows = hub.request("GET", f"/v1/events/{event}/deliveries", what=f"event {event}")["data"]
        if as_json:
            print_rows(rows)
        else:
            out.print(table(DELIVERY_COLUMNS, _delivery_rows(hub, rows), cut=["last error"]))
        return
    params = _filters(destination, type_, from_, to)
    if status:
        params.append(("status", status))
    if replay:
        params.append(("replay", replay))
    _show_listing(hub, "/v1/deliveries", params, limit, as_json, watch, interval, max_seconds)


@deliveries_app.command("show")
def deliveries_show(
    delivery_id: Annotated[str, typer.Argument(help="The delivery's id.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """One delivery, as JSON."""
    print_json(Hub(url, api_key).request("GET", f"/v1/deliveries/{delivery_id}", what=delivery_id))


def _attempt_row(a: dict[str, Any]) -> list[str]:
    return [
        str(a["n"]),
        short_time(a.get("started_at")),
        f"{a.get('latency_ms', 0):.0f} ms",
        "ok" if a.get("ok") else "failed",
        str(a.get("status_code") or ""),
        " ".join(str(x) for x in (a.get("error"), a.get("message")) if x),
    ]


ATTEMPT_COLUMNS = ["n", "started (UTC)", "latency", "result", "status", "error"]


@deliveries_app.command("attempts")
def deliveries_attempts(
    delivery_id: Annotated[str, typer.Argument(help="The delivery's id.")],
    as_json: JsonOpt = False,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Print new attempts as they happen until the delivery ends."),
    ] = False,
    interval: IntervalOpt = 1.0,
    max_seconds: MaxSecondsOpt = 0,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Every attempt of a delivery: time, latency, status code, error."""
    hub = Hub(url, api_key)
    path = f"/v1/deliveries/{delivery_id}"
    if not watch:
        attempts = hub.request("GET", path + "/attempts", what=delivery_id)["data"]
        if as_json:
            print_rows(attempts)
        else:
            out.print(table(ATTEMPT_COLUMNS, [_attempt_row(a) for a in attempts], cut=["error"]))
        return
    shown = 0
    started = time.monotonic()
    while True:
        delivery = hub.request("GET", path, what=delivery_id)
        attempts = hub.get(path + "/attempts")["data"]
        for a in attempts[shown:]:
            if as_json:
                print_json(a)
            else:
                print("  ".join(_attempt_row(a)), flush=True)
        shown = max(shown, len(attempts))
        if delivery["status"] in FINAL:
            err.print(f"delivery {delivery_id} is {delivery['status']}", markup=False)
            raise typer.Exit(0 if delivery["status"] != "dead" else 1)
        if max_seconds and time.monotonic() - started > max_seconds:
            err.print(f"delivery {delivery_id} is still {delivery['status']}", markup=False)
            raise typer.Exit(1)
        time.sleep(interval)


def _requeue_each(hub: Hub, ids: list[str]) -> None:
    """Retry the given deliveries one by one, so an id that matches nothing is named."""
    missing: list[str] = []
    requeued = 0
    for delivery_id in ids:
        status, answer = asyncio.run(hub.call("POST", f"/v1/deliveries/{delivery_id}/retry"))
        if status == 404:
            missing.append(delivery_id)
        elif not 200 <= status < 300:
            fail(f"{delivery_id}: {describe_error(status, answer)}")
        else:
            requeued += int(answer.get("requeued", 0))
    out.print(f"requeued {requeued}")
    if missing:
        fail(f"no dead or cancelled delivery with id {', '.join(missing)} in this tenant")


@deliveries_app.command("retry")
def deliveries_retry(
    ids: Annotated[list[str], typer.Argument(help="Ids of dead or cancelled deliveries.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Send dead or cancelled deliveries again (the schedule starts over)."""
    _requeue_each(Hub(url, api_key), ids)


# -- the dead-letter queue -------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    destination: DestinationOpt = None,
    type_: TypesOpt = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help="A filter pattern, as JSON (docs/filters.md).")
    ] = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Dead deliveries, most recent first."""
    params = _filters(destination, type_, from_, to)
    if filter_:
        params.append(("filter", filter_))
    _show_listing(Hub(url, api_key), "/v1/dlq", params, limit, as_json, False, 0, 0)


@dlq_app.command("stats")
def dlq_stats(as_json: JsonOpt = False, url: UrlOpt = None, api_key: KeyOpt = "") -> None:
    """Dead deliveries counted by event type and by destination."""
    hub = Hub(url, api_key)
    stats = hub.get("/v1/dlq/stats")
    names = hub.destination_names()
    by_dest = {names.get(k, k): v for k, v in stats["by_destination"].items()}
    if as_json:
        print_json({**stats, "by_destination": by_dest})
        return
    rows = [["type", k, str(v)] for k, v in sorted(stats["by_type"].items())]
    rows += [["destination", k, str(v)] for k, v in sorted(by_dest.items())]
    out.print(f"{stats['total']} dead deliveries")
    if rows:
        out.print(table(["by", "name", "dead"], rows))


@dlq_app.command("retry")
def dlq_retry(
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="Delivery ids; none: every dead delivery matching the filters."),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option("--all", help="Without ids: requeue every match without asking."),
    ] = False,
    destination: DestinationOpt = None,
    type_: TypesOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Retry dead deliveries: the given ids (an unknown id is an error), or every one matching
    the filters — which asks first, unless --all."""
    hub = Hub(url, api_key)
    if ids:
        if all_ or destination or type_:
            fail("give delivery ids, or --all with filters, not both", 2)
        _requeue_each(hub, ids)
        return
    params = _filters(destination, type_, None, None)
    found = [d["id"] for d in hub.pages("/v1/dlq", [("limit", "1000"), *params], 1_000_000)]
    if not found:
        out.print("the DLQ has no matching deliveries; requeued 0")
        return
    what = f"{len(found)} dead deliveries" + (" matching the filters" if params else "")
    if not all_:
        if not sys.stdin.isatty():
            fail(f"{what}: give their ids, or --all to requeue them all", 2)
        if not typer.confirm(f"Requeue {what}?", default=False, err=True):
            fail("nothing requeued", 1)
    requeued = 0
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("requeueing", total=len(found))
        for i in range(0, len(found), 1000):
            chunk = found[i : i + 1000]
            requeued += hub.request("POST", "/v1/dlq/retry", {"ids": chunk})["requeued"]
            progress.advance(task, len(chunk))
    out.print(f"requeued {requeued}")


@dlq_app.command("archive")
def dlq_archive(
    ids: Annotated[list[str], typer.Argument(help="Ids of dead deliveries.")],
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Archive dead deliveries (they leave the DLQ listing and are kept for the record)."""
    body = Hub(url, api_key).request("POST", "/v1/dlq/archive", {"ids": ids})
    out.print(f"archived {body['archived']}")
    if body["archived"] < len(set(ids)):
        fail(f"{len(set(ids)) - body['archived']} of the ids matched no dead delivery")


# -- replay ----------------------------------------------------------------------------------


def replay(
    type_: TypesOpt = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help="A filter pattern, as JSON (docs/filters.md).")
    ] = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    route: Annotated[
        list[str] | None, typer.Option(help="Only through this route (name); repeat for more.")
    ] = None,
    destination: Annotated[
        list[str] | None,
        typer.Option(help="Only to this destination (name); alone: straight to it. Repeatable."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count events and deliveries; send nothing.")
    ] = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = "",
) -> None:
    """Re-route stored events; shows a progress bar until the job is done."""
    body: dict[str, Any] = {"dry_run": dry_run}
    if type_:
        body["types"] = type_
    if filter_:
        try:
            body["filter"] = json.loads(filter_)
        except json.JSONDecodeError as exc:
            fail(f"--filter is not JSON: {exc}", 2)
    for name, value in (("from", from_), ("to", to)):
        if value:
            body[name] = when_param(value, name, f"--{name}")[0][1]
    for name, values in (("routes", route), ("destinations", destination)):
        if values:
            body[name] = values
    hub = Hub(url, api_key)
    job = hub.request("POST", "/v1/replays", body)
    if dry_run:
        if as_json:
            print_json(job)
        else:
            out.print(f"would replay {job['events']} events into {job['deliveries']} deliveries")
        return
    with Progress(console=err, transient=not sys.stderr.isatty()) as progress:
        task = progress.add_task(f"replay {job['id']}", total=job.get("total") or None)
        while True:
            job = hub.get(f"/v1/replays/{job['id']}")
            progress.update(task, completed=job["scanned"], total=job.get("total") or None)
            if job["status"] != "running":
                break
            time.sleep(0.5)
    if as_json:
        print_json(job)
    else:
        out.print(f"{job['status']}: {job['events']} events, {job['deliveries']} deliveries")
    raise typer.Exit(0 if job["status"] == "done" else 1)
