"""Mappings (pure): the YAML language, time and phone normalization, business-dedup keys, and every
shipped mapping against a realistic provider payload, checked against the example catalogs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.catalog import Validator, load_catalog_dir
from switchboard.envelope import build_event
from switchboard.sources.dedup import keys_for, normalize_key
from switchboard.sources.mappings import (
    MappingError,
    MappingLibrary,
    apply_mapping,
    load_mapping_dir,
    normalize_phone,
    normalize_time,
    parse_duration,
    parse_mapping,
    shipped_dir,
)

ROOT = Path(__file__).resolve().parents[2]


def _fixture(folder: str, name: str) -> Any:
    """A provider's documented sample payload kept under tests/fixtures/."""
    return orjson.loads((ROOT / "tests" / "fixtures" / folder / f"{name}.json").read_bytes())


SHIPPED = load_mapping_dir(shipped_dir())

# --- realistic provider payloads (shapes as the providers document them) ---------------------

STRIPE_PI_SUCCEEDED: dict[str, Any] = {
    "id": "evt_3Q0aBcLkdIwHu7ix0ZyXw1aB",
    "object": "event",
    "account": "acct_1PqRsT2eZvKYlo2C",
    "api_version": "2024-06-20",
    "created": 1742300000,
    "livemode": False,
    "pending_webhooks": 1,
    "request": {"id": "req_8aB3", "idempotency_key": "c0ffee"},
    "type": "payment_intent.succeeded",
    "data": {
        "object": {
            "id": "pi_3Q0aBcLkdIwHu7ix0",
            "object": "payment_intent",
            "amount": 5000,
            "amount_received": 5000,
            "application_fee_amount": 500,
            "currency": "usd",
            "customer": "cus_QpL1",
            "latest_charge": "ch_3Q0aBc",
            "metadata": {"organizationId": "org_42"},
            "receipt_email": "patient@example.com",
            "status": "succeeded",
        }
    },
}
STRIPE_PI_FAILED: dict[str, Any] = {
    **STRIPE_PI_SUCCEEDED,
    "id": "evt_3Q0aBcFAILED",
    "type": "payment_intent.payment_failed",
    "data": {
        "object": {
            "id": "pi_3Q0aBcLkdIwHu7ix0",
            "object": "payment_intent",
            "amount": 5000,
            "currency": "usd",
            "metadata": {},
            "receipt_email": None,
            "status": "requires_payment_method",
            "last_payment_error": {
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "type": "card_error",
            },
        }
    },
}
STRIPE_DISPUTE: dict[str, Any] = {
    **STRIPE_PI_SUCCEEDED,
    "id": "evt_1DisputeCreated",
    "type": "charge.dispute.created",
    "data": {
        "object": {
            "id": "dp_1Q0aBc",
            "object": "dispute",
            "amount": 5000,
            "charge": "ch_3Q0aBc",
            "currency": "usd",
            "evidence_details": {"due_by": 1743465599, "has_evidence": False},
            "metadata": {},
            "payment_intent": "pi_3Q0aBcLkdIwHu7ix0",
            "reason": "fraudulent",
            "status": "needs_response",
        }
    },
}
ASAAS_RECEIVED: dict[str, Any] = {
    "id": "evt_05b708f961d739ea7eba7e4db318f621&368604920",
    "event": "PAYMENT_RECEIVED",
    "dateCreated": "2025-03-18 10:12:03",
    "payment": {
        "object": "payment",
        "id": "pay_080225913252",
        "dateCreated": "2025-03-01",
        "customer": "cus_G7Dvo4iphUNk",
        "subscription": None,
        "dueDate": "2025-03-18",
        "value": 1850.0,
        "netValue": 1848.01,
        "description": "Plantão cuidador março",
        "billingType": "PIX",
        "status": "RECEIVED",
        "confirmedDate": "2025-03-18",
        "paymentDate": "2025-03-18",
        "clientPaymentDate": "2025-03-18",
        "invoiceNumber": "00005101",
        "externalReference": "inv_2025_0412",
        "deleted": False,
    },
}
ASAAS_OVERDUE: dict[str, Any] = {
    "id": "evt_77aa0c&368699001",
    "event": "PAYMENT_OVERDUE",
    "dateCreated": "2025-03-19 00:05:00",
    "payment": {
        **ASAAS_RECEIVED["payment"],
        "status": "OVERDUE",
        "billingType": "BOLETO",
        "paymentDate": None,
        "clientPaymentDate": None,
        "confirmedDate": None,
    },
}
ZAPI_TEXT: dict[str, Any] = {
    "isStatusReply": False,
    "chatLid": "81896604192873@lid",
    "connectedPhone": "5531900001111",
    "waitingMessage": False,
    "isEdit": False,
    "isGroup": False,
    "isNewsletter": False,
    "instanceId": "3C67AB0F1E2D",
    "messageId": "3EB0C431C26A1916E0F2",
    "phone": "5531998765432",
    "fromMe": False,
    "momment": 1742256131000,
    "status": "RECEIVED",
    "chatName": "Joana Pereira",
    "senderPhoto": None,
    "senderName": "Joana",
    "participantPhone": None,
    "photo": "https://pps.whatsapp.net/v/t61.24694-24/abc.jpg",
    "broadcast": False,
    "type": "ReceivedCallback",
    "text": {"message": "Bom dia! Quero um orçamento."},
}
ZAPI_BUTTON: dict[str, Any] = {
    **{k: v for k, v in ZAPI_TEXT.items() if k != "text"},
    "messageId": "3EB0C431C26A1916E0F3",
    "buttonsResponseMessage": {"buttonId": "rating_5", "message": "Excelente"},
}
WPP_MESSAGE: dict[str, Any] = {
    "event": "message",
    "channel": "tenant-042",
    "data": {
        "id": "true_5547991234567@c.us_3EB0A1B2C3",
        "from": "5547991234567@c.us",
        "to": "5547930001111@c.us",
        "type": "chat",
        "body": "Já paguei, segue comprovante",
        "timestamp": 1737980431,
        "isGroupMsg": False,
    },
}
WPP_ACK: dict[str, Any] = {
    "event": "message.ack",
    "channel": "tenant-042",
    "data": {"id": "true_5547991234567@c.us_3EB0A1B2C3", "ack": 3, "timestamp": 1737980490},
}
WPP_CONNECTION: dict[str, Any] = {
    "event": "connection.update",
    "channel": "tenant-042",
    "data": {"status": "DISCONNECTED", "reason": "logged out from phone", "timestamp": 1737980500},
}
SITE_LEAD: dict[str, Any] = {
    "nome": "Joana Pereira",
    "telefone": "(31) 99876-5432",
    "email": "Joana.Pereira@Example.com.br",
    "cidade": "Belo Horizonte",
    "servico": "cuidador",
    "mensagem": "Preciso de cuidadora para minha mãe, 3x por semana.",
    "landing_url": "https://cuidar.example.com.br/cuidador-bh?utm_source=google&utm_medium=cpc"
    "&utm_campaign=cuidador-bh&utm_term=cuidadora%20idosos&utm_content=anuncio-2",
}

WA_CLOUD = ROOT / "tests" / "fixtures" / "whatsapp_cloud"


def _wa_cloud(name: str) -> dict[str, Any]:
    raw = (
        (WA_CLOUD / name)
        .read_bytes()
        .replace(b"__WAMID__", b"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQ2")
    )
    return dict(orjson.loads(raw))


# (mapping, payload, catalog folder, expected [(type, id)])
# a Twilio SMS status callback, as the form arrives (tests/fixtures/twilio/status_callback.json)
TWILIO_UNDELIVERED: dict[str, Any] = {
    **{
        k: v
        for k, v in orjson.loads(
            (ROOT / "tests/fixtures/twilio/status_callback.json").read_bytes()
        ).items()
        if k != "_comment"
    },
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "SmsSid": "SM0123456789abcdef0123456789abcdef",
    "MessageStatus": "undelivered",
    "SmsStatus": "undelivered",
    "ErrorCode": "30003",
    "To": "+5511987654321",
}

TWILIO_INBOUND: dict[str, Any] = {
    **{
        k: v
        for k, v in orjson.loads(
            (ROOT / "tests/fixtures/twilio/inbound_message.json").read_bytes()
        ).items()
        if k != "_comment"
    },
    "MessageSid": "SM89abcdef0123456789abcdef01234567",
    "SmsSid": "SM89abcdef0123456789abcdef01234567",
    "SmsMessageSid": "SM89abcdef0123456789abcdef01234567",
}

CASES: list[tuple[str, dict[str, Any], str, list[tuple[str, str | None]]]] = [
    (
        "stripe",
        STRIPE_PI_SUCCEEDED,
        "legal-practice",
        [("billing.payment_received", "evt_3Q0aBcLkdIwHu7ix0ZyXw1aB")],
    ),
    (
        "stripe",
        STRIPE_PI_FAILED,
        "legal-practice",
        [("billing.payment_failed", "evt_3Q0aBcFAILED")],
    ),
    (
        "stripe",
        STRIPE_DISPUTE,
        "legal-practice",
        [("billing.dispute_created", "evt_1DisputeCreated")],
    ),
    ("asaas", ASAAS_RECEIVED, "care-integrations", [("payment.received", ASAAS_RECEIVED["id"])]),
    ("asaas", ASAAS_OVERDUE, "care-integrations", [("payment.failed", ASAAS_OVERDUE["id"])]),
    ("zapi", ZAPI_TEXT, "care-integrations", [("whatsapp.inbound", "3EB0C431C26A1916E0F2")]),
    ("zapi", ZAPI_BUTTON, "care-integrations", [("whatsapp.inbound", "3EB0C431C26A1916E0F3")]),
    (
        "wpp-gateway",
        WPP_MESSAGE,
        "comms-hub",
        [("whatsapp.message_received", "true_5547991234567@c.us_3EB0A1B2C3")],
    ),
    (
        "wpp-gateway",
        WPP_ACK,
        "comms-hub",
        [("whatsapp.message_ack", "true_5547991234567@c.us_3EB0A1B2C3:ack:3")],
    ),
    (
        "wpp-gateway",
        WPP_CONNECTION,
        "comms-hub",
        [("whatsapp.connection_updated", "tenant-042:connection:disconnected:1737980500")],
    ),
    ("site-lead-form", SITE_LEAD, "care-integrations", [("lead.created", None)]),
    *[
        (
            "whatsapp-cloud",
            _wa_cloud(f"status_{status}.json"),
            "comms-hub",
            [
                (
                    "whatsapp.message_status",
                    f"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQ2:status:{status}",
                )
            ],
        )
        for status in ("delivered", "read", "failed")
    ],
    (
        "whatsapp-cloud",
        _wa_cloud("button_reply.json"),
        "comms-hub",
        [
            (
                "whatsapp.message_received",
                "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMUQ4RjlBMkI3QzRFNUQ2AA==",
            )
        ],
    ),
    (
        "whatsapp-cloud",
        _wa_cloud("text_message.json"),
        "comms-hub",
        [("whatsapp.message_received", None), ("whatsapp.message_received", None)],
    ),
    *[
        (name, _fixture(folder, sample), catalog, [(etype, eid)])
        for name, folder, catalog, sample, etype, eid in [
            (
                "pagarme",
                "pagarme",
                "clinic-loyalty",
                "order.paid",
                "payment_processed",
                "pagarme:ch_d22356Jf4WuGr8no:paid",
            ),
            (
                "pagarme",
                "pagarme",
                "clinic-loyalty",
                "charge.paid",
                "payment_processed",
                "pagarme:ch_d22356Jf4WuGr8no:paid",
            ),
            (
                "pagarme",
                "pagarme",
                "clinic-loyalty",
                "charge.payment_failed",
                "payment_processed",
                "pagarme:ch_K3mN8pQr5StUv2Wx:failed:tran_9ZyXwVuTsRqPoNmL",
            ),
            (
                "pagarme",
                "pagarme",
                "clinic-loyalty",
                "charge.refunded",
                "purchase_refund",
                "pagarme:ch_d22356Jf4WuGr8no:refunded",
            ),
            (
                "pagarme",
                "pagarme",
                "clinic-loyalty",
                "charge.chargedback",
                "chargeback_reported",
                "pagarme:ch_M7nB6vC5xZ4aS3dF:chargedback",
            ),
            (
                "pagarme",
                "pagarme",
                "clinic-loyalty",
                "invoice.paid",
                "subscription_billed",
                "pagarme:in_4B5c6D7e8F9g0H1i:paid",
            ),
            (
                "pagarme",
                "pagarme",
                "clinic-loyalty",
                "subscription.created",
                "membership_started",
                "pagarme:sub_2Wq3Er4Ty5Ui6Op7:created",
            ),
            (
                "stripe-clinic",
                "stripe",
                "clinic-loyalty",
                "payment_intent.succeeded",
                "payment_processed",
                "stripe:pi_3QkClinic0000001:succeeded",
            ),
            (
                "stripe-clinic",
                "stripe",
                "clinic-loyalty",
                "charge.succeeded",
                "payment_processed",
                "stripe:pi_3QkClinic0000001:succeeded",
            ),
            (
                "stripe-clinic",
                "stripe",
                "clinic-loyalty",
                "invoice.paid",
                "subscription_billed",
                "evt_1QkClinicINV001",
            ),
            (
                "stripe-clinic",
                "stripe",
                "clinic-loyalty",
                "charge.dispute.created",
                "chargeback_reported",
                "evt_1QkClinicDSP001",
            ),
            (
                "zapi-leads",
                "zapi",
                "care-integrations",
                "received-text",
                "whatsapp.inbound",
                "3EB0C431C26A1916E0A1",
            ),
            (
                "wpp-gateway-leads",
                "wpp-gateway",
                "comms-hub",
                "message",
                "whatsapp.message_received",
                "false_5547991234567@c.us_3EB0D4E5F6A7B8C9",
            ),
        ]
    ],
    (
        "twilio-sms",
        TWILIO_UNDELIVERED,
        "comms-hub",
        [("sms.status", "SM0123456789abcdef0123456789abcdef:status:undelivered")],
    ),
    (
        "twilio-sms",
        TWILIO_INBOUND,
        "comms-hub",
        [("sms.inbound", "SM89abcdef0123456789abcdef01234567")],
    ),
]


def _catalog(folder: str) -> dict[str, Any]:
    return {t.name: t for t in load_catalog_dir(ROOT / "catalogs" / folder).types}


def _map(name: str, payload: Any) -> list[dict[str, Any]]:
    mapping = MappingLibrary(SHIPPED).get(name)
    assert mapping is not None
    result = apply_mapping(mapping, copy.deepcopy(payload), "digest")
    assert result.errors == []
    return result.events


@pytest.mark.parametrize(
    ("name", "payload", "folder", "expected"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_shipped_mapping_produces_catalog_valid_events(
    name: str, payload: dict[str, Any], folder: str, expected: list[tuple[str, str | None]]
) -> None:
    events = _map(name, payload)
    assert [e["type"] for e in events] == [t for t, _ in expected]
    types = _catalog(folder)
    for event, (_, event_id) in zip(events, expected, strict=True):
        if event_id is not None:
            assert event["id"] == event_id
        built = build_event(event, tenant_id="t", default_source=name, received_us=1)
        assert built.time_us > 0
        schema = types[event["type"]].latest().schema
        issues = Validator(schema, validate_formats=True).validate(event["data"])
        assert issues == [], (event["type"], issues, event["data"])


def test_every_shipped_mapping_has_a_case() -> None:
    assert {name for name, _ in SHIPPED} == {c[0] for c in CASES}


def test_whatsapp_cloud_status_and_reply_fields() -> None:
    (failed,) = _map("whatsapp-cloud", _wa_cloud("status_failed.json"))
    assert failed["subject"] == "5511987654321"
    assert failed["time"] == "2025-06-18T16:23:10Z"
    assert failed["data"] == {
        "channel_id": "106540352242922",
        "message_id": "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQ2",
        "status": "failed",
        "recipient": "5511987654321",
        "error_code": 131026,
        "error_title": "Message undeliverable",
        "error_message": "Message undeliverable",
        "timestamp": "2025-06-18T16:23:10Z",
    }
    (reply,) = _map("whatsapp-cloud", _wa_cloud("button_reply.json"))
    assert reply["actor"] == {"id": "5511987654321", "type": "customer"}
    assert reply["data"]["type"] == "text" and reply["data"]["wa_type"] == "interactive"
    assert reply["data"]["text"] == "Confirmar"
    assert reply["data"]["reply"] == {"id": "confirm-appt-42", "title": "Confirmar"}
    assert reply["data"]["in_reply_to"] == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQ2"
    # a payload of another field (account updates) or object produces nothing
    other = {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "x"}]}]}
    assert _map("whatsapp-cloud", other) == []
    assert _map("whatsapp-cloud", {"object": "page", "entry": []}) == []


def test_twilio_status_fields() -> None:
    (event,) = _map("twilio-sms", TWILIO_UNDELIVERED)
    assert event["subject"] == "5511987654321"
    assert event["data"] == {
        "message_sid": "SM0123456789abcdef0123456789abcdef",
        "status": "undelivered",
        "error_code": "30003",
        "to": "+5511987654321",
        "from": "+15557122661",
        "account_sid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    }


def test_stripe_payment_fields_and_envelope() -> None:
    (event,) = _map("stripe", STRIPE_PI_SUCCEEDED)
    assert event["data"] == {
        "paymentIntentId": "pi_3Q0aBcLkdIwHu7ix0",
        "amount": 5000,
        "currency": "usd",
        "customerEmail": "patient@example.com",
        "stripeAccountId": "acct_1PqRsT2eZvKYlo2C",
        "applicationFeeAmount": 500,
    }
    assert event["subject"] == "org_42"
    assert event["actor"] == {"id": "webhook-stripe", "type": "webhook"}
    assert event["time"] == "2025-03-18T12:13:20Z"
    assert event["context"]["mapping"] == "stripe@1"


def test_stripe_failed_without_email_leaves_the_optional_field_out() -> None:
    (event,) = _map("stripe", STRIPE_PI_FAILED)
    assert "customerEmail" not in event["data"]
    assert event["data"]["declineCode"] == "insufficient_funds"


def test_asaas_times_are_read_in_brasilia_time() -> None:
    (event,) = _map("asaas", ASAAS_RECEIVED)
    assert event["time"] == "2025-03-18T10:12:03-03:00"
    assert event["data"]["paid_at"] == "2025-03-18T00:00:00-03:00"
    assert event["data"]["method"] == "pix"
    assert event["data"]["invoice_id"] == "inv_2025_0412"


def test_asaas_event_without_webhook_id_uses_payment_and_event_name() -> None:
    payload = {k: v for k, v in ASAAS_RECEIVED.items() if k != "id"}
    (event,) = _map("asaas", payload)
    assert event["id"] == "pay_080225913252-PAYMENT_RECEIVED"


def test_asaas_ignores_events_it_does_not_map() -> None:
    mapping = MappingLibrary(SHIPPED).get("asaas")
    assert mapping is not None
    result = apply_mapping(mapping, {**ASAAS_RECEIVED, "event": "PAYMENT_CREATED"}, "d")
    assert (result.events, result.matched) == ([], 0)


def test_zapi_button_response_and_text() -> None:
    (text,) = _map("zapi", ZAPI_TEXT)
    assert text["data"]["text"] == "Bom dia! Quero um orçamento."
    assert "button_response" not in text["data"]
    assert text["subject"] == "5531998765432"
    (button,) = _map("zapi", ZAPI_BUTTON)
    assert button["data"]["button_response"] == {"id": "rating_5", "label": "Excelente"}


def test_zapi_skips_own_and_group_messages() -> None:
    assert _map("zapi", {**ZAPI_TEXT, "fromMe": True}) == []
    assert _map("zapi", {**ZAPI_TEXT, "isGroup": True}) == []


def test_wpp_ack_levels_are_distinct_events_with_status() -> None:
    (read,) = _map("wpp-gateway", WPP_ACK)
    (delivered,) = _map("wpp-gateway", {**WPP_ACK, "data": {**WPP_ACK["data"], "ack": 2}})
    assert read["id"] != delivered["id"]
    assert (read["data"]["status"], delivered["data"]["status"]) == ("read", "delivered")


def test_wpp_message_normalizes_sender_and_type() -> None:
    (event,) = _map("wpp-gateway", WPP_MESSAGE)
    assert event["data"]["from"] == "5547991234567"
    assert event["data"]["type"] == "text"
    assert event["data"]["timestamp"] == "2025-01-27T12:20:31Z"


def test_site_lead_captures_utm_from_landing_url_and_fields() -> None:
    (event,) = _map("site-lead-form", SITE_LEAD)
    data = event["data"]
    assert (data["utm_source"], data["utm_medium"], data["utm_campaign"]) == (
        "google",
        "cpc",
        "cuidador-bh",
    )
    assert (data["utm_term"], data["utm_content"]) == ("cuidadora idosos", "anuncio-2")
    assert data["email"] == "joana.pereira@example.com.br"
    assert event["subject"] == "5531998765432"
    (own,) = _map("site-lead-form", {**SITE_LEAD, "utm_source": "instagram"})
    assert own["data"]["utm_source"] == "instagram"


def test_identical_body_gets_the_same_fallback_id() -> None:
    mapping = MappingLibrary(SHIPPED).get("site-lead-form")
    assert mapping is not None
    first = apply_mapping(mapping, SITE_LEAD, "digest-a").events[0]["id"]
    again = apply_mapping(mapping, SITE_LEAD, "digest-a").events[0]["id"]
    other = apply_mapping(mapping, SITE_LEAD, "digest-b").events[0]["id"]
    assert first == again != other
    assert first.startswith("h_")


# --- the mapping language ---------------------------------------------------------------------


def test_several_rules_and_each_produce_several_events_with_distinct_ids() -> None:
    mapping = parse_mapping(
        {
            "name": "orders",
            "version": "1",
            "rules": [
                {
                    "when": {"kind": ["order"]},
                    "type": "order.placed",
                    "id": "order_id",
                    "data": {"total": "total"},
                },
                {
                    "when": {"kind": ["order"]},
                    "type": "item.sold",
                    "each": "items",
                    "id": "join('-', [_root.order_id, sku])",
                    "data": {"sku": "sku", "qty": "qty"},
                },
                {
                    "when": {"kind": ["order"]},
                    "type": "order.audited",
                    "id": "order_id",
                    "data": {},
                },
            ],
        }
    )
    payload = {
        "kind": "order",
        "order_id": "o1",
        "total": 30,
        "items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
    }
    events = apply_mapping(mapping, payload, "d").events
    assert [(e["type"], e["id"]) for e in events] == [
        ("order.placed", "o1"),
        ("item.sold", "o1-A"),
        ("item.sold", "o1-B"),
        ("order.audited", "o1:order.audited"),
    ]
    assert events[2]["data"] == {"sku": "B", "qty": 2}


def test_invalid_mapping_lists_every_problem_with_its_path() -> None:
    with pytest.raises(MappingError) as info:
        parse_mapping(
            {
                "name": "x",
                "rules": [
                    {"type": "a.b", "when": {"x": [{"bogus": 1}]}, "id": "a[", "data": {}},
                    {"data": {"f": "ok"}, "colour": "red"},
                ],
                "dedup": [{"type": "a.b", "keys": {"phone": "fuzzy"}}],
            }
        )
    paths = {e["path"] for e in info.value.errors}
    assert {
        "/version",
        "/rules/0/when",
        "/rules/0/id",
        "/rules/1/type",
        "/rules/1/colour",
        "/dedup/0/keys/phone",
    } <= paths


def test_library_picks_the_newest_version_unless_pinned() -> None:
    base = {"name": "m", "rules": [{"type": "a.b", "data": {}}]}
    lib = MappingLibrary(
        {("m", v): parse_mapping({**base, "version": v}) for v in ("1", "2", "10")}
    )
    newest = lib.get("m")
    pinned = lib.get("m", "2")
    assert newest is not None and newest.version == "10"
    assert pinned is not None and pinned.version == "2"
    assert lib.get("m", "3") is None


def test_a_rule_that_fails_reports_an_error_and_others_still_produce() -> None:
    mapping = parse_mapping(
        {
            "name": "m",
            "version": "1",
            "rules": [
                {"type": "a.bad", "time": "when", "data": {}},
                {"type": "a.good", "data": {"x": "x"}},
            ],
        }
    )
    result = apply_mapping(mapping, {"when": "not a time", "x": 1}, "d")
    assert [e["type"] for e in result.events] == ["a.good"]
    assert result.errors[0]["path"] == "/rules/0"


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+55 (31) 99876-5432", "5531998765432"),
        ("31998765432", "5531998765432"),
        ("(31) 99876-5432", "5531998765432"),
        ("553198765432", "5531998765432"),  # WhatsApp's form without the ninth digit
        ("5531 3222-1100", "553132221100"),  # a landline keeps its 8 digits
        ("+1 415 555 0100", "14155550100"),
    ],
)
def test_phone_normalization(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "tz", "expected"),
    [
        (1742300000, "Z", "2025-03-18T12:13:20Z"),
        (1742300000000, "Z", "2025-03-18T12:13:20Z"),
        ("1742300000", "Z", "2025-03-18T12:13:20Z"),
        ("2025-03-18 10:12:03", "-03:00", "2025-03-18T10:12:03-03:00"),
        ("2025-03-18T10:12:03Z", "-03:00", "2025-03-18T10:12:03Z"),
        ("2025-03-18", "-03:00", "2025-03-18T00:00:00-03:00"),
        (None, "Z", None),
    ],
)
def test_time_normalization(raw: Any, tz: str, expected: str | None) -> None:
    assert normalize_time(raw, tz) == expected


@pytest.mark.security
@pytest.mark.parametrize("raw", ["9" * 400, 1e300])
def test_an_epoch_time_past_any_calendar_is_a_value_error(raw: Any) -> None:
    with pytest.raises(ValueError, match="out of range"):
        normalize_time(raw)


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90s", "30m", "24h", "7d", 60)] == [
        90,
        1800,
        86400,
        604800,
        60,
    ]
    with pytest.raises(ValueError):
        parse_duration("a day")


def test_dedup_keys_normalize_phone_and_email() -> None:
    mapping = SHIPPED[("site-lead-form", "1")]
    spec = mapping.dedup["lead.created"]
    a = keys_for(spec, {"phone": "+55 31 99876-5432", "email": "Joana@Example.com"})
    b = keys_for(spec, {"phone": "(31) 99876-5432"})
    assert a == ["phone:5531998765432", "email:joana@example.com"]
    assert b == ["phone:5531998765432"]
    assert keys_for(spec, {"phone": "n/a", "email": "none"}) == []
    assert normalize_key("  X ", "lower") == "x"


def test_from_cents_reads_minor_units() -> None:
    from switchboard.sources.functions import from_cents

    assert from_cents(19990, "BRL") == 199.9
    assert from_cents("12356", "brl") == 123.56
    assert from_cents(5000, "JPY") == 5000  # zero-decimal: already whole yen
    assert from_cents(7, None) == 0.07
    assert from_cents(None, "BRL") is None and from_cents("abc", "BRL") is None
    assert from_cents(True, "BRL") is None


def test_leads_block_is_validated() -> None:
    base = {"name": "x", "version": "1", "rules": [{"type": "a.b", "data": {}}]}
    mapping = parse_mapping({**base, "leads": {"type": "whatsapp.inbound", "phone": "phone"}})
    assert mapping.leads is not None
    assert (mapping.leads.created, mapping.leads.updated) == ("lead.created", "lead.updated")
    with pytest.raises(MappingError) as exc:
        parse_mapping({**base, "leads": {"phone": 5, "colour": "x"}})
    paths = {e["path"] for e in exc.value.errors}
    assert paths == {"/leads/colour", "/leads/phone", "/leads/type"}
    with pytest.raises(MappingError):
        parse_mapping({**base, "leads": ["whatsapp.inbound"]})


def test_twilio_inbound_fields_and_v1_still_ignores_them() -> None:
    (event,) = _map("twilio-sms", TWILIO_INBOUND)
    assert event["subject"] == "5511987654321"
    assert event["actor"] == {"id": "5511987654321", "type": "customer"}
    assert event["data"] == {
        "message_sid": "SM89abcdef0123456789abcdef01234567",
        "from": "+5511987654321",
        "to": "+15557122661",
        "text": "Ok, confirmado",
        "segments": "1",
        "media_count": "0",
        "from_country": "BR",
        "account_sid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    }
    v1 = MappingLibrary(SHIPPED).get("twilio-sms", "1")
    assert v1 is not None and apply_mapping(v1, TWILIO_INBOUND, "d").events == []
