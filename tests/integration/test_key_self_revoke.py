"""A key revokes itself only on purpose (?self=true); other keys as before."""

from __future__ import annotations

from tests.conftest import Api


async def _key_id(api: Api, key: str) -> str:
    status, body, _ = await api.call("GET", "/v1/keys", key)
    assert status == 200
    (mine,) = [k for k in body["data"] if key.startswith(k["prefix"])]
    return str(mine["id"])


async def test_a_key_revoking_itself_without_self_true_is_a_409_and_keeps_working(api: Api) -> None:
    _, key = await api.tenant()
    kid = await _key_id(api, key)
    status, body, _ = await api.call("DELETE", f"/v1/keys/{kid}", key)
    assert status == 409, body
    assert "self=true" in body["error"]["message"]
    status, _, _ = await api.call("GET", "/v1/keys", key)
    assert status == 200


async def test_a_key_revokes_itself_with_self_true(api: Api) -> None:
    _, key = await api.tenant()
    kid = await _key_id(api, key)
    status, _, _ = await api.call("DELETE", f"/v1/keys/{kid}?self=true", key)
    assert status == 204
    api.hub.auth.forget()
    status, _, _ = await api.call("GET", "/v1/keys", key)
    assert status == 401


async def test_a_key_revokes_another_key_of_its_tenant_without_ceremony(api: Api) -> None:
    _, key = await api.tenant()
    status, other, _ = await api.call("POST", "/v1/keys", key, json={"name": "other"})
    assert status == 201
    status, _, _ = await api.call("DELETE", f"/v1/keys/{other['id']}", key)
    assert status == 204
