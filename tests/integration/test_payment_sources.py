"""Pagar.me and the clinic's Stripe mapping over HTTP on both stores: the Pagar.me preset checks
X-Hub-Signature the way Pagar.me documents it, Stripe payloads are signed with the `stripe`
library, and the providers' sample payloads (tests/fixtures/) become clinic-loyalty events that
the catalog accepts; a paid order and its paid charge are one payment."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
import stripe

from switchboard.catalog import load_catalog_dir
from tests.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
PAGARME_KEY = "sk_test_4f9b0c2e7d1a48a6b3c5e8f0a2d4c6e8"
STRIPE_SECRET = "whsec_test_cl1n1cS1gn1ngS3cr3tAbCdEf"


def _fixture(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / f"{name}.json").read_bytes()


def _pagarme_headers(body: bytes, key: str = PAGARME_KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha1).hexdigest()
    return {"X-Hub-Signature": f"sha1={digest}"}


def _stripe_headers(body: bytes, secret: str = STRIPE_SECRET) -> dict[str, str]:
    return {
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
    }


async def _clinic(api: Api) -> str:
    tid, key = await api.tenant(unknown_types="reject")
    await api.hub.registry.apply(tid, load_catalog_dir(ROOT / "catalogs" / "clinic-loyalty"))
    return key


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
    status, event, _ = await api.call("GET", f"/v1/events/{event_id}", key)
    assert status == 200, event
    return event


PAGARME_CASES = [
    ("order.paid", "payment_processed", {"method": "pix", "status": "success", "amount": 199.9}),
    ("charge.payment_failed", "payment_processed", {"method": "card", "status": "failed"}),
    ("charge.refunded", "purchase_refund", {"value": 199.9, "reason": "procedimento remarcado"}),
    ("charge.chargedback", "chargeback_reported", {"amount": 450.0, "processor": "pagarme"}),
    ("invoice.paid", "subscription_billed", {"plan_id": "plan_gold_mensal", "amount": 199.9}),
    (
        "subscription.created",
        "membership_started",
        {"plan_id": "plan_gold_mensal", "tier": "premium"},
    ),
]


@pytest.mark.parametrize(
    ("name", "etype", "fields"), PAGARME_CASES, ids=[c[0] for c in PAGARME_CASES]
)
async def test_pagarme_samples_become_clinic_events(
    api: Api, name: str, etype: str, fields: dict[str, Any]
) -> None:
    key = await _clinic(api)
    source = await _source(
        api, key, name="pagarme", preset="pagarme", secrets=[PAGARME_KEY], mapping="pagarme"
    )
    body = _fixture("pagarme", name)
    status, reply = await _post(api, source, body, _pagarme_headers(body))
    assert status == 200, reply
    assert [(e["status"], e["type"]) for e in reply["events"]] == [("accepted", etype)], reply
    event = await _event(api, key, reply["events"][0]["id"])
    assert event["status"] == "accepted", event  # valid against the clinic catalog
    assert event["source"] == "pagarme"
    assert event["actor"] == {"id": "pagarme", "type": "system"}
    assert {k: event["data"][k] for k in fields} == fields
    status, again = await _post(api, source, body, _pagarme_headers(body))  # Pagar.me retries
    assert status == 200 and again["events"][0]["status"] == "duplicate"


async def test_pagarme_paid_order_and_its_paid_charge_are_one_payment(api: Api) -> None:
    key = await _clinic(api)
    source = await _source(
        api, key, name="pagarme", preset="pagarme", secrets=[PAGARME_KEY], mapping="pagarme"
    )
    order, charge = _fixture("pagarme", "order.paid"), _fixture("pagarme", "charge.paid")
    _, first = await _post(api, source, charge, _pagarme_headers(charge))
    _, second = await _post(api, source, order, _pagarme_headers(order))
    assert first["events"][0]["status"] == "accepted"
    assert [(e["status"], e["id"]) for e in second["events"]] == [
        ("duplicate", first["events"][0]["id"])
    ]
    _, listing, _ = await api.call("GET", "/v1/events?type=payment_processed", key)
    assert [e["subject"] for e in listing["data"]] == ["pac_4471"]


@pytest.mark.security
@pytest.mark.parametrize("case", ["missing", "wrong_key", "tampered", "no_prefix", "sha256"])
async def test_pagarme_signature_failures_answer_401(api: Api, case: str) -> None:
    key = await _clinic(api)
    source = await _source(
        api, key, name="pagarme", preset="pagarme", secrets=[PAGARME_KEY], mapping="pagarme"
    )
    body = _fixture("pagarme", "charge.paid")
    good = _pagarme_headers(body)["X-Hub-Signature"]
    headers = {
        "missing": {},
        "wrong_key": _pagarme_headers(body, "sk_test_someone_else_000000000000"),
        "tampered": {"X-Hub-Signature": good},
        "no_prefix": {"X-Hub-Signature": good.removeprefix("sha1=")},
        "sha256": {
            "X-Hub-Signature": "sha1="
            + hmac.new(PAGARME_KEY.encode(), body, hashlib.sha256).hexdigest()
        },
    }[case]
    sent = body.replace(b"19990", b"1", 1) if case == "tampered" else body
    status, reply = await _post(api, source, sent, headers)
    assert status == 401, reply
    _, listing, _ = await api.call("GET", "/v1/events?type=payment_processed", key)
    assert listing["data"] == []
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", key)
    assert PAGARME_KEY not in str(log) and good not in str(log["data"][-1]["headers"])


STRIPE_CASES = [
    ("payment_intent.succeeded", "payment_processed", {"method": "card", "amount": 199.9}),
    ("invoice.paid", "subscription_billed", {"plan_id": "price_1QkGoldMensal", "status": "paid"}),
    ("charge.dispute.created", "chargeback_reported", {"amount": 450.0, "processor": "stripe"}),
    (
        "payment_intent.payment_failed",
        "payment_processed",
        {"method": "card", "status": "failed", "error": "Your card has insufficient funds."},
    ),
    ("invoice.payment_failed", "subscription_billed", {"status": "open", "amount": 199.9}),
]


@pytest.mark.parametrize(
    ("name", "etype", "fields"), STRIPE_CASES, ids=[c[0] for c in STRIPE_CASES]
)
async def test_stripe_clinic_samples_become_clinic_events(
    api: Api, name: str, etype: str, fields: dict[str, Any]
) -> None:
    key = await _clinic(api)
    source = await _source(
        api,
        key,
        name="stripe",
        preset="stripe",
        secrets=[STRIPE_SECRET],
        mapping="stripe-clinic",
        event_source="stripe",
    )
    body = _fixture("stripe", name)
    status, reply = await _post(api, source, body, _stripe_headers(body))
    assert status == 200, reply
    assert [(e["status"], e["type"]) for e in reply["events"]] == [("accepted", etype)], reply
    event = await _event(api, key, reply["events"][0]["id"])
    assert event["status"] == "accepted", event
    assert {k: event["data"][k] for k in fields} == fields
    status, reply = await _post(api, source, body, _stripe_headers(body, "whsec_not_the_secret"))
    assert status == 401


async def test_stripe_intent_and_its_charge_are_one_payment(api: Api) -> None:
    key = await _clinic(api)
    source = await _source(
        api, key, name="stripe", preset="stripe", secrets=[STRIPE_SECRET], mapping="stripe-clinic"
    )
    intent, charge = (
        _fixture("stripe", "payment_intent.succeeded"),
        _fixture("stripe", "charge.succeeded"),
    )
    _, first = await _post(api, source, intent, _stripe_headers(intent))
    _, second = await _post(api, source, charge, _stripe_headers(charge))
    assert first["events"][0]["status"] == "accepted"
    assert second["events"][0]["status"] == "duplicate"
    assert second["events"][0]["id"] == first["events"][0]["id"]
