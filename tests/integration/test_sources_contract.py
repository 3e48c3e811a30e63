"""The typed source endpoints refuse what their models do not allow, on both stores alike: each
guard answers a 400 naming the field, the parameter or the header (docs/sources.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.security


def _named(body: Any) -> list[str]:
    return [d["path"] for d in body["error"].get("details", [])]


async def test_a_source_body_is_bounded_field_by_field(api: Api) -> None:
    _, key = await api.tenant()
    ok = {"name": "s", "preset": "token", "preset_config": {"headers": ["X-T"]}}
    for body, field in (
        ({**ok, "secrets": ["x" * 1025]}, "/secrets/0"),
        ({**ok, "secrets": ["a", "b", "c"]}, "/secrets"),
        ({**ok, "secrets": [""]}, "/secrets/0"),
        ({**ok, "ip_allowlist": ["1" * 101]}, "/ip_allowlist/0"),
        ({**ok, "ip_allowlist": ["10.0.0.0/8"] * 101}, "/ip_allowlist"),
        ({**ok, "mapping": "m" * 201}, "/mapping"),
        ({**ok, "event_source": None}, "/event_source"),
        ({**ok, "dedup_window": 90 * 86400 + 1}, "/dedup_window"),
        ({**ok, "enabled": "yes"}, "/enabled"),
        ({**ok, "nme": "typo"}, "/nme"),
        ({**ok, "name": "Upper"}, "/name"),
        ({**ok, "preset": "md5"}, "/preset"),
    ):
        status, reply, _ = await api.call("POST", "/v1/sources", key, body)
        assert status == 400 and _named(reply) == [field], (body, reply)
    status, source, _ = await api.call("POST", "/v1/sources", key, {**ok, "secrets": ["t0k3n"]})
    assert status == 201 and "secret" not in source  # shown only when generated
    url = f"/v1/sources/{source['id']}"
    status, reply, _ = await api.call("PATCH", url, key, {"secrets": ["x" * 1025]})
    assert status == 400 and _named(reply) == ["/secrets/0"]
    status, reply, _ = await api.call("POST", f"{url}/secrets", key, {"secret": ""})
    assert status == 400 and _named(reply) == ["/secret"]
    status, reply, _ = await api.call("POST", f"{url}/secrets", key, {"secret": "s", "x": 1})
    assert status == 400 and _named(reply) == ["/x"]


async def test_request_log_parameters_are_checked_by_their_model(api: Api) -> None:
    _, key = await api.tenant()
    status, source, _ = await api.call("POST", "/v1/sources", key, {"name": "s", "preset": "none"})
    assert status == 201
    base = f"/v1/sources/{source['id']}/requests"
    for query, name in (
        ("limit=0", "?limit"),
        ("limit=501", "?limit"),
        ("status=lost", "?status"),
        ("verified=maybe", "?verified"),
        ("body=maybe", "?body"),
        ("cursor=a%20b", "?cursor"),
        (f"cursor={'a' * 101}", "?cursor"),
    ):
        status, reply, _ = await api.call("GET", f"{base}?{query}", key)
        assert status == 400 and _named(reply) == [name], (query, reply)
    status, page, _ = await api.call("GET", f"{base}?verified=false&body=false&limit=1", key)
    assert status == 200 and page["data"] == [] and page["next_cursor"] is None
    assert set(page["counters"]) == {
        "received",
        "verified",
        "failed_verification",
        "events_produced",
    }
    for path, name in (
        ("/v1/sources/src.x", "source_id"),
        (f"/v1/sources/{'s' * 101}", "source_id"),
        (f"{base}/req.1", "request_id"),
    ):
        status, reply, _ = await api.call("GET", path, key)
        assert status == 400 and _named(reply) == [name], (path, reply)


async def test_the_receiving_url_refuses_a_malformed_source_id_on_both_stores(api: Api) -> None:
    # a NUL reaches no store (PostgreSQL cannot compare one): the same 400 from each
    for source_id in ("src%00x", "src.x", "s" * 101):
        status, reply, _ = await api.call(
            "POST", f"/v1/sources/{source_id}/webhook", data=b"{}", headers={"X": "y"}
        )
        assert status == 400 and _named(reply) == ["source_id"], (source_id, reply)
        status, reply, _ = await api.call("GET", f"/v1/sources/{source_id}/webhook")
        assert status == 400 and _named(reply) == ["source_id"], (source_id, reply)
    status, reply, _ = await api.call(
        "POST", "/v1/sources/src_unknown/webhook", data=b"{}", headers={"X": "y"}
    )
    assert status == 404 and reply == {
        "error": {"code": "not_found", "message": "no source with this id"}
    }


async def test_the_handshake_query_is_checked_before_any_lookup(api: Api) -> None:
    url = "/v1/sources/src_unknown/webhook"
    good = "hub.mode=subscribe&hub.verify_token=tok3n-123&hub.challenge=42"
    for query, name in (
        ("hub.mode=subscribe&hub.challenge=42", "?hub.verify_token"),
        (good.replace("tok3n-123", "t" * 201), "?hub.verify_token"),
        (good.replace("subscribe", "unsubscribe"), "?hub.mode"),
        (good.replace("=42", "=%3Cb%3E"), "?hub.challenge"),
    ):
        status, reply, _ = await api.call("GET", f"{url}?{query}")
        assert status == 400 and _named(reply) == [name], (query, reply)
        assert name[1:] in reply["error"]["message"]
    assert (await api.call("GET", f"{url}?{good}"))[0] == 404


async def test_a_mapping_is_named_and_shaped_by_its_model(api: Api) -> None:
    _, key = await api.tenant()
    doc = {"rules": [{"when": "true", "type": "x.y", "data": {"a": "a"}}]}
    for path, name in (
        ("/v1/mappings/na%20me/1", "name"),
        (f"/v1/mappings/{'m' * 101}/1", "name"),
        ("/v1/mappings/mine/-1", "version"),
    ):
        status, reply, _ = await api.call("PUT", path, key, doc)
        assert status == 400 and _named(reply) == [name], (path, reply)
    status, reply, _ = await api.call("PUT", "/v1/mappings/mine/1", key, [doc])
    assert status == 400 and _named(reply) == ["/"]
    status, source, _ = await api.call("POST", "/v1/sources", key, {"name": "s", "preset": "none"})
    url = f"/v1/sources/{source['id']}/reprocess"
    for body, field in (
        ({"mapping": "stripe", "limit": 0}, "/limit"),
        ({"mapping": "stripe", "from": "yesterday"}, "/from"),
        ({"mapping": "stripe", "dry_run": "no"}, "/dry_run"),
        ({}, "/mapping"),  # the source has none to fall back on
    ):
        status, reply, _ = await api.call("POST", url, key, body)
        assert status == 400 and _named(reply) == [field], (body, reply)
