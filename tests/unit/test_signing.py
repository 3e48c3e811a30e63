"""Signing and verification, checked against the reference libraries (standardwebhooks, stripe)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from datetime import UTC, datetime

import pytest
import stripe
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from switchboard.signing import (
    PRESETS,
    HmacSpec,
    Preset,
    SignatureError,
    check_ip,
    decode_secret,
    generate_secret,
    mask_headers,
    sign_standard,
    standard_headers,
    traceparent,
    verify,
    verify_github,
    verify_hmac,
    verify_standard,
    verify_stripe,
    verify_token,
)

BODY = b'{"type":"lead.created","data":{"name":"Jo\xc3\xa3o"}}'
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def reason(exc: pytest.ExceptionInfo[SignatureError]) -> str:
    return exc.value.reason


# --- Standard Webhooks -----------------------------------------------------------------------


def test_generated_secret_is_whsec_base64_of_24_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == 24
    assert generate_secret() != secret
    Webhook(secret)  # the reference library accepts it


def test_decode_secret_matches_reference_library() -> None:
    assert decode_secret(SECRET) == Webhook(SECRET)._whsecret
    unprefixed = SECRET.removeprefix("whsec_")
    assert decode_secret(unprefixed) == Webhook(unprefixed)._whsecret
    with pytest.raises(ValueError):
        decode_secret("whsec_")
    with pytest.raises(ValueError):
        decode_secret("whsec_not base64!")


def test_our_signature_verifies_with_reference_library() -> None:
    now = int(time.time())
    headers = standard_headers("msg_2a", now, BODY, [SECRET])
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "lead.created",
        "data": {"name": "João"},
    }


def test_reference_library_signature_verifies_with_ours() -> None:
    now = int(time.time())
    sig = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(now, tz=UTC), BODY.decode())
    assert sig == sign_standard("msg_1", now, BODY, [SECRET])
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(now), "Webhook-Signature": sig}
    verify_standard(headers, BODY, [SECRET], now=now)


def test_svix_header_names_are_accepted() -> None:
    headers = {
        "svix-id": "msg_1",
        "svix-timestamp": "1700000000",
        "svix-signature": sign_standard("msg_1", 1700000000, BODY, [SECRET]),
    }
    verify_standard(headers, BODY, [SECRET], now=1700000000)


def test_rotation_signs_with_both_and_either_secret_verifies() -> None:
    now = int(time.time())
    headers = standard_headers("msg_1", now, BODY, [SECRET, OTHER])
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver that knows only one of the two secrets accepts it (reference library and ours).
    Webhook(SECRET).verify(BODY, headers)
    Webhook(OTHER).verify(BODY, headers)
    verify_standard(headers, BODY, [OTHER], now=now)
    # And we, holding old and new secret, accept a signature made with only one of them.
    old_only = standard_headers("msg_1", now, BODY, [OTHER])
    verify_standard(old_only, BODY, [SECRET, OTHER], now=now)


def test_wrong_secret_is_bad_signature() -> None:
    headers = standard_headers("msg_1", 1000, BODY, [SECRET])
    with pytest.raises(SignatureError) as exc:
        verify_standard(headers, BODY, [OTHER], now=1000)
    assert reason(exc) == "bad_signature"
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, standard_headers("m", int(time.time()), BODY, [SECRET]))


def test_tampered_body_or_id_is_bad_signature() -> None:
    headers = standard_headers("msg_1", 1000, BODY, [SECRET])
    with pytest.raises(SignatureError) as exc:
        verify_standard(headers, BODY + b" ", [SECRET], now=1000)
    assert reason(exc) == "bad_signature"
    with pytest.raises(SignatureError) as exc:
        verify_standard({**headers, "webhook-id": "msg_2"}, BODY, [SECRET], now=1000)
    assert reason(exc) == "bad_signature"


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_timestamp_outside_tolerance_is_stale(skew: int) -> None:
    headers = standard_headers("msg_1", 1000, BODY, [SECRET])
    with pytest.raises(SignatureError) as exc:
        verify_standard(headers, BODY, [SECRET], now=1000 - skew)
    assert reason(exc) == "stale_timestamp"


def test_timestamp_at_tolerance_edge_passes() -> None:
    headers = standard_headers("msg_1", 1000, BODY, [SECRET])
    verify_standard(headers, BODY, [SECRET], now=1300)
    verify_standard(headers, BODY, [SECRET], now=700)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header(missing: str) -> None:
    headers = standard_headers("msg_1", 1000, BODY, [SECRET])
    del headers[missing]
    with pytest.raises(SignatureError) as exc:
        verify_standard(headers, BODY, [SECRET], now=1000)
    assert reason(exc) == "missing_header"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("webhook-timestamp", "12.5"),
        ("webhook-timestamp", "²"),
        ("webhook-signature", "v2,abc"),
        ("webhook-signature", "v1"),
    ],
)
def test_malformed_headers_are_bad_format(field: str, value: str) -> None:
    headers = standard_headers("msg_1", 1000, BODY, [SECRET])
    headers[field] = value
    with pytest.raises(SignatureError) as exc:
        verify_standard(headers, BODY, [SECRET], now=1000)
    assert reason(exc) == "bad_format"


def test_no_secret() -> None:
    headers = standard_headers("msg_1", 1000, BODY, [SECRET])
    with pytest.raises(SignatureError) as exc:
        verify_standard(headers, BODY, [], now=1000)
    assert reason(exc) == "no_secret"
    with pytest.raises(ValueError):
        sign_standard("msg_1", 1000, BODY, [])


# --- Stripe ----------------------------------------------------------------------------------

STRIPE_SECRET = "whsec_test_1234567890abcdef"
STRIPE_BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{}}}'


def stripe_header(secret: str = STRIPE_SECRET, timestamp: int | None = None) -> dict[str, str]:
    value = stripe.WebhookSignature.generate_signature_header(
        STRIPE_BODY.decode(), secret, timestamp=timestamp
    )
    return {"Stripe-Signature": value}


def test_stripe_header_from_stripe_library_verifies() -> None:
    now = int(time.time())
    headers = stripe_header(timestamp=now)
    stripe.WebhookSignature.verify_header(STRIPE_BODY, headers["Stripe-Signature"], STRIPE_SECRET)
    verify_stripe(headers, STRIPE_BODY, [STRIPE_SECRET], now=now)
    verify(PRESETS["stripe"], headers, STRIPE_BODY, ["whsec_old", STRIPE_SECRET], now=now)


def test_stripe_header_with_two_signatures_during_rotation() -> None:
    # Stripe sends one v1 per active endpoint secret while the old one is being phased out.
    now = int(time.time())
    old = stripe_header("whsec_old", now)["Stripe-Signature"]
    new = stripe_header(STRIPE_SECRET, now)["Stripe-Signature"]
    combined = old + "," + new.split(",", 1)[1]
    stripe.WebhookSignature.verify_header(STRIPE_BODY, combined, STRIPE_SECRET)
    verify_stripe({"stripe-signature": combined}, STRIPE_BODY, [STRIPE_SECRET], now=now)
    verify_stripe({"stripe-signature": combined}, STRIPE_BODY, ["whsec_old"], now=now)


def test_stripe_failures() -> None:
    now = 1_700_000_000
    good = stripe_header(timestamp=now)
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        (stripe_header("whsec_wrong", now), STRIPE_BODY, now, "bad_signature"),
        (good, STRIPE_BODY + b"x", now, "bad_signature"),
        (good, STRIPE_BODY, now + 301, "stale_timestamp"),
        ({}, STRIPE_BODY, now, "missing_header"),
        ({"Stripe-Signature": f"t={now}"}, STRIPE_BODY, now, "bad_format"),
        ({"Stripe-Signature": "v1=abcd"}, STRIPE_BODY, now, "bad_format"),
    ]
    for headers, body, at, expected in cases:
        with pytest.raises(SignatureError) as exc:
            verify_stripe(headers, body, [STRIPE_SECRET], now=at)
        assert reason(exc) == expected, (headers, expected)


def test_stripe_library_rejects_what_we_reject_as_tampered() -> None:
    headers = stripe_header(timestamp=int(time.time()))
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            STRIPE_BODY + b"x", headers["Stripe-Signature"], STRIPE_SECRET
        )


# --- GitHub ----------------------------------------------------------------------------------


def github_header(secret: str, body: bytes) -> dict[str, str]:
    # As GitHub documents it: HMAC-SHA256 of the raw body, hex, "sha256=" prefix.
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": "sha256=" + digest}


def test_github_signature() -> None:
    verify_github(
        github_header("It's a Secret to Everybody", BODY), BODY, ["It's a Secret to Everybody"]
    )
    verify(PRESETS["github"], github_header("s2", BODY), BODY, ["s1", "s2"], now=0)


def test_github_documented_example() -> None:
    # The worked example in GitHub's "Validating webhook deliveries" documentation.
    headers = {
        "x-hub-signature-256": "sha256="
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    }
    verify_github(headers, b"Hello, World!", ["It's a Secret to Everybody"])


def test_github_failures() -> None:
    for headers, body, expected in [
        (github_header("wrong", BODY), BODY, "bad_signature"),
        (github_header("s", BODY), BODY + b"x", "bad_signature"),
        ({}, BODY, "missing_header"),
        ({"X-Hub-Signature-256": "sha1=abc"}, BODY, "bad_format"),
    ]:
        with pytest.raises(SignatureError) as exc:
            verify_github(headers, body, ["s"])
        assert reason(exc) == expected


# --- generic HMAC ----------------------------------------------------------------------------


def test_hmac_hex_body() -> None:
    spec = HmacSpec(header="X-Signature")
    digest = hmac.new(b"k", BODY, hashlib.sha256).hexdigest().upper()
    verify_hmac(spec, {"x-signature": digest}, BODY, ["k"], now=0)


def test_hmac_base64_with_prefix_sha512() -> None:
    spec = HmacSpec(header="X-Sig", algorithm="sha512", encoding="base64", prefix="sha512=")
    value = base64.b64encode(hmac.new(b"k", BODY, hashlib.sha512).digest()).decode()
    verify_hmac(spec, {"X-Sig": "sha512=" + value}, BODY, ["k"], now=0)
    with pytest.raises(SignatureError) as exc:
        verify_hmac(spec, {"X-Sig": value}, BODY, ["k"], now=0)
    assert reason(exc) == "bad_format"
    with pytest.raises(SignatureError) as exc:
        verify_hmac(spec, {"X-Sig": "sha512=" + value}, BODY, ["other"], now=0)
    assert reason(exc) == "bad_signature"


def test_hmac_timestamp_dot_body() -> None:
    spec = HmacSpec(header="X-Sig", signed="timestamp.body", timestamp_header="X-Timestamp")
    value = hmac.new(b"k", b"5000." + BODY, hashlib.sha256).hexdigest()
    headers = {"X-Sig": value, "X-Timestamp": "5000"}
    verify_hmac(spec, headers, BODY, ["old", "k"], now=5100)
    verify(Preset("hmac", hmac=spec), headers, BODY, ["k"], now=5000)
    with pytest.raises(SignatureError) as exc:
        verify_hmac(spec, headers, BODY, ["k"], now=5301)
    assert reason(exc) == "stale_timestamp"
    with pytest.raises(SignatureError) as exc:
        verify_hmac(spec, {**headers, "X-Timestamp": "5001"}, BODY, ["k"], now=5000)
    assert reason(exc) == "bad_signature"
    with pytest.raises(SignatureError) as exc:
        verify_hmac(spec, {"X-Sig": value}, BODY, ["k"], now=5000)
    assert reason(exc) == "missing_header"


def test_hmac_spec_and_preset_validation() -> None:
    with pytest.raises(ValueError):
        HmacSpec(header="X-Sig", signed="timestamp.body")
    with pytest.raises(ValueError):
        Preset("hmac")
    with pytest.raises(ValueError):
        Preset("token")


# --- static tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "header"),
    [
        ("asaas", "asaas-access-token"),
        ("asaas", "X-Asaas-Access-Token"),
        ("wpp_gateway", "X-Gateway-Secret"),
        ("zapi", "Client-Token"),
    ],
)
def test_token_presets(preset: str, header: str) -> None:
    verify(PRESETS[preset], {header: "tok-123"}, BODY, ["tok-old", "tok-123"], now=0)
    with pytest.raises(SignatureError) as exc:
        verify(PRESETS[preset], {header: "tok-999"}, BODY, ["tok-123"], now=0)
    assert reason(exc) == "bad_signature"
    with pytest.raises(SignatureError) as exc:
        verify(PRESETS[preset], {"Other": "tok-123"}, BODY, ["tok-123"], now=0)
    assert reason(exc) == "missing_header"
    with pytest.raises(SignatureError) as exc:
        verify(PRESETS[preset], {header: "tok-123"}, BODY, [], now=0)
    assert reason(exc) == "no_secret"


def test_token_accepts_non_ascii_without_crashing() -> None:
    with pytest.raises(SignatureError):
        verify_token(["client-token"], {"Client-Token": "sénha"}, ["senha"])


def test_none_preset_accepts_anything() -> None:
    verify(PRESETS["none"], {}, BODY, [], now=0)


# --- IP allowlist ----------------------------------------------------------------------------


def test_ip_allowlist() -> None:
    allow = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
    check_ip("10.1.2.3", allow)
    check_ip("192.168.1.7", allow)
    check_ip("2001:db8::1", allow)
    check_ip("::ffff:10.0.0.1", allow)  # IPv4-mapped, as a dual-stack socket reports it
    check_ip("8.8.8.8", [])  # empty list allows all
    for remote in ["11.0.0.1", "192.168.1.8", "2001:db9::1", "not-an-ip"]:
        with pytest.raises(SignatureError) as exc:
            check_ip(remote, allow)
        assert reason(exc) == "ip_not_allowed"
    with pytest.raises(ValueError):
        check_ip("10.0.0.1", ["10.0.0.0/33"])


# --- masking and trace context ---------------------------------------------------------------


def test_mask_headers() -> None:
    masked = mask_headers(
        {
            "Authorization": "Bearer sk_live_abcdef",
            "Cookie": "session=abcdefghij",
            "X-Gateway-Secret": "supersecretvalue",
            "asaas-access-token": "$aact_123456789",
            "Webhook-Signature": "v1,abcdefghijk",
            "X-Api-Key": "short",
            "Content-Type": "application/json",
            "Webhook-Id": "msg_1",
        }
    )
    assert masked == {
        "Authorization": "Bearer …",  # the scheme stays; 14 characters are too few to show any
        "Cookie": "…ghij",  # at most the last 4 characters of 16 or more
        "X-Gateway-Secret": "…alue",
        "asaas-access-token": "…",
        "Webhook-Signature": "…",
        "X-Api-Key": "…",
        "Content-Type": "application/json",
        "Webhook-Id": "msg_1",
    }


TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")


def test_traceparent_format_and_stability() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert traceparent(tid, "00f067aa0ba902b7") == f"00-{tid}-00f067aa0ba902b7-01"
    assert traceparent(tid.upper(), "00F067AA0BA902B7") == f"00-{tid}-00f067aa0ba902b7-01"
    uuid = "0190a6b2-7c3e-7b6a-9f3e-2d1c0b9a8f7e"
    assert traceparent(uuid).split("-")[1] == uuid.replace("-", "")
    for trace_id, span in [("order-42", None), ("", "dlv_1"), ("0" * 32, "0" * 16), (tid, None)]:
        value = traceparent(trace_id, span)
        assert TRACEPARENT.fullmatch(value), value
        assert value == traceparent(trace_id, span)  # stable across calls
        _, trace, parent, _ = value.split("-")
        assert trace != "0" * 32 and parent != "0" * 16
    assert traceparent("order-42") != traceparent("order-43")
    assert traceparent(tid, "dlv_1") != traceparent(tid, "dlv_2")
