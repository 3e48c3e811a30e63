"""The dashboard shows a key what the API shows it, on both stores: a `read` key without `pii`
walks every page and the live tail and meets no raw PII value of the stored events; a `pii` key
sees them whole; a key limited to one clinic never meets the other clinic's events, and its
counts and actions are its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from aiohttp import web

from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_dashboard import Browser
from tests.integration.test_privacy_masking import CPF, EMAIL, LEAD, LEAD_TYPE, NAME, PHONE, RAW

pytestmark = pytest.mark.security


@pytest.fixture
async def failing_echo() -> AsyncIterator[str]:
    """A receiver that fails, answering with the body it got: the dead delivery's error then
    carries the person's data, as real endpoints' error pages do."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=500, body=await request.read())

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


async def _populate(api: Api, manage: str, echo: str, failing: str) -> tuple[str, list[str]]:
    """A lead whose subject is an email, delivered to an echoing webhook and dead at a failing
    one, an automation run it started, and a source's request carrying the person's email and
    phone; returns the event's id and the pages of its trace, deliveries, source and run."""
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", manage, LEAD_TYPE)
    assert status in (200, 201), body
    for dest in (
        {"name": "hook", "kind": "webhook", "config": {"url": echo}},
        {"name": "dead", "kind": "webhook", "config": {"url": failing}, "retry_schedule": "0"},
    ):
        status, body, _ = await api.call("POST", "/v1/destinations", manage, dest)
        assert status == 201, body
    route = {"name": "r", "types": ["lead.*"], "destinations": ["hook", "dead"]}
    assert (await api.call("POST", "/v1/routes", manage, route))[0] == 201
    nudge = {"name": "nudge", "on": "lead.created", "steps": [{"wait": "1h"}]}
    assert (await api.call("PUT", "/v1/automations/nudge", manage, nudge))[0] == 201
    status, source, _ = await api.call(
        "POST", "/v1/sources", manage, {"name": "forms", "preset": "none"}
    )
    assert status == 201, source
    form = {"contact": {"email": EMAIL, "phone": PHONE}}
    status, _, _ = await api.call("POST", f"/v1/sources/{source['id']}/webhook", manage, form)
    assert status == 200
    event = {"type": "lead.created", "subject": EMAIL, "trace_id": "lead-trace", "data": LEAD}
    status, body, _ = await api.call("POST", "/v1/events", manage, [event])
    assert status == 202, body
    await worker_for(api).drain()
    _, dead, _ = await api.call("GET", "/v1/dlq", manage)
    assert len(dead["data"]) == 1, dead  # the page below has a row to show
    _, runs, _ = await api.call("GET", "/v1/automations/nudge/runs", manage)
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", manage)
    more = [
        "/ui/traces/lead-trace",
        "/ui/deliveries",
        f"/ui/deliveries/{dead['data'][0]['id']}",
        "/ui/sources",
        f"/ui/sources/{source['id']}",
        f"/ui/sources/{source['id']}/requests/{log['data'][0]['id']}",
        "/ui/automations",
        "/ui/automations/nudge",
        f"/ui/runs/{runs['data'][0]['id']}",
    ]
    return str(body["results"][0]["id"]), more


async def _walk(b: Browser, event_id: str, more: list[str]) -> dict[str, str]:
    """Every page a `read` key can open, by path, with the replay screens of a `manage` key."""
    pages: dict[str, str] = {}
    for path in (
        *more,
        "/ui",
        "/ui/events",
        "/ui/events?subject=" + quote(EMAIL, safe=""),
        "/ui/events?type=lead.*",
        f"/ui/events/{event_id}",
        "/ui/subjects/" + quote(EMAIL, safe=""),
        "/ui/dlq",
        "/ui/destinations",
        "/ui/catalog",
        "/ui/catalog/lead.created",
        "/ui/live",
        "/ui/replays",
    ):
        status, page, _ = await b.request("GET", path)
        assert status == 200, (path, page)
        pages[path] = page
    return pages


async def _replay_pages(b: Browser) -> dict[str, str]:
    token = await b.csrf("/ui/replays")
    status, plan, _ = await b.request("POST", "/ui/replays", f"csrf={token}&types=lead.*&dry_run=1")
    assert status == 200 and "1 event would make" in plan, plan
    status, _, headers = await b.request("POST", "/ui/replays", f"csrf={token}&types=lead.*&run=1")
    assert status == 303, headers
    status, job, _ = await b.request("GET", headers["Location"])
    assert status == 200
    return {"replay dry run": plan, "replay progress": job}


async def _tail(api: Api, b: Browser, event_id: str) -> str:
    """The live tail from the start, read until it has sent the event (a generous deadline)."""
    cookie = "; ".join(f"{k}={v}" for k, v in b.cookies.items())
    port = int(api.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /ui/live/stream?after=0 HTTP/1.1\r\nHost: x\r\nCookie: "
            + cookie.encode()
            + b"\r\n\r\n"
        )
        await writer.drain()
        got = b""
        while b'"id":"' + event_id.encode() not in got:
            chunk = await asyncio.wait_for(reader.read(65536), timeout=60)
            assert chunk, got
            got += chunk
        return got.decode()
    finally:
        writer.close()


async def test_a_read_key_sees_no_raw_pii_on_any_page_and_a_pii_key_sees_it(
    hub_api: Api, echo: str, failing_echo: str
) -> None:
    api = hub_api
    tenant, manage = await api.tenant(scopes=("ingest", "read", "manage"))
    _, read = await api.tenant(tenant, scopes=("read",))
    _, pii = await api.tenant(tenant, scopes=("read", "pii"))
    event_id, more = await _populate(api, manage, echo, failing_echo)

    reader = Browser(api)
    assert (await reader.sign_in(read))[0] == 303
    pages = await _walk(reader, event_id, more)
    pages["live tail"] = await _tail(api, reader, event_id)
    manager = Browser(api)  # a manage key without `pii` runs replays, masked the same
    assert (await manager.sign_in(manage))[0] == 303
    pages.update(await _replay_pages(manager))
    for path, page in pages.items():
        assert [v for v in RAW if v in page] == [], path
    event = pages[f"/ui/events/{event_id}"]
    assert "J. P." in event and "+55 31 9****-5432" in event and "***.456.789-**" in event
    assert '"plan": "gold"' in event  # not PII: shown as sent
    # a masked subject is text, not a link to a timeline that would be empty
    assert "the timeline needs a key with <code>pii</code>" in event
    assert "/ui/subjects/j" not in event and "/ui/subjects/j" not in pages["/ui/events"]
    assert "j***@e***.com.br" in pages["/ui/events"] and "j***@e***.com.br" in pages["live tail"]
    assert (
        event_id in pages["/ui/dlq"] and event_id in pages["/ui/subjects/" + quote(EMAIL, safe="")]
    )

    whole = Browser(api)
    assert (await whole.sign_in(pii))[0] == 303
    seen = await _walk(whole, event_id, more)
    event = seen[f"/ui/events/{event_id}"]
    assert all(v in event for v in (NAME, EMAIL, PHONE, CPF)), event
    link = '<a href="/ui/subjects/' + quote(EMAIL, safe="") + '">'
    assert link in event and link in seen["/ui/events"]
    assert EMAIL in seen["/ui/events"] and EMAIL in seen["/ui/live"]
    assert EMAIL in seen["/ui/traces/lead-trace"] and EMAIL in seen["/ui/automations/nudge"]
    assert PHONE in seen[more[5]]  # the source's request, as received
    assert EMAIL in await _tail(api, whole, event_id)


MINE, THEIRS, LATER = "visit-c17-a41", "visit-c18-b52", "visit-c17-c63"


async def _two_clinics(api: Api, manage: str, failing: str) -> str:
    """Clinic 17's and clinic 18's events, their deliveries dead at a failing webhook; returns
    a key limited to clinic 17."""
    dest = {"name": "hook", "kind": "webhook", "config": {"url": failing}, "retry_schedule": "0"}
    assert (await api.call("POST", "/v1/destinations", manage, dest))[0] == 201
    route = {"name": "all", "types": ["visit.*"], "destinations": ["hook"]}
    assert (await api.call("POST", "/v1/routes", manage, route))[0] == 201
    events = [
        {
            "id": event_id,
            "type": "visit.done",
            "subject": "p-1",
            "trace_id": "visit-trace",
            "context": {"clinic_id": clinic},
            "data": {},
        }
        for event_id, clinic in ((MINE, "c-17"), (THEIRS, "c-18"))
    ]
    assert (await api.call("POST", "/v1/events", manage, events))[0] == 202
    await worker_for(api).drain()
    status, created, _ = await api.call(
        "POST",
        "/v1/keys",
        manage,
        {"scopes": ["read", "manage"], "constraints": {"context": {"clinic_id": ["c-17"]}}},
    )
    assert status == 201, created
    return str(created["key"])


async def test_a_constrained_key_sees_only_its_clinic_on_every_page(
    hub_api: Api, failing_echo: str
) -> None:
    api = hub_api
    _, manage = await api.tenant(scopes=("ingest", "read", "manage"))
    mine = await _two_clinics(api, manage, failing_echo)
    b = Browser(api)
    assert (await b.sign_in(mine))[0] == 303
    pages = await _walk_ids(b)
    for path, page in pages.items():
        assert THEIRS not in page, path
    assert MINE in pages["/ui/events"] and MINE in pages["/ui/dlq"] and MINE in pages["/ui/live"]
    assert MINE in pages["/ui/subjects/p-1"] and MINE in pages["/ui/events?type=visit.*"]
    assert MINE in pages["/ui/traces/visit-trace"] and MINE in pages["/ui/deliveries"]
    assert '<dd id="trace-deliveries">1</dd>' in pages["/ui/traces/visit-trace"]
    # the API's trace narrows the same way
    status, trace, _ = await api.call("GET", "/v1/traces/visit-trace", mine)
    assert status == 200 and trace["events"] == 1 and trace["deliveries"] == 1, trace
    _, dead, _ = await api.call("GET", "/v1/dlq", manage)
    for d in dead["data"]:
        status, page, _ = await b.request("GET", f"/ui/deliveries/{d['id']}")
        assert status == (200 if d["event"]["id"] == MINE else 404), page
    overview = pages["/ui"]
    assert '<dd id="events-total">1</dd>' in overview and "0 succeeded, 1 failed." in overview
    assert (
        '<a href="/ui/dlq">1</a>' in overview
        and '<a href="/ui/dlq">1</a>' in pages["/ui/destinations"]
    )
    status, page, _ = await b.request("GET", f"/ui/events/{THEIRS}")
    assert status == 404 and "Not found" in page
    assert (await b.request("GET", f"/ui/events/{MINE}"))[0] == 200

    # the live tail: the other clinic's event, between two of this one's, is never sent
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        manage,
        {
            "id": LATER,
            "type": "visit.done",
            "subject": "p-1",
            "context": {"clinic_id": "c-17"},
            "data": {},
        },
    )
    assert status in (200, 202), body
    tail = await _tail(api, b, LATER)
    assert MINE in tail and THEIRS not in tail

    # replays and DLQ actions reach only this clinic's events and deliveries
    token = await b.csrf("/ui/replays")
    form = f"csrf={token}&types=visit.*&dry_run=1"
    status, plan, _ = await b.request("POST", "/ui/replays", form)
    assert status == 200 and "2 events would make 2 deliveries" in plan, plan
    assert THEIRS not in plan
    _, dead, _ = await api.call("GET", "/v1/dlq", manage)
    theirs = [d["id"] for d in dead["data"] if d["event"]["id"] == THEIRS]
    assert len(theirs) == 1
    for action, done in (("retry", "0+requeued"), ("archive", "0+archived")):
        form = f"csrf={token}&ids={theirs[0]}"
        status, _, headers = await b.request("POST", f"/ui/dlq/{action}", form)
        assert status == 303 and headers["Location"] == f"/ui/dlq?done={done}", action
    _, still, _ = await api.call("GET", "/v1/dlq", manage)
    assert theirs[0] in [d["id"] for d in still["data"]]

    # the unconstrained key of the same tenant sees both clinics on the same pages
    whole = Browser(api)
    assert (await whole.sign_in(manage))[0] == 303
    seen = await _walk_ids(whole)
    assert THEIRS in seen["/ui/events"] and THEIRS in seen["/ui/dlq"]
    assert "0 succeeded, 2 failed." in seen["/ui"] and '<a href="/ui/dlq">2</a>' in seen["/ui"]


async def _walk_ids(b: Browser) -> dict[str, str]:
    pages: dict[str, str] = {}
    for path in (
        "/ui",
        "/ui/events",
        "/ui/events?type=visit.*",
        "/ui/events?subject=p-1",
        "/ui/subjects/p-1",
        "/ui/traces/visit-trace",
        "/ui/deliveries",
        "/ui/dlq",
        "/ui/destinations",
        "/ui/live",
        "/ui/replays",
    ):
        status, page, _ = await b.request("GET", path)
        assert status == 200, (path, page)
        pages[path] = page
    return pages
