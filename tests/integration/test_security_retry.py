"""A destination's retry_schedule is bounded where it enters: each item a finite, non-negative
delay of at most 7 days, at most 30 items (docs/security.md, "Retry schedules"). The model refuses
what a JSON Schema says (400); a duration string is read by its own parser (422)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.security


@pytest.mark.parametrize(
    ("schedule", "refusal", "path"),
    [
        ([0, 1e308], 400, "/retry_schedule/1"),
        ([None], 400, "/retry_schedule/0"),
        ([0, 5, [1]], 400, "/retry_schedule/2"),
        ([True], 400, "/retry_schedule/0"),
        ([0, "1" * 60_000], 400, "/retry_schedule/1"),
        (["0", "8d"], 422, "/retry_schedule/1"),
        ("0,5s,8d", 422, "/retry_schedule/2"),
        ([1] * 31, 400, "/retry_schedule"),
        (12, 400, "/retry_schedule"),
    ],
)
async def test_unbounded_retry_schedule_is_refused_naming_the_item(
    api: Api, schedule: Any, refusal: int, path: str
) -> None:
    _, key = await api.tenant()
    body = {"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
    status, answer, _ = await api.call(
        "POST", "/v1/destinations", key, {**body, "retry_schedule": schedule}
    )
    assert status == refusal, answer
    details = answer["error"]["details"]
    assert [d["path"] for d in details] == [path], details
    # an update is checked the same way, and nothing was stored by the refused create
    status, made, _ = await api.call("POST", "/v1/destinations", key, body)
    assert status == 201, made
    status, answer, _ = await api.call(
        "PATCH", f"/v1/destinations/{made['id']}", key, {"retry_schedule": schedule}
    )
    assert status == refusal, answer
    assert [d["path"] for d in answer["error"]["details"]] == [path]


async def test_a_schedule_within_bounds_is_kept(api: Api) -> None:
    _, key = await api.tenant()
    status, made, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {
            "name": "hook",
            "kind": "webhook",
            "config": {"url": "http://127.0.0.1:9/x"},
            "retry_schedule": [0, "7d", 30],
        },
    )
    assert status == 201, made
    assert made["retry_schedule"] == [0, 604800, 30]
