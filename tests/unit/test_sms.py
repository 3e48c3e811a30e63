"""The SMS channel's pure parts: segment counts (GSM-7 and UCS-2), E.164 numbers, config checks,
and Twilio's request signature checked against Twilio's own library."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from switchboard.channels.registry import check_destination_config
from switchboard.channels.sms import PhoneProblem, count_segments, to_e164
from switchboard.errors import BadRequest
from switchboard.signing import SignatureError, twilio_signature, verify, verify_twilio
from switchboard.sources import build_preset


@pytest.mark.parametrize(
    ("text", "count", "encoding"),
    [
        ("", 0, "GSM-7"),
        ("a" * 160, 1, "GSM-7"),
        ("a" * 161, 2, "GSM-7"),
        ("a" * 306, 2, "GSM-7"),  # 153 per part
        ("a" * 307, 3, "GSM-7"),
        ("€" * 80, 1, "GSM-7"),  # an extension character takes two septets
        ("€" * 81, 2, "GSM-7"),
        ("a" * 152 + "€" + "a" * 10, 2, "GSM-7"),  # the escape pair is not split: 152 + 12
        ("a" * 152 + "€" * 77, 3, "GSM-7"),  # 152 | 76 pairs | 1 pair
        ("Ação", 1, "UCS-2"),  # ç and ã are not GSM-7 (Ç and à are)
        ("Ç à é ñ ü £ ¥ §", 1, "GSM-7"),
        ("á" * 70, 1, "UCS-2"),
        ("á" * 71, 2, "UCS-2"),
        ("á" * 134, 2, "UCS-2"),  # 67 per part
        ("á" * 135, 3, "UCS-2"),
        ("😀" * 35, 1, "UCS-2"),  # two UTF-16 code units each
        ("😀" * 36, 2, "UCS-2"),
        ("a" * 66 + "😀" * 2, 1, "UCS-2"),  # 70 units: one part
    ],
)
def test_segments(text: str, count: int, encoding: str) -> None:
    seg = count_segments(text)
    assert (seg.count, seg.encoding) == (count, encoding)


def test_a_surrogate_pair_is_not_split_across_parts() -> None:
    assert count_segments("a" * 68 + "😀").count == 1  # exactly 70 units
    # 71 units: parts of 67; the emoji would straddle units 67-68, so it starts the next part
    assert count_segments("a" * 66 + "😀" + "a" * 3).count == 2
    assert count_segments("a" * 66 + "😀" + "a" * 66).count == 3  # 66 | 2 + 65 | 1


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("+55 (11) 98765-4321", None, "+5511987654321"),
        ("(11) 98765-4321", "55", "+5511987654321"),
        ("011 98765-4321", "55", "+5511987654321"),  # the trunk 0
        ("5511987654321", "55", "+5511987654321"),  # already with the country code
        ("553198765432", "55", "+5531998765432"),  # WhatsApp's form, without the ninth digit
        ("+55 31 3222-1234", None, "+553132221234"),  # a landline keeps its 8 digits
        ("0044 20 7946 0018", "55", "+442079460018"),
        ("+1 415 555 0100", "55", "+14155550100"),
        ("(415) 555-0100", "1", "+14155550100"),
        ("14155550100", "1", "+14155550100"),
        ("55 99876-5432", "55", "+5555998765432"),  # DDD 55 (Rio Grande do Sul)
        (5511987654321, "55", "+5511987654321"),
    ],
)
def test_e164(raw: object, country: str | None, e164: str) -> None:
    assert to_e164(raw, country) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        None,
        True,
        "abc",
        "+55 11 9876-ABCD",
        "+1234567",
        "+1234567890123456",
        "١٢٣٤٥٦٧٨٩",
    ],
)
def test_bad_numbers(raw: object) -> None:
    with pytest.raises(PhoneProblem):
        to_e164(raw, "55")


def test_a_national_number_needs_a_country() -> None:
    with pytest.raises(PhoneProblem, match="country code"):
        to_e164("(11) 98765-4321")


ACCOUNT = "AC" + "0" * 32


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"provider": "twilio", "account_sid": "AC123"}, "config.account_sid"),
        (
            {
                "provider": "twilio",
                "account_sid": ACCOUNT,
                "from": "+15557122661",
                "messaging_service_sid": "MG" + "1" * 32,
                "to": "+15558675310",
                "template": "x",
            },
            "config.from",  # both
        ),
        (
            {
                "provider": "twilio",
                "account_sid": ACCOUNT,
                "messaging_service_sid": "MGxyz",
                "to": "+15558675310",
                "template": "x",
            },
            "config.messaging_service_sid",
        ),
        (
            {
                "provider": "twilio",
                "account_sid": ACCOUNT,
                "from": ["+1"],
                "to": "+15558675310",
                "template": "x",
            },
            "config.from",
        ),
        (
            {
                "provider": "twilio",
                "account_sid": ACCOUNT,
                "from": "+15557122661",
                "to": "+15558675310",
                "template": "x",
                "status_callback": "javascript:x",
            },
            "config.status_callback",
        ),
        (
            {
                "provider": "gateway",
                "url": "http://127.0.0.1/",
                "method": "DELETE",
                "to": "+15558675310",
                "template": "x",
            },
            "config.method",
        ),
        (
            {
                "provider": "gateway",
                "url": "http://127.0.0.1/",
                "auth_header": "Content-Type",
                "to": "+15558675310",
                "template": "x",
            },
            "config.auth_header",
        ),
        (
            {
                "provider": "gateway",
                "url": "http://127.0.0.1/",
                "auth_header": "bad header\n",
                "to": "+15558675310",
                "template": "x",
            },
            "config.auth_header",
        ),
        (
            {
                "provider": "gateway",
                "url": "http://127.0.0.1/",
                "to": "+15558675310",
                "template": "x",
                "default_country": "brasil",
            },
            "config.default_country",
        ),
        (
            {
                "provider": "gateway",
                "url": "http://127.0.0.1/",
                "to": "+15558675310",
                "template": "x",
                "body_template": 7,
            },
            "config.body_template",
        ),
    ],
)
def test_config_problems_name_the_field(config: dict[str, object], field: str) -> None:
    problems = check_destination_config("sms", config)
    assert any(p.startswith(field + ":") for p in problems), problems


@pytest.mark.parametrize(
    ("sender", "ok"),
    [
        ("+15557122661", True),
        ("Sorriso 1", True),  # an alphanumeric sender id: 1-11 letters, digits, spaces
        ("Clinica Sorriso", False),  # 15 characters
        ("12345", True),  # a short code
        ("(11) 98765-4321", False),  # a national number: no country code
        ("Clínica", False),  # not ASCII
    ],
)
def test_senders(sender: str, ok: bool) -> None:
    config = {
        "provider": "twilio",
        "account_sid": ACCOUNT,
        "from": sender,
        "to": "+15558675310",
        "template": "x",
    }
    problems = check_destination_config("sms", config)
    assert (problems == []) is ok, problems


def test_good_configs() -> None:
    assert (
        check_destination_config(
            "sms",
            {
                "provider": "twilio",
                "account_sid": ACCOUNT,
                "from": "Clinica",
                "to_path": "data.phone",
                "template": "Oi {{ data.name }}",
                "max_segments": 3,
            },
        )
        == []
    )
    assert (
        check_destination_config(
            "sms",
            {
                "provider": "gateway",
                "url": "https://sms.example.com/send",
                "to": "11987654321",
                "default_country": "55",
                "template": "Oi",
            },
        )
        == []
    )


# Twilio's signature: the URL Twilio called, then each POST parameter (sorted by name) as
# name + value, HMAC-SHA1 with the auth token, base64.
URL = "https://hub.example.com/v1/sources/src_abc/webhook?tenant=clinica"
PARAMS = {
    "MessageSid": "SM" + "a" * 32,
    "MessageStatus": "delivered",
    "To": "+5511987654321",
    "AccountSid": ACCOUNT,
    "Body": "Olá, çedilha & ümlaut = ok",
    "ErrorCode": "",
}
TOKEN = "12345"


def test_our_signature_is_twilios() -> None:
    theirs = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    assert twilio_signature(URL, list(PARAMS.items()), TOKEN) == theirs
    assert RequestValidator(TOKEN).validate(URL, PARAMS, theirs)


def test_verify_twilio_accepts_twilios_signature_and_refuses_the_rest() -> None:
    body = urlencode(PARAMS).encode()
    good = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    verify_twilio({"X-Twilio-Signature": good}, body, [TOKEN], URL)
    verify_twilio({"x-twilio-signature": good}, body, ["old-token", TOKEN], URL)  # rotation
    verify(build_preset("twilio", {}), {"X-Twilio-Signature": good}, body, [TOKEN], now=0, url=URL)
    cases = [
        ({}, body, [TOKEN], URL, "missing_header"),
        ({"X-Twilio-Signature": good}, body, ["other"], URL, "bad_signature"),
        ({"X-Twilio-Signature": good}, body, [TOKEN], URL + "&x=1", "bad_signature"),
        ({"X-Twilio-Signature": good}, body + b"&Extra=1", [TOKEN], URL, "bad_signature"),
        ({"X-Twilio-Signature": "%%%"}, body, [TOKEN], URL, "bad_format"),
        ({"X-Twilio-Signature": good}, b"\xff\xfe", [TOKEN], URL, "bad_format"),
        ({"X-Twilio-Signature": good}, body, [], URL, "no_secret"),
        ({"X-Twilio-Signature": good}, body, [TOKEN], "", "no_secret"),
    ]
    for headers, raw, secrets, url, reason in cases:
        with pytest.raises(SignatureError) as caught:
            verify_twilio(headers, raw, secrets, url)
        assert caught.value.reason == reason, (headers, raw, url)


@pytest.mark.security
def test_a_callback_with_a_flood_of_parameters_is_refused_before_hashing() -> None:
    body = "&".join(f"p{i}=x" for i in range(10_000)).encode()
    with pytest.raises(SignatureError) as caught:
        verify_twilio({"X-Twilio-Signature": "AAAA"}, body, [TOKEN], URL)
    assert caught.value.reason == "bad_format"


def test_the_preset_url_must_be_http() -> None:
    build_preset("twilio", {"url": "https://hub.example.com/sms"})
    with pytest.raises(BadRequest, match="preset_config/url"):
        build_preset("twilio", {"url": "ftp://x"})


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = [
    "provider",
    "to",
    "to_path",
    "default_country",
    "template",
    "max_segments",
    "account_sid",
    "from",
    "messaging_service_sid",
    "status_callback",
    "base_url",
    "url",
    "method",
    "auth_header",
    "body_template",
]


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=10),
    st.sampled_from(["twilio", "gateway", None]),
)
def test_any_config_gets_problems_naming_fields_never_an_exception(
    config: dict[str, object], provider: str | None
) -> None:
    if provider is not None:
        config = {**config, "provider": provider}
    problems = check_destination_config("sms", config)
    assert all(p.startswith("config.") for p in problems), problems
