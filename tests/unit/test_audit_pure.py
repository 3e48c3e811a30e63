"""The audit log's pure decisions: action names and masked documents."""

from __future__ import annotations

from switchboard.audit import action_name, mask_document


def test_action_names_say_resource_and_verb() -> None:
    assert action_name("POST", "/v1/keys") == "keys.create"
    assert action_name("DELETE", "/v1/keys/{key_id}") == "keys.delete"
    assert action_name("PATCH", "/v1/destinations/{ref}") == "destinations.update"
    assert action_name("PUT", "/v1/event-types/{name}") == "event-types.put"
    assert action_name("POST", "/v1/dlq/retry") == "dlq.retry"
    assert action_name("POST", "/v1/runs/{run_id}/cancel") == "runs.cancel"
    assert action_name("POST", "/v1/sources/{source_id}/secrets") == "sources.secrets"
    assert action_name("PUT", "/v1/recipients/{id:path}/preferences") == (
        "recipients.preferences.put"
    )
    assert action_name("PUT", "/v1/mappings/{name}/{version}") == "mappings.put"


def test_credentials_are_masked_wherever_they_sit() -> None:
    doc = {
        "id": "01HX",
        "key_id": "01HY",
        "prefix": "sb_abcdefgh",
        "key": "sb_abcdefghijklmnopqrstuvwxyz0123",
        "secrets": ["whsec_abcdefghijklmnopqrstuv"],
        "config": {
            "url": "https://hooks.example.com/x?token=abcdefghijklmnop1234",
            "headers": {"Authorization": "Bearer abcdefghijklmnopqrst", "X-Plain": "ok"},
            "password": "hunter2hunter2hunter2",
        },
        "nested": [{"api_token": 12345678901234567}],
        "enabled": True,
    }
    masked = mask_document(doc)
    text = str(masked)
    for secret in ("abcdefghijklmnopqrstuvwxyz", "whsec_abcdef", "abcdefghijklmnop1234"):
        assert secret not in text
    assert "hunter2" not in text and "12345678901234567" not in text
    assert masked["id"] == "01HX" and masked["key_id"] == "01HY"
    assert masked["prefix"] == "sb_abcdefgh"  # the shown prefix of a key is no secret
    assert masked["secrets"] == ["whsec_…"]
    assert masked["config"]["headers"]["X-Plain"] == "ok"
    assert masked["config"]["headers"]["Authorization"] == "Bearer …qrst"
    assert masked["enabled"] is True


def test_a_deep_document_is_cut_not_recursed_forever() -> None:
    doc: dict = {}
    node = doc
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    text = str(mask_document(doc))
    assert "…" in text
