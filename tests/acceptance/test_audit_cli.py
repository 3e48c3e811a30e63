"""`switchboard audit` as a user runs it, against a served hub."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.acceptance.test_cli import hub_env, run

__all__ = ["hub_env"]  # the fixture, shared with the other CLI tests


def test_audit_lists_the_changes_made_with_the_key(hub_env: dict[str, str]) -> None:
    env = hub_env

    async def create_key() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                env["SWITCHBOARD_URL"] + "/v1/keys",
                json={"name": "reader", "scopes": ["read"]},
                headers={"Authorization": f"Bearer {env['SWITCHBOARD_API_KEY']}"},
            ) as answer,
        ):
            assert answer.status == 201
            return str((await answer.json())["key"])

    secret = asyncio.run(create_key())
    rows = [json.loads(line) for line in run(env, "audit", "--json").stdout.splitlines()]
    assert [r["action"] for r in rows] == ["keys.create"]
    assert rows[0]["ip"] == "127.0.0.1" and rows[0]["after"]["name"] == "reader"
    assert secret not in json.dumps(rows)
    assert "keys.create" in run(env, "audit", "--action", "keys").stdout
    assert run(env, "audit", "--action", "routes", "--json").stdout.strip() == ""
