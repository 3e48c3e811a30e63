"""Inbound sources over HTTP on both stores: every verification preset with signatures made the way
each provider documents them, every shipped mapping end to end, provider retries, business dedup,
the request log and its counters, secret rotation, IP allowlists and reprocessing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
import stripe
from standardwebhooks import Webhook

from switchboard.catalog import load_catalog_dir
from tests.conftest import Api
from tests.unit.test_mappings import (
    ASAAS_OVERDUE,
    ASAAS_RECEIVED,
    SITE_LEAD,
    STRIPE_DISPUTE,
    STRIPE_PI_FAILED,
    STRIPE_PI_SUCCEEDED,
    WPP_ACK,
    WPP_CONNECTION,
    WPP_MESSAGE,
    ZAPI_BUTTON,
    ZAPI_TEXT,
)

CATALOGS = Path(__file__).resolve().parents[2] / "catalogs"
STRIPE_SECRET = "whsec_test_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH"


async def _tenant(api: Api, catalog: str | None = None) -> tuple[str, str]:
    tid, key = await api.tenant(unknown_types="reject")
    if catalog:
        await api.hub.registry.apply(tid, load_catalog_dir(CATALOGS / catalog))
    return tid, key


async def _source(api: Api, key: str, **body: Any) -> dict[str, Any]:
    status, created, _ = await api.call("POST", "/v1/sources", key, body)
    assert status == 201, created
    return created


async def _post(
    api: Api, source: dict[str, Any], body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    status, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    return status, reply


async def _event(api: Api, key: str, event_id: str) -> dict[str, Any]:
    status, event, _ = await api.call("GET", f"/v1/events/{quote(event_id, safe='')}", key)
    assert status == 200, event
    return event


def _stripe_headers(
    body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return {"Stripe-Signature": header}


# --- Stripe, end to end ------------------------------------------------------------------------


async def test_stripe_webhook_becomes_one_billing_event_despite_retries(api: Api) -> None:
    _, key = await _tenant(api, "legal-practice")
    source = await _source(
        api,
        key,
        name="stripe",
        preset="stripe",
        secrets=[STRIPE_SECRET],
        mapping="stripe",
        event_source="stripe",
    )
    assert source["secrets"] == ["whsec_…"]  # the kind of secret, nothing of it
    assert source["url"].endswith(f"/v1/sources/{source['id']}/webhook")
    body = orjson.dumps(STRIPE_PI_SUCCEEDED)
    status, reply = await _post(api, source, body, _stripe_headers(body))
    assert status == 200, reply
    assert reply["events"] == [
        {"status": "accepted", "id": STRIPE_PI_SUCCEEDED["id"], "type": "billing.payment_received"}
    ]
    # Stripe retries the same event (a new signature and timestamp, the same body)
    status, again = await _post(
        api, source, body, _stripe_headers(body, timestamp=int(time.time()) - 5)
    )
    assert status == 200
    assert again["events"][0]["status"] == "duplicate"
    event = await _event(api, key, STRIPE_PI_SUCCEEDED["id"])
    assert event["type"] == "billing.payment_received"
    assert event["source"] == "stripe"
    assert event["status"] == "accepted"
    assert event["data"]["applicationFeeAmount"] == 500
    assert event["actor"] == {"id": "webhook-stripe", "type": "webhook"}
    assert event["context"]["inbound_request_id"] == reply["request_id"]
    _, listing, _ = await api.call("GET", "/v1/events?type=billing.payment_received", key)
    assert len(listing["data"]) == 1
    _, fetched, _ = await api.call("GET", f"/v1/sources/{source['id']}", key)
    assert fetched["counters"] == {
        "received": 2,
        "verified": 2,
        "failed_verification": 0,
        "events_produced": 1,
    }


@pytest.mark.parametrize("payload", [STRIPE_PI_FAILED, STRIPE_DISPUTE])
async def test_stripe_failure_and_dispute_events_are_catalog_valid(
    api: Api, payload: dict[str, Any]
) -> None:
    _, key = await _tenant(api, "legal-practice")
    source = await _source(
        api, key, name="stripe", preset="stripe", secrets=[STRIPE_SECRET], mapping="stripe"
    )
    body = orjson.dumps(payload)
    status, reply = await _post(api, source, body, _stripe_headers(body))
    assert status == 200, reply
    assert reply["events"][0]["status"] == "accepted"
    assert (await _event(api, key, payload["id"]))["status"] == "accepted"


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "tampered", "missing"])
async def test_stripe_signature_failures_answer_401_and_are_logged(api: Api, case: str) -> None:
    _, key = await _tenant(api, "legal-practice")
    source = await _source(
        api, key, name="stripe", preset="stripe", secrets=[STRIPE_SECRET], mapping="stripe"
    )
    body = orjson.dumps(STRIPE_PI_SUCCEEDED)
    headers = {
        "wrong_secret": _stripe_headers(body, "whsec_someone_else"),
        "stale": _stripe_headers(body, timestamp=int(time.time()) - 3600),
        "tampered": _stripe_headers(body),
        "missing": {},
    }[case]
    if case == "tampered":
        body = body.replace(b"5000", b"1")
    status, reply = await _post(api, source, body, headers)
    assert status == 401
    assert reply["error"]["code"] == "signature_invalid"
    reason = {
        "wrong_secret": "bad_signature",
        "stale": "stale_timestamp",
        "tampered": "bad_signature",
        "missing": "missing_header",
    }[case]
    assert reply["error"]["message"].startswith(reason)
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests?verified=false", key)
    assert [r["status"] for r in log["data"]] == ["failed_verification"]
    assert log["data"][0]["verification_error"].startswith(reason)
    assert log["counters"]["failed_verification"] == 1
    _, listing, _ = await api.call("GET", "/v1/events", key)
    assert listing["data"] == []


# --- the other presets --------------------------------------------------------------------------


async def test_standard_webhooks_preset_with_the_reference_library(api: Api) -> None:
    _, key = await _tenant(api)
    source = await _source(api, key, name="svix", preset="svix")  # secret generated, shown once
    secret = source["secret"]
    assert secret.startswith("whsec_") and source["secrets"] == ["whsec_…"]
    body = orjson.dumps({"type": "invoice.paid", "id": "inv_1"})
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", now, body.decode())
    good = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    status, reply = await _post(api, source, body, good)
    assert (status, reply["status"]) == (200, "ignored")  # no mapping: logged only
    bad_cases = {
        "wrong secret": {
            **good,
            "webhook-signature": Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).sign(
                "msg_1", now, body.decode()
            ),
        },
        "stale": {**good, "webhook-timestamp": str(int(now.timestamp()) - 3600)},
        "missing": {k: v for k, v in good.items() if k != "webhook-signature"},
    }
    for name, headers in bad_cases.items():
        status, reply = await _post(api, source, body, headers)
        assert status == 401, name
    status, _ = await _post(api, source, body + b" ", good)
    assert status == 401  # tampered


async def test_github_preset(api: Api) -> None:
    _, key = await _tenant(api)
    source = await _source(api, key, name="gh", preset="github", secrets=["It's a Secret"])
    body = b'{"action":"opened","number":1}'
    digest = hmac.new(b"It's a Secret", body, hashlib.sha256).hexdigest()
    status, _ = await _post(api, source, body, {"X-Hub-Signature-256": f"sha256={digest}"})
    assert status == 200
    status, _ = await _post(api, source, body, {"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert status == 401
    status, _ = await _post(api, source, body + b"x", {"X-Hub-Signature-256": f"sha256={digest}"})
    assert status == 401
    status, _ = await _post(api, source, body, {})
    assert status == 401


async def test_generic_hmac_preset_with_timestamp_and_base64(api: Api) -> None:
    _, key = await _tenant(api)
    config = {
        "header": "X-Signature",
        "algorithm": "sha512",
        "encoding": "base64",
        "prefix": "v1=",
        "signed": "timestamp.body",
        "timestamp_header": "X-Timestamp",
    }
    source = await _source(
        api, key, name="partner", preset="hmac", preset_config=config, secrets=["partner-secret"]
    )
    body = b'{"ok":true}'

    def sign(ts: int, secret: bytes = b"partner-secret") -> dict[str, str]:
        mac = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha512).digest()
        return {"X-Signature": "v1=" + base64.b64encode(mac).decode(), "X-Timestamp": str(ts)}

    now = int(time.time())
    assert (await _post(api, source, body, sign(now)))[0] == 200
    assert (await _post(api, source, body, sign(now, b"other")))[0] == 401
    assert (await _post(api, source, body, sign(now - 3600)))[0] == 401


async def test_hmac_preset_config_is_validated(api: Api) -> None:
    _, key = await _tenant(api)
    status, reply, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {
            "name": "x",
            "preset": "hmac",
            "preset_config": {"header": "X-Sig", "algorithm": "md5"},
            "secrets": ["s"],
        },
    )
    assert status == 400
    assert reply["error"]["details"][0]["path"] == "/preset_config/algorithm"
    status, reply, _ = await api.call("POST", "/v1/sources", key, {"name": "x"})
    assert status == 400 and "'none' only for trusted" in reply["error"]["message"]


async def test_preset_none_must_be_explicit_and_accepts_anything(api: Api) -> None:
    _, key = await _tenant(api)
    source = await _source(api, key, name="internal", preset="none")
    assert source["secrets"] == []
    assert (await _post(api, source, b"{}", {}))[0] == 200


# --- token presets with the shipped mappings ----------------------------------------------------


TOKEN_CASES = [
    (
        "asaas",
        "asaas",
        {"asaas-access-token": "tok-asaas-123456"},
        "care-integrations",
        [ASAAS_RECEIVED, ASAAS_OVERDUE],
    ),
    (
        "zapi",
        "zapi",
        {"Client-Token": "tok-zapi-123456"},
        "care-integrations",
        [ZAPI_TEXT, ZAPI_BUTTON],
    ),
    (
        "wpp_gateway",
        "wpp-gateway",
        {"X-Gateway-Secret": "tok-wpp-123456"},
        "comms-hub",
        [WPP_MESSAGE, WPP_ACK, WPP_CONNECTION],
    ),
]


@pytest.mark.parametrize(
    ("preset", "mapping", "headers", "catalog", "payloads"),
    TOKEN_CASES,
    ids=[c[0] for c in TOKEN_CASES],
)
async def test_token_provider_mappings_end_to_end(
    api: Api,
    preset: str,
    mapping: str,
    headers: dict[str, str],
    catalog: str,
    payloads: list[dict[str, Any]],
) -> None:
    _, key = await _tenant(api, catalog)
    token = next(iter(headers.values()))
    source = await _source(api, key, name=mapping, preset=preset, secrets=[token], mapping=mapping)
    for payload in payloads:
        body = orjson.dumps(payload)
        status, reply = await _post(api, source, body, headers)
        assert status == 200, reply
        assert [e["status"] for e in reply["events"]] == ["accepted"], reply
        event = await _event(api, key, reply["events"][0]["id"])
        assert event["status"] == "accepted", event  # not quarantined: valid against the catalog
        status, again = await _post(api, source, body, headers)  # the provider retries
        assert again["events"][0]["status"] == "duplicate"
    status, reply = await _post(
        api, source, orjson.dumps(payloads[0]), {next(iter(headers)): "wrong-token-000000"}
    )
    assert status == 401
    status, reply = await _post(api, source, orjson.dumps(payloads[0]), {})
    assert status == 401 and reply["error"]["message"].startswith("missing_header")
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", key)
    masked = log["data"][-1]["headers"]
    assert token not in str(masked)


async def test_asaas_confirmed_then_received_is_one_payment(api: Api) -> None:
    _, key = await _tenant(api, "care-integrations")
    source = await _source(
        api, key, name="asaas", preset="asaas", secrets=["tok-asaas-123456"], mapping="asaas"
    )
    headers = {"asaas-access-token": "tok-asaas-123456"}
    confirmed = {**ASAAS_RECEIVED, "id": "evt_confirmed&1", "event": "PAYMENT_CONFIRMED"}
    _, first = await _post(api, source, orjson.dumps(confirmed), headers)
    _, second = await _post(api, source, orjson.dumps(ASAAS_RECEIVED), headers)
    assert first["events"][0]["status"] == "accepted"
    assert second["events"][0]["status"] == "deduplicated"
    assert second["events"][0]["duplicate_of"] == "evt_confirmed&1"
    stored = await _event(api, key, ASAAS_RECEIVED["id"])
    assert stored["context"]["duplicate_of"] == "evt_confirmed&1"


# --- site lead form: forms, UTM, business dedup ------------------------------------------------


async def test_lead_form_dedups_on_phone_within_the_window(api: Api) -> None:
    _, key = await _tenant(api, "care-integrations")
    source = await _source(
        api,
        key,
        name="site",
        preset="token",
        preset_config={"headers": ["X-Form-Token"]},
        secrets=["form-token-123456"],
        mapping="site-lead-form",
    )
    headers = {"X-Form-Token": "form-token-123456"}
    form = urlencode(SITE_LEAD).encode()
    status, first = await _post(
        api, source, form, {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, first
    assert first["events"][0]["status"] == "accepted"
    original = first["events"][0]["id"]
    event = await _event(api, key, original)
    assert event["data"]["utm_campaign"] == "cuidador-bh"
    assert event["subject"] == "5531998765432"
    # the same person again, from another page, phone written differently and no email
    again = {"name": "Joana", "phone": "+55 31 99876-5432", "message": "Oi de novo"}
    status, second = await _post(api, source, orjson.dumps(again), headers)
    assert second["events"][0]["status"] == "deduplicated"
    assert second["events"][0]["duplicate_of"] == original
    dup = await _event(api, key, second["events"][0]["id"])
    assert dup["context"]["duplicate_of"] == original
    # another person is a new lead; the identical form posted twice is an id duplicate
    other = {"name": "Ana", "phone": "(11) 91234-5678", "email": "ana@example.com"}
    _, third = await _post(api, source, orjson.dumps(other), headers)
    _, fourth = await _post(api, source, orjson.dumps(other), headers)
    assert third["events"][0]["status"] == "accepted"
    assert fourth["events"][0]["status"] == "duplicate"


async def test_source_window_zero_turns_business_dedup_off(api: Api) -> None:
    _, key = await _tenant(api, "care-integrations")
    source = await _source(
        api, key, name="site", preset="none", mapping="site-lead-form", dedup_window=0
    )
    for name in ("Joana", "Joana P."):
        _, reply = await _post(
            api, source, orjson.dumps({"name": name, "phone": "31998765432"}), {}
        )
        assert reply["events"][0]["status"] == "accepted"


async def test_catalog_rejection_is_422_logged_and_releases_dedup_claims(api: Api) -> None:
    _, key = await _tenant(api, "care-integrations")
    source = await _source(api, key, name="site", preset="none", mapping="site-lead-form")
    status, reply = await _post(api, source, orjson.dumps({"phone": "31998765432"}), {})
    assert status == 422  # no name: lead.created requires it
    assert reply["status"] == "rejected"
    assert reply["events"][0]["errors"][0]["path"] == "/data/name"
    _, ok = await _post(api, source, orjson.dumps({"name": "J", "phone": "31998765432"}), {})
    assert ok["events"][0]["status"] == "accepted"  # the rejected one holds no claim
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests?status=rejected", key)
    assert len(log["data"]) == 1


# --- configuration ------------------------------------------------------------------------------


async def test_secret_rotation_keeps_the_previous_secret_working(api: Api) -> None:
    _, key = await _tenant(api)
    source = await _source(api, key, name="wpp", preset="wpp_gateway", secrets=["old-secret-123"])
    status, rotated, _ = await api.call(
        "POST", f"/v1/sources/{source['id']}/secrets", key, {"secret": "new-secret-456"}
    )
    assert status == 200 and len(rotated["secrets"]) == 2
    for token in ("old-secret-123", "new-secret-456"):
        assert (await _post(api, source, b"{}", {"X-Gateway-Secret": token}))[0] == 200
    _, rotated, _ = await api.call("POST", f"/v1/sources/{source['id']}/secrets", key)
    assert rotated["secret"].startswith("sbs_")
    assert (await _post(api, source, b"{}", {"X-Gateway-Secret": "old-secret-123"}))[0] == 401
    assert (await _post(api, source, b"{}", {"X-Gateway-Secret": "new-secret-456"}))[0] == 200


async def test_ip_allowlist_answers_403(api: Api) -> None:
    _, key = await _tenant(api)
    source = await _source(api, key, name="ip", preset="none", ip_allowlist=["10.0.0.0/8"])
    status, reply = await _post(api, source, b"{}", {})
    assert status == 403 and reply["error"]["code"] == "forbidden"
    status, _, _ = await api.call(
        "PATCH", f"/v1/sources/{source['id']}", key, {"ip_allowlist": ["10.0.0.0/8", "127.0.0.0/8"]}
    )
    assert status == 200
    assert (await _post(api, source, b"{}", {}))[0] == 200
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", key)
    assert [r["status"] for r in log["data"]] == ["ignored", "forbidden"]


async def test_sources_are_per_tenant_and_scoped(api: Api) -> None:
    _, key = await _tenant(api)
    _, other = await _tenant(api)
    _, reader = await api.tenant(scopes=("read",))
    source = await _source(api, key, name="s", preset="none")
    assert (await api.call("GET", f"/v1/sources/{source['id']}", other))[0] == 404
    assert (await api.call("POST", "/v1/sources", reader, {"name": "x", "preset": "none"}))[
        0
    ] == 403
    assert (await api.call("POST", "/v1/sources/src_nope/webhook", data=b"{}"))[0] == 404
    status, _, _ = await api.call("POST", "/v1/sources", key, {"name": "s", "preset": "none"})
    assert status == 409
    status, _, _ = await api.call(
        "POST", "/v1/sources", key, {"name": "m", "preset": "none", "mapping": "nope"}
    )
    assert status == 400


async def test_request_log_is_filterable_and_paged(api: Api) -> None:
    _, key = await _tenant(api)
    source = await _source(api, key, name="wpp", preset="wpp_gateway", secrets=["tok-123456789"])
    for token in ("tok-123456789", "bad", "tok-123456789"):
        await _post(api, source, b'{"a":1}', {"X-Gateway-Secret": token})
    base = f"/v1/sources/{source['id']}/requests"
    _, page, _ = await api.call("GET", base + "?limit=2", key)
    assert len(page["data"]) == 2 and page["next_cursor"]
    _, rest, _ = await api.call("GET", base + f"?limit=2&cursor={page['next_cursor']}", key)
    assert len(rest["data"]) == 1
    _, ok, _ = await api.call("GET", base + "?verified=true&status=ignored", key)
    assert len(ok["data"]) == 2
    assert ok["data"][0]["body"] == {"a": 1}
    assert ok["data"][0]["headers"]["x-gateway-secret"] == "…"  # 13 characters: none shown
    _, one, _ = await api.call("GET", f"{base}/{ok['data'][0]['id']}", key)
    assert one["id"] == ok["data"][0]["id"]


# --- reprocessing -------------------------------------------------------------------------------


async def test_reprocess_through_a_new_mapping_version(api: Api) -> None:
    _, key = await _tenant(api, "care-integrations")
    v1 = {"rules": [{"when": {"kind": ["lead"]}, "type": "lead.created", "data": {}}]}
    status, _, _ = await api.call("PUT", "/v1/mappings/leads/1", key, v1)
    assert status == 201
    source = await _source(
        api, key, name="site", preset="none", mapping="leads", mapping_version="1"
    )
    leads = [
        {"submission_id": f"s{i}", "nome": f"Pessoa {i}", "telefone": f"3199876000{i}"}
        for i in range(3)
    ]
    for lead in leads:
        _, reply = await _post(api, source, orjson.dumps(lead), {})
        assert reply["status"] == "ignored"  # v1 matches nothing these forms send
    v2 = {
        "rules": [
            {
                "type": "lead.created",
                "id": "submission_id",
                "data": {"name": "nome", "phone": "telefone", "source": "'site'"},
            }
        ]
    }
    assert (await api.call("PUT", "/v1/mappings/leads/2", key, v2))[0] == 201
    assert (await api.call("PUT", "/v1/mappings/leads/2", key, v2))[0] == 409  # immutable
    url = f"/v1/sources/{source['id']}/reprocess"
    status, dry, _ = await api.call("POST", url, key, {"mapping_version": "2", "dry_run": True})
    assert status == 200, dry
    assert dry["counts"]["requests"] == 3 and dry["counts"]["accepted"] == 3
    assert dry["samples"][0]["event"]["type"] == "lead.created"
    _, listing, _ = await api.call("GET", "/v1/events", key)
    assert listing["data"] == []  # a dry run stores nothing
    _, run, _ = await api.call("POST", url, key, {"mapping_version": "2", "dry_run": False})
    assert run["counts"]["accepted"] == 3
    _, twice, _ = await api.call("POST", url, key, {"mapping_version": "2", "dry_run": False})
    assert (twice["counts"]["accepted"], twice["counts"]["duplicate"]) == (0, 3)
    _, listing, _ = await api.call("GET", "/v1/events", key)
    assert sorted(e["id"] for e in listing["data"]) == ["s0", "s1", "s2"]
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", key)
    assert {r["status"] for r in log["data"]} == {"processed"}
    assert {r["mapping"] for r in log["data"]} == {"leads@2"}
    _, mappings, _ = await api.call("GET", "/v1/mappings", key)
    names = {(m["name"], m["version"], m["origin"]) for m in mappings["data"]}
    assert {("stripe", "1", "shipped"), ("leads", "2", "tenant")} <= names
