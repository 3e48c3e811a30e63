"""Consent purposes declared per tenant, on both stores: once a tenant declares its purposes,
consents, routes and automations naming another one get a 422 naming the field; a tenant that
declared none keeps an open list; one tenant's purposes are not another's."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api


async def _hook(api: Api, key: str) -> None:
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
    )
    assert status == 201, body


AUTOMATION: dict[str, Any] = {
    "name": "campaign",
    "on": "promo.sent",
    "steps": [{"send": {"destination": "hook"}}],
}


async def test_declared_purposes_close_the_list_and_unknown_ones_are_a_422_naming_the_field(
    hub_api: Api,
) -> None:
    api = hub_api
    _, key = await api.tenant()
    await _hook(api, key)
    # nothing declared yet: any purpose is accepted, as before
    grant = {"purpose": "newsletter", "action": "grant"}
    assert (await api.call("POST", "/v1/recipients/ana/consents", key, grant))[0] == 201
    status, body, _ = await api.call(
        "PUT", "/v1/consent-purposes/marketing", key, {"description": "Ofertas e campanhas"}
    )
    assert status == 201 and body["name"] == "marketing", body
    assert body["description"] == "Ofertas e campanhas"
    status, body, _ = await api.call(
        "PUT", "/v1/consent-purposes/marketing", key, {"description": "Campanhas"}
    )
    assert status == 200 and body["description"] == "Campanhas", body
    assert (await api.call("PUT", "/v1/consent-purposes/processing", key, {}))[0] == 201
    _, listed, _ = await api.call("GET", "/v1/consent-purposes", key)
    assert [p["name"] for p in listed["data"]] == ["marketing", "processing"]

    status, body, _ = await api.call("POST", "/v1/recipients/ana/consents", key, grant)
    assert status == 422 and body["error"]["details"][0]["path"] == "/purpose", body
    assert "newsletter" in body["error"]["message"]
    ok = {"purpose": "marketing", "action": "grant"}
    assert (await api.call("POST", "/v1/recipients/ana/consents", key, ok))[0] == 201

    route = {"name": "r", "destinations": ["hook"], "requires_consent": ["marketing", "typo"]}
    status, body, _ = await api.call("POST", "/v1/routes", key, route)
    assert status == 422, body
    assert [d["path"] for d in body["error"]["details"]] == ["/requires_consent/1"]
    assert (await api.call("GET", "/v1/routes", key))[1]["data"] == []  # nothing stored
    route["requires_consent"] = ["marketing"]
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201

    auto = {**AUTOMATION, "requires_consent": ["typo"]}
    status, body, _ = await api.call("PUT", "/v1/automations/campaign", key, auto)
    assert status == 422, body
    assert [d["path"] for d in body["error"]["details"]] == ["/requires_consent/0"]
    auto["requires_consent"] = ["processing"]
    assert (await api.call("PUT", "/v1/automations/campaign", key, auto))[0] == 201

    # undeclaring keeps the ledger (it is proof) and closes the purpose to new grants
    assert (await api.call("DELETE", "/v1/consent-purposes/marketing", key))[0] == 204
    assert (await api.call("DELETE", "/v1/consent-purposes/marketing", key))[0] == 404
    assert (await api.call("POST", "/v1/recipients/ana/consents", key, ok))[0] == 422
    _, ledger, _ = await api.call("GET", "/v1/recipients/ana/consents", key)
    assert ledger["state"] == {"marketing": "granted", "newsletter": "granted"}


async def test_purposes_are_per_tenant(hub_api: Api) -> None:
    api = hub_api
    _, first = await api.tenant()
    _, second = await api.tenant()
    assert (await api.call("PUT", "/v1/consent-purposes/marketing", first, {}))[0] == 201
    assert (await api.call("GET", "/v1/consent-purposes", second))[1] == {"data": []}
    assert (await api.call("DELETE", "/v1/consent-purposes/marketing", second))[0] == 404
    anything = {"purpose": "whatever", "action": "grant"}
    assert (await api.call("POST", "/v1/recipients/x/consents", second, anything))[0] == 201
    assert (await api.call("POST", "/v1/recipients/x/consents", first, anything))[0] == 422


@pytest.mark.security
@pytest.mark.parametrize(
    ("path", "body", "status", "where"),
    [
        ("/v1/consent-purposes/Marketing!", {}, 400, "name"),
        ("/v1/consent-purposes/" + "m" * 41, {}, 400, "name"),
        ("/v1/consent-purposes/marketing", {"description": "x" * 1001}, 422, "/description"),
        ("/v1/consent-purposes/marketing", {"description": 7}, 422, "/description"),
        ("/v1/consent-purposes/marketing", {"legal_basis": "x"}, 422, "/legal_basis"),
    ],
)
async def test_bad_purpose_declarations_name_the_field(
    api: Api, path: str, body: Any, status: int, where: str
) -> None:
    _, key = await api.tenant()
    got, answer, _ = await api.call("PUT", path, key, body)
    assert got == status, answer
    assert where in {d["path"] for d in answer["error"]["details"]}, answer
    assert (await api.call("GET", "/v1/consent-purposes", key))[1] == {"data": []}


@pytest.mark.security
async def test_a_tenant_declares_at_most_a_hundred_purposes(api: Api) -> None:
    _, key = await api.tenant()
    for n in range(100):
        assert (await api.call("PUT", f"/v1/consent-purposes/p{n}", key, {}))[0] == 201
    status, body, _ = await api.call("PUT", "/v1/consent-purposes/one_more", key, {})
    assert status == 422 and body["error"]["details"][0]["path"] == "name", body
    assert (await api.call("PUT", "/v1/consent-purposes/p7", key, {"description": "d"}))[0] == 200
