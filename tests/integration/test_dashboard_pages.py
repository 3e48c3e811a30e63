"""The dashboard's trace, delivery, source and automation pages over plain HTTP, on both stores:
each shows the tenant's own data, answers another tenant's id with 404, and names the field of
bad input in a 400 page (never a 500)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from switchboard.automation_engine import FakeClock
from switchboard.envelope import now_us
from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_dashboard import Browser

pytestmark = pytest.mark.security

WELCOME: dict[str, Any] = {
    "name": "welcome",
    "on": "lead.created",
    "steps": [{"wait": "2h"}, {"id": "hello", "send": {"destination": "crm"}}],
}


async def _tenant(api: Api, url: str) -> str:
    """A tenant that routes lead.* to a webhook at `url` and runs `welcome` on each lead."""
    _, key = await api.tenant()
    dest = {"name": "crm", "kind": "webhook", "config": {"url": url}}
    assert (await api.call("POST", "/v1/destinations", key, dest))[0] == 201
    route = {"name": "leads", "types": ["lead.*"], "destinations": ["crm"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    status, body, _ = await api.call("PUT", "/v1/automations/welcome", key, WELCOME)
    assert status == 201, body
    return key


async def _send(api: Api, key: str, *events: dict[str, Any]) -> None:
    status, body, _ = await api.call("POST", "/v1/events", key, list(events))
    assert status == 202, body


def _lead(event_id: str, trace_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "lead.created",
        "subject": "patient-7",
        "trace_id": trace_id,
        "data": {},
    }


async def _deliveries(api: Api, key: str) -> list[dict[str, Any]]:
    status, body, _ = await api.call("GET", "/v1/deliveries", key)
    assert status == 200, body
    return list(body["data"])


async def test_the_trace_page_shows_events_deliveries_attempts_and_runs_in_time_order(
    hub_api: Api, echo: str
) -> None:
    api = hub_api
    key = await _tenant(api, echo)
    other = await _tenant(api, echo)
    await _send(api, key, _lead("lead-1", "trace-1"))
    await _send(api, other, _lead("their-1", "trace-1"), _lead("their-2", "trace-theirs"))
    await worker_for(api).drain()
    (delivery,) = await _deliveries(api, key)
    status, runs, _ = await api.call("GET", "/v1/automations/welcome/runs", key)
    assert status == 200 and len(runs["data"]) == 1, runs
    run_id = runs["data"][0]["id"]

    b = Browser(api)
    await b.sign_in(key)
    status, page, _ = await b.request("GET", "/ui/traces/trace-1")
    assert status == 200, page
    assert "their-1" not in page  # the same trace id in another tenant is not this trace
    marks = [
        page.index('href="/ui/events/lead-1"'),
        page.index(f'href="/ui/deliveries/{delivery["id"]}">to crm'),
        page.index("<strong>attempt 1</strong>"),
    ]
    assert marks == sorted(marks), "not in time order"
    assert f'href="/ui/runs/{run_id}"' in page and "welcome (version 1)" in page
    assert '<dd id="trace-attempts">1</dd>' in page
    # the event page and the subject's timeline link to the trace
    _, event, _ = await b.request("GET", "/ui/events/lead-1")
    assert 'href="/ui/traces/trace-1"' in event
    assert f'href="/ui/deliveries/{delivery["id"]}"' in event
    _, timeline, _ = await b.request("GET", "/ui/subjects/patient-7")
    assert 'href="/ui/traces/trace-1"' in timeline and "their-1" not in timeline
    _, search, _ = await b.request("GET", "/ui/events?trace_id=trace-1")
    assert 'href="/ui/traces/trace-1"' in search
    # another tenant's trace, and a trace id past the limit
    status, page, _ = await b.request("GET", "/ui/traces/trace-theirs")
    assert status == 404 and "Not found" in page and "their-2" not in page
    status, page, _ = await b.request("GET", "/ui/traces/" + "t" * 256)
    assert status == 400 and "trace_id" in page


async def test_the_deliveries_page_filters_and_a_delivery_shows_its_attempts(
    hub_api: Api, echo: str
) -> None:
    api = hub_api
    key = await _tenant(api, echo)
    other = await _tenant(api, echo)
    await _send(api, key, _lead("lead-1", "t-1"), {"id": "misc-1", "type": "misc.x", "data": {}})
    await _send(api, other, _lead("their-1", "t-2"))
    await worker_for(api).drain()
    (mine,) = await _deliveries(api, key)
    (theirs,) = await _deliveries(api, other)

    b = Browser(api)
    await b.sign_in(key)
    status, page, _ = await b.request("GET", "/ui/deliveries")
    assert status == 200 and mine["id"] in page and theirs["id"] not in page
    for query, shown in (
        ("status=succeeded", True),
        ("status=dead", False),
        ("destination=crm", True),
        ("type=lead.*", True),
        ("type=misc.*", False),
    ):
        status, page, _ = await b.request("GET", "/ui/deliveries?" + query)
        assert status == 200 and (mine["id"] in page) is shown, query
    for query, field in (
        ("status=lost", "status:"),
        ("destination=nowhere", "destination:"),
        ("type=A%20B", "type:"),
        ("cursor=x", "cursor:"),
        ("cursor=99999999999999999999:x", "cursor:"),
        ("type=" + "a" * 201, "type"),
    ):
        status, page, _ = await b.request("GET", "/ui/deliveries?" + query)
        assert status == 400 and field in page, (query, page)

    status, page, _ = await b.request("GET", f"/ui/deliveries/{mine['id']}")
    assert status == 200 and "Every attempt, first to last" in page
    assert re.search(r"<td>1</td><td class=\"when\">[^<]+</td><td>ok</td>\s*<td>200</td>", page), (
        page
    )
    assert 'href="/ui/events/lead-1"' in page and 'href="/ui/traces/t-1"' in page
    status, page, _ = await b.request("GET", f"/ui/deliveries/{theirs['id']}")
    assert status == 404 and "their-1" not in page


async def test_sources_and_their_request_log(api: Api) -> None:
    _, key = await api.tenant()
    _, other = await api.tenant()
    made = []
    for k, name in ((key, "partner"), (other, "theirs")):
        status, src, _ = await api.call("POST", "/v1/sources", k, {"name": name, "preset": "none"})
        assert status == 201, src
        made.append(src)
    mine, theirs = made
    for src, body in ((mine, b'{"order": "A-1"}'), (mine, b"not json"), (theirs, b'{"o": 2}')):
        status, _, _ = await api.call(
            "POST",
            f"/v1/sources/{src['id']}/webhook",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert status == 200
    _, log, _ = await api.call("GET", f"/v1/sources/{mine['id']}/requests", key)
    assert len(log["data"]) == 2
    first = log["data"][-1]  # newest first: the JSON one came first
    _, their_log, _ = await api.call("GET", f"/v1/sources/{theirs['id']}/requests", other)
    their_request = their_log["data"][0]["id"]

    b = Browser(api)
    await b.sign_in(key)
    status, page, _ = await b.request("GET", "/ui/sources")
    assert status == 200 and f'href="/ui/sources/{mine["id"]}"' in page and "theirs" not in page
    status, page, _ = await b.request("GET", f"/ui/sources/{mine['id']}")
    assert status == 200 and all(r["id"] in page for r in log["data"])
    status_shown = first["status"]
    status, page, _ = await b.request("GET", f"/ui/sources/{mine['id']}?status={status_shown}")
    assert status == 200 and first["id"] in page
    other_status = next(s for s in ("processed", "error") if s != status_shown)
    if all(r["status"] != other_status for r in log["data"]):
        _, page, _ = await b.request("GET", f"/ui/sources/{mine['id']}?status={other_status}")
        assert first["id"] not in page and "No requests with this status" in page
    status, page, _ = await b.request("GET", f"/ui/sources/{mine['id']}?status=lost")
    assert status == 400 and "status:" in page
    status, page, _ = await b.request("GET", f"/ui/sources/{mine['id']}/requests/{first['id']}")
    assert status == 200 and '"order": "A-1"' in page, page
    # another tenant's source and request, and a request through the wrong source
    status, page, _ = await b.request("GET", f"/ui/sources/{theirs['id']}")
    assert status == 404 and "Not found" in page
    path = f"/ui/sources/{mine['id']}/requests/{their_request}"
    assert (await b.request("GET", path))[0] == 404
    path = f"/ui/sources/{theirs['id']}/requests/{their_request}"
    assert (await b.request("GET", path))[0] == 404
    status, page, _ = await b.request("GET", "/ui/sources/" + "s" * 101)
    assert status == 400 and "source_id" in page


async def test_automations_their_runs_by_status_and_a_runs_steps(hub_api: Api, echo: str) -> None:
    api = hub_api
    key = await _tenant(api, echo)
    other = await _tenant(api, echo)
    await _send(api, key, _lead("lead-1", "t-1"), _lead("lead-2", "t-2"))
    await _send(api, other, _lead("their-1", "t-2"))
    # one of this tenant's runs goes through its wait and its send on a fake clock
    _, runs, _ = await api.call("GET", "/v1/automations/welcome/runs", key)
    waiting, run = sorted(runs["data"], key=lambda r: r["trigger"]["id"] == "lead-1")
    status, _, _ = await api.call("POST", f"/v1/runs/{waiting['id']}/cancel", key)
    assert status == 200
    clock = api.hub.engine.clock = FakeClock(now_us() + 600_000_000)
    while await api.hub.engine.tick():
        pass
    clock.advance(2 * 3600)
    while await api.hub.engine.tick():
        pass
    _, done, _ = await api.call("GET", f"/v1/runs/{run['id']}", key)
    assert done["status"] == "completed" and len(done["steps"]) == 2, done
    sent = done["steps"][1]["delivery_id"]
    _, their_runs, _ = await api.call("GET", "/v1/automations/welcome/runs", other)
    (their_run,) = their_runs["data"]

    b = Browser(api)
    await b.sign_in(key)
    status, page, _ = await b.request("GET", "/ui/automations")
    assert status == 200 and 'href="/ui/automations/welcome"' in page
    assert "<code>lead.created</code>" in page
    status, page, _ = await b.request("GET", "/ui/automations/welcome")
    assert status == 200 and run["id"] in page and their_run["id"] not in page
    assert waiting["id"] in page
    status, page, _ = await b.request("GET", "/ui/automations/welcome?status=completed")
    assert status == 200 and run["id"] in page and waiting["id"] not in page
    status, page, _ = await b.request("GET", "/ui/automations/welcome?status=failed")
    assert status == 200 and run["id"] not in page and "No runs with this status" in page
    status, page, _ = await b.request("GET", "/ui/automations/welcome?status=lost")
    assert status == 400 and "status:" in page
    for name in ("nothing-here", quote("Not A Name", safe="")):
        status, page, _ = await b.request("GET", f"/ui/automations/{name}")
        assert status == 404 and "Not found" in page, name
    status, page, _ = await b.request("GET", f"/ui/runs/{run['id']}")
    assert status == 200 and '<span class="status completed" id="run-status">' in page
    assert 'href="/ui/events/lead-1"' in page and f'href="/ui/deliveries/{sent}"' in page
    assert "<td>wait</td>" in page and "<td>send</td>" in page
    status, page, _ = await b.request("GET", f"/ui/runs/{their_run['id']}")
    assert status == 404 and "Not found" in page
