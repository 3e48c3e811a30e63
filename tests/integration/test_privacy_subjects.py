"""A subject's rights: the export holds everything about them (whole for a `pii` key, masked for
others), and after an erasure no read, export or replay carries their personal data while the
events stay countable as skeletons."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.catalog import load_catalog_dir
from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_privacy_masking import (
    EMAIL,
    LEAD,
    NAME,
    PHONE,
    _populate,
    raw_values,
)

pytestmark = pytest.mark.security

SUBJECT = "/v1/subjects/patient-42"
CATALOGS = Path(__file__).resolve().parents[2] / "catalogs"


async def test_export_then_erasure_leaves_no_pii_anywhere(
    hub_api: Api, echo: str, receivers: Any
) -> None:
    api = hub_api
    tenant, manage = await api.tenant(scopes=("ingest", "read", "manage"))
    _, read = await api.tenant(tenant, scopes=("read",))
    _, pii = await api.tenant(tenant, scopes=("read", "pii"))
    _, eraser = await api.tenant(tenant, scopes=("read", "manage", "pii"))
    nurture = {"on": "lead.created", "steps": [{"wait": "2h"}, {"send": {"destination": "hook"}}]}
    ids = await _populate(api, manage, echo)
    status, body, _ = await api.call("PUT", "/v1/automations/nurture", manage, nurture)
    assert status in (200, 201), body
    # one more event, not yet delivered: its deliveries are pending when the erasure comes
    later = {
        "type": "lead.created",
        "subject": "patient-42",
        "data": LEAD,
        "context": {"ip": "203.0.113.7"},
    }
    status, body, _ = await api.call("POST", "/v1/events", manage, [later])
    assert status == 202, body
    ana = {"name": "Ana Lima", "email": "ana@lima.org", "phone": "+55 11 91234-0000"}
    other = {"type": "lead.created", "subject": "patient-7", "data": ana}
    assert (await api.call("POST", "/v1/events", manage, [other]))[0] == 202

    status, export, _ = await api.call("GET", f"{SUBJECT}/export", pii)
    assert status == 200, export
    leads = [e for e in export["events"] if e["type"] == "lead.created"]
    assert len(leads) == 2 and export["recipient"]["email"] == EMAIL
    # the hub's own events about the subject's deliveries are the subject's too
    assert {e["type"] for e in export["events"]} == {
        "lead.created",
        "switchboard.delivery_succeeded",
    }
    assert len(export["deliveries"]) == 4 and export["erasures"] == []
    assert {e["subject"] for e in export["events"]} == {"patient-42"}  # nobody else's
    status, masked, _ = await api.call("GET", f"{SUBJECT}/export", read)
    assert status == 200 and raw_values(masked) == [], masked

    # erasing needs manage and pii together
    for key in (manage, pii):
        status, body, _ = await api.call("DELETE", SUBJECT, key)
        assert status == 403, body
    status, receipt, _ = await api.call("DELETE", SUBJECT, eraser)
    assert status == 200, receipt
    assert receipt["subject"] == "patient-42" and receipt["events_scrubbed"] == 2  # the leads
    assert receipt["recipient_deleted"] is True
    assert receipt["deliveries_cancelled"] == 2  # the later event's two pending deliveries
    assert receipt["inbox_items_deleted"] == 1 and receipt["attempts_scrubbed"] >= 1
    assert receipt["runs_cancelled"] == 1  # the later lead's run; patient-7's runs on
    _, runs, _ = await api.call("GET", "/v1/automations/nurture/runs", pii)
    assert sorted(r["status"] for r in runs["data"]) == ["cancelled", "running"], runs
    assert raw_values(receipt) == []

    # every read with a `pii` key: nothing of the subject left, the events still counted
    after = await _walk_after(api, pii, ids)
    for path, answer in after.items():
        assert raw_values(answer) == [], (path, answer)
    _, event, _ = await api.call("GET", f"/v1/events/{ids['event_id']}", pii)
    assert event["data"] == {**{k: None for k in LEAD if k != "plan"}, "plan": "gold"}
    status, export, _ = await api.call("GET", f"{SUBJECT}/export", pii)
    assert status == 200 and raw_values(export) == [], export
    assert len(export["events"]) == 4 and export["recipient"] is None
    assert [e["id"] for e in export["erasures"]] == [receipt["id"]]
    assert all("ip" not in e["context"] for e in export["events"])
    # the other subject is untouched
    _, others, _ = await api.call("GET", "/v1/subjects/patient-7/timeline", pii)
    assert others["data"][0]["data"]["name"] == "Ana Lima"

    # a replay of the subject's events carries none of their data
    late = await receivers()
    dest = {"name": "late", "kind": "webhook", "config": {"url": late.url}}
    assert (await api.call("POST", "/v1/destinations", manage, dest))[0] == 201
    query = {"types": ["lead.*"], "destinations": ["late"]}
    status, job, _ = await api.call("POST", "/v1/replays", manage, query)
    assert status == 202, job
    deadline = time.monotonic() + 30
    while job["status"] != "done" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        _, job, _ = await api.call("GET", f"/v1/replays/{job['id']}", manage)
    assert job["status"] == "done", job
    await worker_for(api).drain()
    assert len(late.received) == 3
    bodies = [r["body"].decode() for r in late.received]
    assert sum("Ana Lima" in b for b in bodies) == 1  # the other subject's event, whole
    for b in bodies:
        assert NAME not in b and EMAIL not in b and PHONE not in b


async def _walk_after(api: Api, key: str, ids: dict[str, str]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for path in (
        "/v1/events?subject=patient-42",
        f"/v1/events/{ids['event_id']}",
        "/v1/subjects/patient-42/timeline",
        "/v1/deliveries",
        "/v1/inbox/seller-1",
        "/v1/inbox/patient-42",
        "/v1/recipients/patient-42/consents",
    ):
        status, body, _ = await api.call("GET", path, key)
        assert status == 200, (path, body)
        answers[path] = body
    for d in answers["/v1/deliveries"]["data"]:
        _, attempts, _ = await api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key)
        answers[f"attempts {d['id']}"] = attempts
    status, _, _ = await api.call("GET", "/v1/recipients/patient-42", key)
    assert status == 404
    return answers


async def test_a_provider_request_is_masked_by_its_events_and_cleared_with_its_subject(
    api: Api,
) -> None:
    """A lead form's raw body holds a name no shape detector finds: a key without `pii` sees it
    masked because the request's events declare it, and erasing the lead clears the body."""
    tenant, manage = await api.tenant(scopes=("ingest", "read", "manage"))
    await api.hub.registry.apply(tenant, load_catalog_dir(CATALOGS / "care-integrations"))
    _, read = await api.tenant(tenant, scopes=("read",))
    _, eraser = await api.tenant(tenant, scopes=("read", "manage", "pii"))
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        manage,
        {"name": "site", "preset": "none", "mapping": "site-lead-form"},
    )
    assert status == 201, source
    form = {"name": NAME, "phone": PHONE, "email": EMAIL, "message": "Quero um cuidador"}
    status, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=orjson.dumps(form),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200 and reply["events"][0]["status"] == "accepted", reply
    requests = f"/v1/sources/{source['id']}/requests"
    _, log, _ = await api.call("GET", requests, read)
    [request] = log["data"]
    assert request["body"]["name"] == "J. P." and request["body"]["email"] == "j***@e***.com.br"
    assert "Quero um cuidador" not in orjson.dumps(log).decode()  # `message` is free text
    _, whole, _ = await api.call("GET", requests, eraser)
    assert whole["data"][0]["body"]["name"] == NAME
    subject = "5531998765432"  # the mapping's subject: the normalised phone
    status, receipt, _ = await api.call("DELETE", f"/v1/subjects/{subject}", eraser)
    assert status == 200 and receipt["requests_scrubbed"] == 1, receipt
    _, log, _ = await api.call("GET", requests, eraser)
    text = orjson.dumps(log).decode()
    assert NAME not in text and EMAIL not in text and "Quero" not in text


async def test_a_subject_holding_a_slash_has_its_timeline_export_and_erasure(api: Api) -> None:
    """Subjects come from other systems ("org-3/patient-42"): every path that names one takes a
    "/" (sent as %2F, which the server decodes before routing), as recipients' paths do."""
    _, key = await api.tenant(scopes=("ingest", "read", "manage", "pii"))
    subject = "org-3/patient-42"
    event = {"type": "lead.created", "subject": subject, "data": LEAD}
    assert (await api.call("POST", "/v1/events", key, [event]))[0] == 202
    other = {"type": "lead.created", "subject": "org-3", "data": {"name": "Ana"}}
    assert (await api.call("POST", "/v1/events", key, [other]))[0] == 202
    path = "/v1/subjects/org-3%2Fpatient-42"
    status, page, _ = await api.call("GET", f"{path}/timeline", key)
    assert status == 200, page
    assert [e["subject"] for e in page["data"]] == [subject]
    status, export, _ = await api.call("GET", f"{path}/export", key)
    assert status == 200, export
    assert [e["subject"] for e in export["events"]] == [subject]
    status, receipt, _ = await api.call("DELETE", path, key)
    assert (status, receipt["subject"], receipt["events_scrubbed"]) == (200, subject, 1), receipt
    status, page, _ = await api.call("GET", "/v1/subjects/org-3/timeline", key)
    assert [e["data"] for e in page["data"]] == [{"name": "Ana"}]  # the other subject is intact
    for path in ("/v1/subjects/a%0Ab/timeline", "/v1/subjects/a%0Ab/export", "/v1/subjects/a%0A"):
        status, body, _ = await api.call("GET" if "%0Ab/" in path else "DELETE", path, key)
        assert status == 400, body  # a line break reaches the model, which names it
        assert [d["path"] for d in body["error"]["details"]] == ["subject"], body
