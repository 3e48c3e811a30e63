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
    # newest first: the key made through the API, then the one `keys create` made (hub_env)
    assert [r["action"] for r in rows] == ["keys.create", "keys.create"]
    assert rows[0]["ip"] == "127.0.0.1" and rows[0]["after"]["name"] == "reader"
    assert rows[1]["key_id"] == "cli" and rows[1]["method"] == "CLI" and rows[1]["ip"] is None
    assert rows[1]["path"] == "switchboard keys create"
    assert secret not in json.dumps(rows)
    assert "keys.create" in run(env, "audit", "--action", "keys").stdout
    assert run(env, "audit", "--action", "routes", "--json").stdout.strip() == ""


def test_keys_create_takes_constraints(hub_env: dict[str, str]) -> None:
    env = hub_env
    clinic = '{"context": {"clinic_id": ["c-17"]}}'
    run(env, "keys", "create", "--tenant", "clinic", "--scopes", "read", "--constraints", clinic)
    listed = [json.loads(x) for x in run(env, "keys", "list", "--json").stdout.splitlines()]
    assert [k["constraints"] for k in listed if k["constraints"]] == [json.loads(clinic)]
    made = next(k for k in listed if k["constraints"])
    run(env, "keys", "revoke", made["id"])
    rows = [json.loads(line) for line in run(env, "audit", "--json").stdout.splitlines()]
    assert rows[0]["action"] == "keys.delete" and rows[0]["after"] == {"id": made["id"]}
    assert rows[1]["after"]["constraints"] == json.loads(clinic)
    cidr = '{"context": {"ip": [{"cidr": "10.0.0.0/8"}]}}'  # SQL cannot narrow reads by it
    for bad, why in (("{", "--constraints"), (cidr, "cidr")):
        proc = run(env, "keys", "create", "--tenant", "clinic", "--constraints", bad, ok=False)
        assert proc.returncode == 2 and why in proc.stderr + proc.stdout
