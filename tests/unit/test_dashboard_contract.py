"""The dashboard's operations in the OpenAPI document come from the declarations its routes are
served from: every route's handler carries an Endpoint with the route's own path and method, and
the document describes each page as HTML behind a session (no key), each form by its fields."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from switchboard import ui
from switchboard.api.contract import PUBLIC, endpoint_of
from switchboard.api.openapi import openapi_document
from switchboard.config import Settings


def _ui_operations() -> dict[tuple[str, str], Any]:
    return {
        (path, method): op
        for path, item in openapi_document()["paths"].items()
        if path == "/ui" or path.startswith("/ui/")
        for method, op in item.items()
    }


def test_every_dashboard_route_is_served_from_its_declaration() -> None:
    served = ui.routes(Settings(database_url="sqlite:///:memory:"))
    declared = [endpoint_of(h) for h in ui.HANDLERS]
    assert len(served) == len(declared)
    for route, spec in zip(served, declared, strict=True):
        assert isinstance(route, Route)
        assert route.path == spec.served_url and spec.method in (route.methods or set())
        assert spec.scope == PUBLIC and spec.tag == "dashboard"
    assert {(s.url, s.method.lower()) for s in declared} == set(_ui_operations())


def test_pages_answer_html_or_send_to_the_sign_in_form() -> None:
    ops = _ui_operations()
    pages = [op for (path, method), op in ops.items() if method == "get" and "static" not in path]
    assert len(pages) >= 20
    for op in pages:
        assert op["security"] == []
        responses = op["responses"]
        assert "text/html" in responses["200"]["content"] or op["operationId"] == "uiLiveStream"
        if op["operationId"] != "uiSignInForm":
            assert "content" not in responses["303"]  # a redirect, no body
    trace = ops[("/ui/traces/{trace_id}", "get")]
    (param,) = trace["parameters"]
    assert param["schema"]["maxLength"] == 255 and param["required"] is True
    search = {p["name"] for p in ops[("/ui/deliveries", "get")]["parameters"]}
    assert search == {"status", "destination", "type", "cursor"}


def test_forms_are_described_by_their_fields_with_the_csrf_token() -> None:
    for (path, method), op in _ui_operations().items():
        if method != "post":
            continue
        body = op["requestBody"]["content"]
        schema = body["application/x-www-form-urlencoded"]["schema"]
        assert "csrf" in schema["required"], path
        assert "303" in op["responses"], path
    retry = _ui_operations()[("/ui/dlq/retry", "post")]
    fields = retry["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert fields["properties"]["ids"]["maxItems"] == 1000
