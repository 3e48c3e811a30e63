"""The pure people decisions: catalog keys, profile and consent values taken from an event,
preferences, and signed unsubscribe tokens."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard import unsubscribe
from switchboard.catalog import CatalogError, event_type_to_dict, parse_event_type
from switchboard.config import Settings
from switchboard.errors import ConfigError
from switchboard.people import (
    PeopleSpec,
    Preference,
    consent_of,
    parse_people,
    people_to_dict,
    preference_allows,
    profile_of,
)

OPEN = [{"version": "1.0", "schema": {"type": "object"}}]


def test_people_keys_round_trip_through_the_stored_form() -> None:
    doc = {
        "name": "customer_created",
        "versions": OPEN,
        "profile": {"email": "data.email", "name": "data.nome", "plano": "data.plano"},
        "consent": {"purpose": "marketing", "field": "data.consentimento_marketing"},
        "critical": False,
        "category": "crm",
    }
    spec = parse_event_type(doc)
    assert spec.people is not None and spec.people.feeds
    again = parse_event_type(event_type_to_dict(spec))
    assert again == spec


def test_a_type_without_people_keys_stores_none() -> None:
    spec = parse_event_type({"name": "a.b", "versions": OPEN})
    assert spec.people is None and "profile" not in event_type_to_dict(spec)


@pytest.mark.security
@pytest.mark.parametrize(
    ("people", "problem"),
    [
        ({"profile": {"email": "__class__"}}, "profile.email"),
        ({"profile": {"email": "data." + "a" * 300}}, "profile.email"),
        ({"profile": {"Email!": "data.email"}}, "profile.Email!"),
        ({"profile": "data.email"}, "profile"),
        ({"consent": {"purpose": "marketing", "action": "grant", "field": "data.x"}}, "consent"),
        ({"consent": {"purpose": "x y", "action": "grant"}}, "consent.purpose"),
        ({"consent": {"purpose": "m", "action": "maybe"}}, "consent.action"),
        ({"consent": {"purpose": "m", "action": "grant", "ip": "request.ip"}}, "consent.ip"),
        ({"category": "Billing Stuff"}, "category"),
    ],
)
def test_people_keys_are_checked_and_name_the_field(people: dict[str, Any], problem: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_event_type({"name": "a.b", "versions": OPEN, **people})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_profile_takes_contact_fields_and_attributes_and_skips_absent_values() -> None:
    problems: list[str] = []
    spec = parse_people(
        {
            "profile": {
                "email": "data.email",
                "phone": "data.telefone",
                "locale": "context.locale",
                "plano": "data.plano",
                "missing": "data.nope",
                "nested": "data.obj",
            }
        },
        problems,
    )
    assert spec is not None and not problems
    doc = {
        "data": {"email": "a@b.c", "telefone": 5531999, "plano": "x" * 900, "obj": {"a": 1}},
        "context": {"locale": "pt-BR"},
    }
    fields, attributes = profile_of(spec, doc)
    assert fields == {"email": "a@b.c", "phone": "5531999", "locale": "pt-BR"}
    assert attributes == {"plano": "x" * 500}  # values are capped; objects are not copied


@pytest.mark.parametrize(
    ("value", "action"),
    [(True, "grant"), ("sim", "grant"), (False, "withdraw"), ("não", "withdraw"), (None, None)],
)
def test_a_consent_field_grants_or_withdraws_by_its_truth(value: Any, action: str | None) -> None:
    problems: list[str] = []
    spec = parse_people({"consent": {"purpose": "marketing", "field": "data.ok"}}, problems)
    assert spec is not None and not problems
    record = consent_of(spec, {"data": {"ok": value}}, 123)
    assert (record.action if record else None) == action
    if record is not None:
        assert record.purpose == "marketing" and record.at_us == 123


def test_most_specific_preference_decides() -> None:
    prefs = [
        Preference("*", "*", False),
        Preference("billing.*", "email", True),
        Preference("billing.invoice.overdue", "email", False),
    ]
    assert not preference_allows(prefs, "matter.updated", "email", None)
    assert preference_allows(prefs, "billing.invoice.pre_due", "email", None)
    assert not preference_allows(prefs, "billing.invoice.overdue", "email", None)
    assert not preference_allows(prefs, "billing.invoice.pre_due", "whatsapp", None)
    assert preference_allows([], "anything", "email", None)


def test_categories_and_critical_types() -> None:
    billing = PeopleSpec(category="billing")
    assert not preference_allows([Preference("billing", "email", False)], "x.y", "email", billing)
    critical = PeopleSpec(critical=True)
    assert preference_allows([Preference("*", "*", False)], "auth.reset", "email", critical)


def test_catalog_defaults_decide_when_the_recipient_has_no_preference() -> None:
    problems: list[str] = []
    spec = parse_people(
        {"category": "marketing", "preferences": {"*": False, "inbox": True}}, problems
    )
    assert problems == [] and spec is not None
    assert spec.defaults == (("*", False), ("inbox", True))
    assert not preference_allows([], "promo.sent", "email", spec)  # '*' default: off
    assert preference_allows([], "promo.sent", "inbox", spec)  # the exact channel wins
    # any matching preference of the recipient beats the default, even a category or a glob
    assert preference_allows([Preference("marketing", "email", True)], "promo.sent", "email", spec)
    assert preference_allows([Preference("promo.*", "*", True)], "promo.sent", "whatsapp", spec)
    assert not preference_allows([Preference("*", "inbox", False)], "promo.sent", "inbox", spec)
    # unrelated preferences leave the default in charge
    assert not preference_allows([Preference("billing", "*", True)], "promo.sent", "email", spec)
    # critical types ignore defaults as they ignore opt-outs
    critical = PeopleSpec(critical=True, defaults=(("*", False),))
    assert preference_allows([], "auth.reset", "email", critical)
    assert people_to_dict(spec)["preferences"] == {"*": False, "inbox": True}


@pytest.mark.security
@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"email": "yes"}, "preferences.email"),
        ({"Email!": True}, "preferences.Email!"),
        ({f"c{i}": True for i in range(21)}, "preferences:"),
        ({}, "preferences:"),
        (["email"], "preferences:"),
    ],
)
def test_bad_catalog_defaults_name_the_field(raw: object, where: str) -> None:
    problems: list[str] = []
    parse_people({"preferences": raw}, problems)
    assert any(p.startswith(where) for p in problems), problems


@pytest.mark.security
def test_unsubscribe_tokens_cannot_be_altered_or_reused_under_another_key() -> None:
    secret = "k" * 32
    good = unsubscribe.token(secret, "t1", "ana", "news.weekly", "email")
    assert unsubscribe.verify(secret, good) == ("t1", "ana", "news.weekly", "email")
    sig = good.split(".")[1]
    other = unsubscribe.token(secret, "t2", "bob", "*", "*").split(".")[0]
    assert unsubscribe.verify(secret, f"{other}.{sig}") is None
    assert unsubscribe.verify("j" * 32, good) is None
    assert unsubscribe.verify("", good) is None
    assert unsubscribe.verify(secret, good + "x" * 3000) is None


def test_unsubscribe_links_need_a_secret_of_32_characters() -> None:
    assert unsubscribe.link(Settings(), "t", "r", "a.b", "email") is None
    with pytest.raises(ConfigError, match="SWITCHBOARD_UNSUBSCRIBE_SECRET"):
        Settings(unsubscribe_secret="short")
    url = unsubscribe.link(
        Settings(unsubscribe_secret="k" * 32, public_url="https://hub.example/"), "t", "r", "a", "e"
    )
    assert url is not None and url.startswith("https://hub.example/v1/unsubscribe/")


def test_quiet_hours_across_midnight_end_the_next_morning_in_the_recipients_zone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from switchboard.people import parse_quiet_hours, quiet_until

    quiet = parse_quiet_hours({"start": "21:00", "end": "08:00", "timezone": "UTC"})
    sp = ZoneInfo("America/Sao_Paulo")

    def at(hour: int, minute: int = 0, day: int = 3) -> float:
        return datetime(2026, 12, day, hour, minute, tzinfo=sp).timestamp()

    assert quiet_until(quiet, at(23, 30), "America/Sao_Paulo") == at(8, 0, day=4)
    assert quiet_until(quiet, at(7, 59), "America/Sao_Paulo") == at(8, 0)
    assert quiet_until(quiet, at(8, 0), "America/Sao_Paulo") is None
    assert quiet_until(quiet, at(20, 59), "America/Sao_Paulo") is None
    # no (or a broken) zone on the profile: the route's
    assert quiet_until(quiet, at(20, 0), None) is not None  # 23:00 UTC
    assert quiet_until(quiet, at(20, 0), "Not/AZone") is not None
    with pytest.raises(ValueError, match="start"):
        parse_quiet_hours({"start": "9pm", "end": "08:00"})
