"""Credential masking: at most the last 4 characters, signing secrets by kind only."""

from __future__ import annotations

import pytest

from switchboard.masking import mask_secret, mask_url, mask_value, restore_masked

pytestmark = pytest.mark.security


def test_values_show_at_most_their_last_four_characters() -> None:
    assert mask_value("0123456789abcdef") == "…cdef"
    assert mask_value("0123456789abcde") == "…"  # under 16: nothing
    assert mask_value("Bearer 0123456789abcdefXYZ1") == "Bearer …XYZ1"
    assert mask_value("Basic dXNlcjpwYXNz") == "Basic …"


def test_signing_secrets_show_only_their_kind() -> None:
    assert mask_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == "whsec_…"
    assert mask_secret("sbs_abcdefghijklmnopqrstuvwxyz") == "sbs_…"
    assert mask_secret("anything-else-0123456789") == "…"


def test_urls_lose_passwords_tokens_and_credential_query_values() -> None:
    assert (
        mask_url(
            "https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx",
            last_segment=True,
        )
        == "https://hooks.slack.com/services/T0001/B0002/…uvwx"
    )
    assert mask_url("https://u:pw@example.com/a") == "https://u:…@example.com/a"
    assert (
        mask_url("https://example.com/in?token=abc&page=2")
        == "https://example.com/in?token=…&page=2"
    )
    assert mask_url("https://example.com/hooks/a1b2c3d4e5f6g7h8i9j0") == (
        "https://example.com/hooks/…i9j0"
    )
    assert mask_url("https://example.com/hooks/orders") == "https://example.com/hooks/orders"


def test_a_masked_value_sent_back_keeps_the_stored_one() -> None:
    old = {"url": "https://x.example/a1b2c3d4e5f6g7h8i9j0", "headers": {"A": "0123456789abcdef"}}
    shown = {"url": mask_url(old["url"]), "headers": {"A": mask_value("0123456789abcdef")}}
    assert restore_masked(shown, old, shown) == old
    changed = {**shown, "headers": {"A": "new-value"}}
    assert restore_masked(changed, old, shown)["headers"] == {"A": "new-value"}
