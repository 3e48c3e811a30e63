"""The document of the sources and health endpoints, generated from their models: the receiving
URL's bodies, headers and answers, and the health routes without an API key."""

from __future__ import annotations

from typing import Any

from switchboard.api.health import routes as health_routes
from switchboard.api.openapi import openapi_document
from switchboard.signing import PRESETS

# the headers verify_standard, verify_stripe, verify_github and verify_twilio read by name
FIXED = {
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-twilio-signature",
}


def _op(path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = openapi_document()["paths"][path][method]
    return op


def test_the_receiving_url_documents_every_header_a_preset_reads() -> None:
    op = _op("/v1/sources/{source_id}/webhook", "post")
    headers = {p["name"].lower(): p for p in op["parameters"] if p["in"] == "header"}
    by_config = {h for p in PRESETS.values() for h in p.token_headers}
    by_config |= {p.hmac.header.lower() for p in PRESETS.values() if p.hmac}
    assert by_config | FIXED | {"content-encoding"} <= set(headers)
    assert not any(p.get("required") for p in headers.values())  # each preset reads its own


def test_the_receiving_url_takes_json_or_a_form_and_answers_in_its_reply_shape() -> None:
    op = _op("/v1/sources/{source_id}/webhook", "post")
    assert op["security"] == []
    assert set(op["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    reply = {"$ref": "#/components/schemas/WebhookReply"}
    for status in ("200", "400", "401", "403", "404", "422"):
        # its own 400 (an unreadable body, logged) wins over the shared error answer
        assert op["responses"][status]["content"]["application/json"]["schema"] == reply
    assert {"413", "429", "503"} <= set(op["responses"])


def test_the_handshake_documents_its_query_and_answers_text() -> None:
    op = _op("/v1/sources/{source_id}/webhook", "get")
    query = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    assert set(query) == {"hub.mode", "hub.verify_token", "hub.challenge"}
    assert all(p["required"] for p in query.values())
    assert query["hub.verify_token"]["schema"]["maxLength"] == 200
    assert set(op["responses"]["200"]["content"]) == {"text/plain"}


def test_source_bodies_refuse_unknown_fields_and_bound_their_text() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for name in ("SourceIn", "SourcePatch", "SourceSecretIn", "ReprocessIn"):
        assert schemas[name]["additionalProperties"] is False, name
    assert schemas["SourceIn"]["required"] == ["name", "preset"]
    assert "required" not in schemas["SourcePatch"] or not schemas["SourcePatch"]["required"]
    secrets = schemas["SourceIn"]["properties"]["secrets"]
    assert secrets["maxItems"] == 2 and secrets["items"]["maxLength"] == 1024


def test_health_and_the_document_need_no_key_and_are_typed() -> None:
    assert [r.path for r in health_routes] == [
        "/health",
        "/health/detailed",
        "/openapi.json",
        "/docs",
        "/docs/assets/{name}",
    ]
    for path in ("/health", "/openapi.json", "/docs", "/docs/assets/{name}"):
        assert _op(path, "get")["security"] == [], path
    # /health/detailed takes no key, or an admin key (which also shows the counts)
    assert _op("/health/detailed", "get")["security"] == [{}, {"bearerAuth": ["admin"]}]
    assets = _op("/docs/assets/{name}", "get")
    assert set(assets["responses"]["200"]["content"]) == {
        "text/css",
        "text/javascript",
        "image/png",
    }
    (name,) = assets["parameters"]
    assert set(name["schema"]["enum"]) == {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "favicon-32x32.png",
    }
