"""The API's largest id lists (10,000 delivery ids) reach both stores in one statement."""

from __future__ import annotations

import pytest

from tests.conftest import Api

MOST = 10_000


@pytest.mark.parametrize(
    ("path", "answer"),
    [("/v1/dlq/archive", "archived"), ("/v1/dlq/retry", "requeued")],
)
async def test_dlq_calls_take_the_documented_most_ids(api: Api, path: str, answer: str) -> None:
    _, key = await api.tenant()
    ids = [f"dlv_missing_{i:05d}" for i in range(MOST)]
    status, body, _ = await api.call("POST", path, key, json={"ids": ids})
    assert status == 200, body
    assert body == {answer: 0}


async def test_inbox_read_takes_the_documented_most_ids(api: Api) -> None:
    _, key = await api.tenant()
    ids = [f"dlv_missing_{i:05d}" for i in range(MOST)]
    status, body, _ = await api.call("POST", "/v1/inbox/patient-42/read", key, json={"ids": ids})
    assert status == 200, body
    assert body == {"marked": 0}


async def test_one_id_more_than_the_most_is_a_400(api: Api) -> None:
    _, key = await api.tenant()
    ids = [f"dlv_{i}" for i in range(MOST + 1)]
    status, body, _ = await api.call("POST", "/v1/dlq/archive", key, json={"ids": ids})
    assert status == 400, body
    assert [d["path"] for d in body["error"]["details"]] == ["/ids"], body
    assert "10000" in body["error"]["message"]
