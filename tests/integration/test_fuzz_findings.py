"""The inputs a schemathesis run over /openapi.json found answered with a 5xx (issue 14), each
now a 4xx naming the field, the same on both stores. Text that PostgreSQL cannot hold (NUL) is
refused at the API's boundary, so SQLite answers the same."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.security

HOOK = {"kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}


def _paths(body: Any) -> list[str]:
    return [d["path"] for d in body["error"].get("details", [])]


@pytest.mark.parametrize(
    ("change", "refusal", "path"),
    [
        ({"retry_schedule": [None]}, 400, "/retry_schedule"),
        ({"retry_schedule": [[1]]}, 400, "/retry_schedule"),
        ({"kind": ["webhook"]}, 400, "/kind"),
        ({"config": {"url": "http://[::1"}}, 422, "/config/url"),
        ({"name": "d" * 201}, 400, "/name"),
    ],
)
async def test_odd_destination_fields_are_refused_naming_them(
    api: Api, change: dict[str, Any], refusal: int, path: str
) -> None:
    """The model refuses a wrong shape (400); the channel refuses a bad config (422)."""
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST", "/v1/destinations", key, json={"name": "d", **HOOK, **change}
    )
    assert status == refusal, body
    assert any(p.startswith(path) for p in _paths(body)), body


async def test_renaming_a_destination_to_a_used_name_is_a_409(api: Api) -> None:
    _, key = await api.tenant()
    for name in ("first", "second"):
        status, body, _ = await api.call(
            "POST", "/v1/destinations", key, json={"name": name, **HOOK}
        )
        assert status == 201, body
    status, body, _ = await api.call(
        "PATCH", "/v1/destinations/second", key, json={"name": "first"}
    )
    assert status == 409, body
    assert _paths(body) == ["/name"]
    status, body, _ = await api.call("GET", "/v1/destinations/second", key)
    assert (status, body["name"]) == (200, "second")


async def test_renaming_a_source_to_a_used_name_is_a_409(api: Api) -> None:
    _, key = await api.tenant()
    ids = []
    for name in ("first", "second"):
        status, body, _ = await api.call(
            "POST", "/v1/sources", key, json={"name": name, "preset": "standard"}
        )
        assert status == 201, body
        ids.append(body["id"])
    status, body, _ = await api.call("PATCH", f"/v1/sources/{ids[1]}", key, json={"name": "first"})
    assert status == 409, body
    assert _paths(body) == ["/name"]
    status, body, _ = await api.call("GET", f"/v1/sources/{ids[1]}", key)
    assert (status, body["name"]) == (200, "second")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"scopes": []}, "/scopes"),
        ({"scopes": [["ingest"]]}, "/scopes"),
        ({"scopes": ["ingest"], "source": {}}, "/source"),
        ({"scopes": ["ingest"], "source": "s" * 201}, "/source"),
        ({"scopes": ["ingest"], "name": ["k"]}, "/name"),
        ({"scopes": ["ingest"], "name": "k\x00"}, "/name"),
    ],
)
async def test_odd_key_bodies_are_a_400_naming_the_field(
    api: Api, body: dict[str, Any], path: str
) -> None:
    _, key = await api.tenant()
    status, answer, _ = await api.call("POST", "/v1/keys", key, json=body)
    assert status == 400, answer
    (where,) = _paths(answer)
    assert where == path or where.startswith(path + "/"), answer


async def test_an_admin_creating_a_key_in_a_tenant_that_does_not_exist_gets_a_404(
    api: Api,
) -> None:
    status, body, _ = await api.call(
        "POST",
        "/v1/keys",
        api.admin_key,
        json={"name": "k", "scopes": ["ingest"]},
        headers={"X-Switchboard-Tenant": "no-such-tenant"},
    )
    assert status == 404, body


@pytest.mark.parametrize(
    ("body", "refusal", "path"),
    [
        ({"destinations": [{}]}, 400, "/destinations/0"),
        ({"destinations": 5}, 400, "/destinations"),
        ({"destinations": [["x"]]}, 400, "/destinations/0"),
        ({"destinations": ["nowhere"]}, 422, "/destinations/0"),
        ({"routes": {"a": 1}}, 400, "/routes"),
        ({"filter": {"time": [{"prefix": "2026"}]}}, 422, "/filter"),
        ({"filter": {"data": {"ip": [{"cidr": "10.0.0.0/8"}]}}}, 422, "/filter"),
    ],
)
async def test_odd_replays_are_refused_naming_the_field(
    api: Api, body: dict[str, Any], refusal: int, path: str
) -> None:
    _, key = await api.tenant()
    status, answer, _ = await api.call("POST", "/v1/replays", key, json=body)
    assert status == refusal, answer
    assert path in _paths(answer), answer


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"priority": {}}, "/priority"),
        ({"priority": ["high"]}, "/priority"),
        ({"destinations": [[]]}, "/destinations"),
    ],
)
async def test_odd_routes_are_a_400_naming_the_field(
    api: Api, change: dict[str, Any], path: str
) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("POST", "/v1/destinations", key, json={"name": "d", **HOOK})
    assert status == 201, body
    route = {"name": "r", "types": ["a.b"], "destinations": ["d"], **change}
    status, body, _ = await api.call("POST", "/v1/routes", key, json=route)
    assert status == 400, body
    assert any(p.startswith(path) for p in _paths(body)), body


async def test_event_data_nested_past_the_encoders_limit_is_refused(api: Api) -> None:
    _, key = await api.tenant()
    deep = "[" * 300 + "]" * 300  # as text: orjson itself will not encode it
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        data=b'{"type": "a.b", "data": {"x": ' + deep.encode() + b"}}",
        headers={"Content-Type": "application/json"},
    )
    assert status == 422, body
    assert body["results"][0]["errors"][0]["path"] == "/data"


async def test_a_cloudevents_batch_that_is_an_object_is_a_400(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        data=b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "a.b"}',
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert status == 400, body
    assert _paths(body) == ["/"]


def _nested_filter(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    "pattern",
    [
        _nested_filter(2000),
        '{"time": [{"prefix": "2026"}]}',
        '{"data": {"ip": [{"cidr": "10.0.0.0/8"}]}}',
        '{"data": {"a\\"b": ["x"]}}',  # a key with `"`: SQLite's JSON paths cannot name it
        '{"data": {"n": [{"numeric": [">", ' + "9" * 5000 + "]}]}}",
    ],
    ids=["nested", "time", "cidr", "quote-in-key", "5000-digits"],
)
async def test_query_filters_neither_store_can_answer_are_a_400(api: Api, pattern: str) -> None:
    _, key = await api.tenant()
    for path in ("/v1/events", "/v1/deliveries", "/v1/dlq"):
        status, body, _ = await api.call("GET", f"{path}?filter={quote(pattern)}", key)
        assert status == 400, (path, body)
        assert _paths(body) == ["?filter"], (path, body)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/events/a%00", "event_id"),
        ("/v1/events?subject=a%00", "subject"),
        ("/v1/subjects/a%00/timeline", "subject"),
        ("/v1/actors/a%00/timeline", "actor"),
        ("/v1/deliveries/a%00", "delivery_id"),
        ("/v1/destinations/a%00", "ref"),
        ("/v1/recipients/a%00", "id"),
    ],
)
async def test_a_nul_in_a_path_or_query_parameter_is_a_400_on_both_stores(
    api: Api, path: str, name: str
) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("GET", path, key)
    assert status == 400, body
    assert _paths(body) == [name]


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/v1/dlq/archive", {"ids": ["a\x00"]}, "/ids/0"),
        ("POST", "/v1/dlq/retry", {"ids": ["a\x00"]}, "/ids/0"),
        ("POST", "/v1/destinations", {"name": "d\x00", **HOOK}, "/name"),
        ("PUT", "/v1/recipients/r-1", {"name": "n\x00"}, "/name"),
    ],
)
async def test_a_nul_in_a_body_is_a_400_naming_it_on_both_stores(
    api: Api, method: str, path: str, body: dict[str, Any], where: str
) -> None:
    _, key = await api.tenant()
    status, answer, _ = await api.call(method, path, key, json=body)
    assert status == 400, answer
    assert _paths(answer) == [where]


async def test_a_nul_or_a_long_actor_is_rejected_per_event(api: Api) -> None:
    _, key = await api.tenant()
    for actor in ({"id": "a\x00", "type": "user"}, {"id": "a" * 500_000, "type": "user"}):
        event = {"type": "a.b", "data": {}, "actor": actor}
        status, body, _ = await api.call("POST", "/v1/events", key, json=event)
        assert status == 422, body
        assert body["results"][0]["errors"][0]["path"] == "/actor/id"


async def test_a_5000_digit_webhook_timestamp_is_a_401(api: Api) -> None:
    _, key = await api.tenant()
    status, source, _ = await api.call("POST", "/v1/sources", key, {"name": "sv", "preset": "svix"})
    assert status == 201, source
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "9" * 5000,
        "webhook-signature": "v1,AAAA",
        "Content-Type": "application/json",
    }
    status, body, _ = await api.call(
        "POST", f"/v1/sources/{source['id']}/webhook", data=b"{}", headers=headers
    )
    assert status == 401, body
    headers["webhook-timestamp"] = str(int(time.time()))
    status, body, _ = await api.call(
        "POST", f"/v1/sources/{source['id']}/webhook", data=b"{}", headers=headers
    )
    assert status == 401, body  # a timestamp of now still needs a good signature


async def test_a_template_variant_whose_channel_is_an_object_is_a_422(api: Api) -> None:
    _, key = await api.tenant()
    template = {"variants": [{"channel": {}, "locale": "pt-BR", "body": "x"}]}
    status, body, _ = await api.call("PUT", "/v1/templates/welcome", key, json=template)
    assert status == 422, body
    assert "/variants/0/channel" in _paths(body)


async def test_a_405_lists_every_method_of_the_path(api: Api) -> None:
    _, key = await api.tenant()
    status, _, headers = await api.call("PUT", "/v1/destinations", key, json={})
    assert status == 405
    assert headers["Allow"] == "GET, HEAD, POST"


async def test_thousands_of_type_globs_are_a_400_or_422_not_a_503(api: Api) -> None:
    _, key = await api.tenant()
    globs = [f"a{i}.*" for i in range(1500)]
    for path in ("/v1/events", "/v1/deliveries", "/v1/dlq"):
        status, body, _ = await api.call("GET", f"{path}?type={','.join(globs)}", key)
        assert status == 400, (path, body)
        assert _paths(body) == ["?type"]
    for dry_run in (True, False):
        replay = {"types": globs * 2, "dry_run": dry_run}
        status, body, _ = await api.call("POST", "/v1/replays", key, json=replay)
        assert status == 400, body
        assert _paths(body) == ["/types"]


async def test_a_cursor_past_64_bits_is_a_400(api: Api) -> None:
    _, key = await api.tenant()
    for path in (
        "/v1/events?cursor=100000000000000000000000",
        "/v1/deliveries?cursor=1" + "0" * 23 + ":x",
    ):
        status, body, _ = await api.call("GET", path, key)
        assert status == 400, (path, body)


async def test_metrics_up_to_the_year_9999_answer(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("GET", "/v1/metrics/events?to=9999-12-31T23:59:59Z", key)
    assert status == 200, body
    assert body["buckets"] == []


async def test_a_time_zone_name_too_long_for_a_file_is_a_422_not_a_500(api: Api) -> None:
    """`zoneinfo` raises OSError (not ZoneInfoNotFoundError) for a name longer than a file
    name may be; the fuzz run found it through a recipient's `timezone`."""
    _, key = await api.tenant()
    long_zone = "America/" + "0" * 300
    status, body, _ = await api.call(
        "PUT", "/v1/recipients/p-1", key, json={"email": "a@example.com", "timezone": long_zone}
    )
    assert status == 422, body
    assert "/timezone" in _paths(body), body
    status, body, _ = await api.call(
        "PATCH", "/v1/recipients/p-1", key, json={"timezone": long_zone}
    )
    assert status in (404, 422), body  # no such recipient yet, or the field named
    status, body, _ = await api.call(
        "POST",
        "/v1/routes",
        key,
        json={
            "name": "quiet",
            "types": ["*"],
            "destinations": [],
            "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": long_zone},
        },
    )
    assert 400 <= status < 500, body


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_time_zone_name_longer_than_a_file_name_is_a_422(api: Api, method: str) -> None:
    """zoneinfo looks names up as files: a name past the file-name limit raised OSError (a 500)."""
    _, key = await api.tenant()
    if method == "PATCH":
        assert (await api.call("PUT", "/v1/recipients/r1", key, {"name": "Ana"}))[0] in (200, 201)
    status, body, _ = await api.call(method, "/v1/recipients/r1", key, {"timezone": "0" * 400})
    assert status == 422, body
    assert body["error"]["details"][0]["path"] == "/timezone"


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/v1/routes", {"name": "r", "destinations": ["d"], "priorty": "low"}, "/priorty"),
        ("POST", "/v1/routes", {"routes": [], "name": "r"}, "/name"),
        ("POST", "/v1/replays", {"destination": ["d"]}, "/destination"),
        ("POST", "/v1/dlq/retry", {"ids": ["dlv 1"]}, "/ids/0"),
        ("POST", "/v1/inbox/u1/read", {"ids": [], "all": True}, "/all"),
        ("GET", "/v1/inbox/" + "u" * 1001, None, "recipient"),
        ("GET", "/v1/dlq?limit=0", None, "?limit"),
        ("GET", "/v1/deliveries?status=lost", None, "?status"),
        ("GET", "/v1/events/e1/deliveries?source=" + "s" * 201, None, "?source"),
    ],
)
async def test_a_request_the_delivery_models_refuse_is_a_400_naming_the_field(
    api: Api, method: str, path: str, body: Any, where: str
) -> None:
    """A misspelt field is refused rather than ignored or stored, and nothing is changed."""
    _, key = await api.tenant()
    status, answer, _ = await api.call(method, path, key, json=body)
    assert status == 400, answer
    assert _paths(answer) == [where] or _paths(answer)[0].startswith(where + "."), answer
    status, routes, _ = await api.call("GET", "/v1/routes", key)
    assert (status, routes["data"]) == (200, [])


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/v1/sources", {"name": "forms\n", "preset": "none"}, "/name"),
        ("POST", "/v1/destinations", {"name": "d", **HOOK, "channel": "webhook\n"}, None),
        ("GET", "/v1/events?type=order.created%0A", None, "?type"),
        ("PUT", "/v1/automations/x%0A", {"on": "a.b", "steps": [{"wait": "1h"}]}, "name"),
    ],
)
async def test_a_name_with_a_final_newline_is_a_400(
    api: Api, method: str, path: str, body: dict[str, Any] | None, where: str | None
) -> None:
    """Python's `$` matches before a final newline: `^name$` took "name\\n" until the patterns
    ended `(?!\\n)$` (tests/unit/test_anchors.py)."""
    _, key = await api.tenant()
    status, answer, _ = await api.call(method, path, key, json=body)
    assert status == 400, answer
    if where is not None:
        assert where in _paths(answer), answer
