"""The OpenAPI document is valid and describes exactly the routes the app serves."""

from __future__ import annotations

import re
from typing import Any

import orjson
from openapi_spec_validator import validate
from starlette.routing import Route

from switchboard.api import create_app
from switchboard.api.openapi import openapi_document
from switchboard.config import Settings

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SCOPED_TAGS = {"events", "catalog", "tenants & keys", "destinations & routes", "deliveries"}


def _app_operations() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    found = set()
    for route in app.routes:
        assert isinstance(route, Route), f"{route!r}: describe non-Route routes in openapi.py"
        path = re.sub(r"\{([^}:]+):[^}]+\}", r"{\1}", route.path)  # drop {name:convertor}
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                found.add((path, method.lower()))
    return found


def _documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, m, op)
        for path, item in doc["paths"].items()
        for m, op in item.items()
        if m in METHODS
    ]


def test_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_document_is_json_serialisable_and_cached() -> None:
    assert openapi_document() is openapi_document()
    assert orjson.loads(orjson.dumps(openapi_document())) == openapi_document()


def test_every_app_route_is_documented() -> None:
    missing = _app_operations() - _documented_operations(openapi_document())
    assert not missing, f"routes without an OpenAPI description: {sorted(missing)}"


def test_every_documented_operation_is_served() -> None:
    extra = _documented_operations(openapi_document()) - _app_operations()
    assert not extra, f"described but not served: {sorted(extra)}"


def test_every_operation_has_summary_description_tag_and_id() -> None:
    doc = openapi_document()
    tags = {t["name"] for t in doc["tags"]}
    ids = []
    for path, method, op in _operations(doc):
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("description"), where
        assert len(op["tags"]) == 1 and op["tags"][0] in tags, where
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_every_path_parameter_is_declared() -> None:
    doc = openapi_document()
    for path, method, op in _operations(doc):
        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), f"{method.upper()} {path}"


def test_api_key_operations_name_their_scope_and_auth_errors() -> None:
    doc = openapi_document()
    for path, method, op in _operations(doc):
        bearer = [req for req in op.get("security", []) if "bearerAuth" in req]
        if not bearer:
            continue
        (scopes,) = (req["bearerAuth"] for req in bearer)
        assert set(scopes) <= {"ingest", "read", "manage", "admin"} and scopes, path
        assert {"401", "403", "503"} <= set(op["responses"]), f"{method.upper()} {path}"


def test_tenant_operations_require_a_key() -> None:
    for path, method, op in _operations(openapi_document()):
        if op["tags"][0] in SCOPED_TAGS:
            assert op["security"], f"{method.upper()} {path} has no security"


def test_source_webhook_and_health_need_no_api_key() -> None:
    paths = openapi_document()["paths"]
    assert paths["/v1/sources/{source_id}/webhook"]["post"]["security"] == []
    assert paths["/health"]["get"]["security"] == []


def test_segment_accepts_basic_auth_with_the_write_key() -> None:
    doc = openapi_document()
    assert doc["components"]["securitySchemes"]["segmentWriteKey"]["scheme"] == "basic"
    assert {"segmentWriteKey": []} in doc["paths"]["/v1/track"]["post"]["security"]


def test_ingest_documents_content_types_idempotency_and_rate_limit() -> None:
    doc = openapi_document()
    op = doc["paths"]["/v1/events"]["post"]
    assert {
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    } <= set(op["requestBody"]["content"])
    assert "Idempotency-Key" in {p.get("name") for p in op["parameters"]}
    assert {"202", "400", "401", "403", "413", "415", "422", "429", "503"} <= set(op["responses"])
    rate_limited = doc["components"]["responses"]["RateLimited"]
    assert "Retry-After" in rate_limited["headers"]


def test_error_schema_matches_the_api_error_shape() -> None:
    schemas = openapi_document()["components"]["schemas"]
    error = schemas["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message"}
    assert error["properties"]["details"]["items"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert set(schemas["ErrorDetail"]["required"]) == {"path", "message"}
    assert set(schemas["Envelope"]["required"]) == {"type", "data"}
    for name in ("StoredEvent", "IngestResponse", "Page", "EventType", "Destination", "Route"):
        assert name in schemas
    for name in ("Delivery", "Attempt", "Replay"):
        assert name in schemas


def test_every_app_route_is_a_typed_endpoint() -> None:
    """A route cannot exist without its models: each handler carries an `@endpoint`, from which
    its operation is generated (nothing in the document is written by hand)."""
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    untyped = [
        route.path
        for route in app.routes
        if isinstance(route, Route) and not hasattr(route.endpoint, "endpoint")
    ]
    assert not untyped, f"routes without @endpoint: {untyped}"
