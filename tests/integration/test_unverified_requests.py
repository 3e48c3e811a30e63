"""Unauthenticated storage growth: anyone can POST to a source URL, so requests that fail
verification keep only their headers, size, hash and first KiB, and a source keeps only its newest
few of them (SWITCHBOARD_SOURCE_UNVERIFIED_KEPT)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.config import Settings
from tests.conftest import Api, fresh_database, serve

pytestmark = pytest.mark.security

MB = 1_000_000


@pytest.fixture(params=["sqlite", "postgres"])
async def capped(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings.from_env(
            {"SWITCHBOARD_SOURCE_UNVERIFIED_KEPT": "3"},
            database_url=url,
            key_rate=0,
            tenant_rate=0,
        )
        async with serve(settings) as api:
            yield api


async def stored(api: Api, source_id: str) -> tuple[int, int]:
    """(rows, bytes of body and headers) the store holds for the source's request log."""
    [row] = await api.hub.store.fetch(
        "SELECT count(*), coalesce(sum(length(body)), 0) + coalesce(sum(length(CAST(headers AS "
        "TEXT))), 0) FROM inbound_requests WHERE source_id = ?",
        (source_id,),
    )
    return int(row[0]), int(row[1])


async def token_source(api: Api, key: str) -> dict[str, Any]:
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {"name": "partner", "preset": "wpp_gateway", "secrets": ["the-right-token-0123"]},
    )
    assert status == 201, source
    return source


async def post(api: Api, source: dict[str, Any], body: bytes, token: str) -> int:
    status, _, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=body,
        headers={"Content-Type": "application/json", "X-Gateway-Secret": token},
    )
    return status


async def test_ten_megabytes_of_bad_signatures_store_a_few_kilobytes(api: Api) -> None:
    _, key = await api.tenant()
    source = await token_source(api, key)
    body = b'{"pad": "' + b"x" * (MB - 11) + b'"}'
    assert len(body) == MB
    for n in range(10):
        assert await post(api, source, body, f"wrong-{n}") == 401
    rows, size = await stored(api, source["id"])
    assert rows == 10
    assert size < 10 * 2048, size  # was 10 MB: now at most 1 KiB of body and the headers each
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", key)
    entry = log["data"][0]
    assert entry["status"] == "failed_verification"
    assert entry["size"] == MB and entry["body_truncated"] is True
    assert entry["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["headers"]["x-gateway-secret"] == "…"  # the guess is masked too
    # a verified request still keeps its whole body
    assert await post(api, source, b'{"ok": true}', "the-right-token-0123") == 200
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests?verified=true", key)
    assert log["data"][0]["body"] == {"ok": True} and "body_truncated" not in log["data"][0]


async def test_a_source_keeps_only_its_newest_unverified_requests(capped: Api) -> None:
    api = capped
    _, key = await api.tenant()
    source = await token_source(api, key)
    assert await post(api, source, b'{"ok": 1}', "the-right-token-0123") == 200
    for n in range(8):
        assert await post(api, source, b'{"n": %d}' % n, f"wrong-{n}") == 401
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", key)
    failed = [r for r in log["data"] if r["status"] == "failed_verification"]
    assert [r["body"] for r in failed] == [{"n": 7}, {"n": 6}, {"n": 5}]  # the newest three
    assert [r["body"] for r in log["data"] if r["verified"]] == [{"ok": 1}]  # never dropped
    _, again, _ = await api.call("GET", f"/v1/sources/{source['id']}", key)
    assert again["counters"]["failed_verification"] == 8  # counted, all of them
