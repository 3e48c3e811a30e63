"""Typed endpoints (api/contract.py): requests decoded by their models, each violation a 400
naming its path, and the OpenAPI operations and schemas generated from the same models."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from starlette.requests import Request

from switchboard.api.admin import KeyIn, RevokeQuery
from switchboard.api.contract import (
    Body,
    Params,
    decode_body,
    decode_headers,
    decode_path,
    decode_query,
)
from switchboard.api.openapi import openapi_document
from switchboard.errors import BadRequest


def _request(body: bytes = b"", query: str = "", path_params: Any = None) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": query.encode(),
        "headers": [(b"content-type", b"application/json")],
        "path_params": path_params or {},
    }
    return Request(scope, receive)


class Nested(Body):
    items: list[Annotated[str, msgspec.Meta(max_length=3)]]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"scopes": []}', "/scopes"),
        (b'{"scopes": ["ingest", 5]}', "/scopes/1"),
        (b'{"scopes": ["ingest"], "source": ""}', "/source"),
        (b'{"name": "k", "nme": "typo"}', "/nme"),
        (b'{"name": "k\\u0000"}', "/name"),
    ],
)
async def test_a_body_violating_its_model_is_a_400_naming_the_path(body: bytes, path: str) -> None:
    with pytest.raises(BadRequest) as info:
        await decode_body(_request(body), KeyIn, 1000)
    assert info.value.details is not None
    assert [d["path"] for d in info.value.details] == [path]


async def test_a_nested_violation_names_the_item() -> None:
    with pytest.raises(BadRequest) as info:
        await decode_body(_request(b'{"items": ["ok", "long"]}'), Nested, 1000)
    assert info.value.details == [{"path": "/items/1", "message": "Expected `str` of length <= 3"}]


async def test_a_valid_body_is_the_model() -> None:
    key = await decode_body(_request(b'{"scopes": ["read"], "source": "crm"}'), KeyIn, 1000)
    assert (key.name, key.scopes, key.source) == (None, ["read"], "crm")


def test_query_and_path_parameters_are_decoded_from_text() -> None:
    assert decode_query(_request(query="self=true"), RevokeQuery).self_ == "true"
    with pytest.raises(BadRequest) as info:
        decode_query(_request(query="self=yes"), RevokeQuery)
    assert info.value.details is not None and info.value.details[0]["path"] == "?self"

    class P(msgspec.Struct):
        n: int

    assert decode_path(_request(path_params={"n": "5"}), P).n == 5


def test_the_document_describes_typed_endpoints_from_their_models() -> None:
    doc = openapi_document()
    op = doc["paths"]["/v1/keys"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyIn"
    }
    key_in = doc["components"]["schemas"]["KeyIn"]
    assert key_in["additionalProperties"] is False
    assert key_in["properties"]["scopes"]["minItems"] == 1
    revoke = doc["paths"]["/v1/keys/{key_id}"]["delete"]
    names = {p.get("name") for p in revoke["parameters"]}
    assert {"key_id", "self"} <= names


class Listing(Params):
    type: list[Annotated[str, msgspec.Meta(max_length=5)]] = msgspec.field(default_factory=list)
    limit: Annotated[int, msgspec.Meta(ge=1, le=10)] = 5


def test_a_list_query_field_takes_every_value_of_its_repeated_name() -> None:
    q = decode_query(_request(query="type=a&type=b&limit=3&limit=4"), Listing)
    assert (q.type, q.limit) == (["a", "b"], 4)
    with pytest.raises(BadRequest) as info:
        decode_query(_request(query="type=a&type=toolong"), Listing)
    assert info.value.details is not None
    assert [d["path"] for d in info.value.details] == ["?type"]


class Headers(Params):
    idempotency_key: Annotated[str, msgspec.Meta(max_length=4)] | None = None


def test_headers_are_decoded_by_their_model_and_a_violation_names_the_header() -> None:
    assert (
        decode_headers(_with_header(b"idempotency-key", b"abc"), Headers).idempotency_key == "abc"
    )
    assert decode_headers(_request(), Headers).idempotency_key is None
    with pytest.raises(BadRequest) as info:
        decode_headers(_with_header(b"idempotency-key", b"toolong"), Headers)
    assert info.value.details is not None
    assert [d["path"] for d in info.value.details] == ["idempotency-key"]


def _with_header(name: bytes, value: bytes) -> Request:
    req = _request()
    req.scope["headers"] = [*req.scope["headers"], (name, value)]
    return req


class Described(Params):
    type: Annotated[list[str], msgspec.Meta(max_length=2, description="Types.")] = msgspec.field(
        default_factory=list
    )


def test_a_list_field_with_its_own_constraints_still_takes_every_value() -> None:
    assert decode_query(_request(query="type=a&type=b"), Described).type == ["a", "b"]
    with pytest.raises(BadRequest) as info:
        decode_query(_request(query="type=a&type=b&type=c"), Described)
    assert info.value.details is not None
    assert [d["path"] for d in info.value.details] == ["?type"]
