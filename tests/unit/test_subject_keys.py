"""The pure parts of PII sealing (store/subject_keys.py): whose key seals an event, the
normalized form a blind tag is taken of, and the rewriting of filters on sealed fields."""

from __future__ import annotations

import os

import pytest

from switchboard.envelope import Event
from switchboard.patterns import PatternError, compile_pattern, match, to_sql
from switchboard.pii import PiiClass
from switchboard.store.subject_keys import PREFIX, blind_spec, blind_tag, normalize, owner_of

pytestmark = pytest.mark.security

INDEX = os.urandom(32)
PII = {
    "data.email": frozenset({PiiClass.EMAIL}),
    "data.customer.phone": frozenset({PiiClass.PHONE}),
    "context.ip": frozenset({PiiClass.IP}),
}


def _event(subject: str | None) -> Event:
    return Event(
        tenant_id="t",
        id="e1",
        type="lead.created",
        version=None,
        time_us=0,
        received_us=0,
        source="api",
        subject=subject,
        actor_id=None,
        actor_type=None,
        trace_id="x",
        correlation_id=None,
        causation_id=None,
        context={},
        data={},
    )


def test_an_event_without_subject_has_a_key_of_its_own() -> None:
    assert owner_of(_event("patient-42")) == ("subject", "patient-42")
    assert owner_of(_event(None)) == ("event", '["api","e1"]')


def test_normalized_forms() -> None:
    assert normalize(" Joana@Exemplo.COM.br ", PiiClass.EMAIL) == "joana@exemplo.com.br"
    assert normalize("+55 (31) 99876-5432", PiiClass.PHONE) == "5531998765432"
    assert normalize("123.456.789-09", PiiClass.CPF) == "12345678909"
    assert normalize(" Joana Pereira ", PiiClass.NAME) == "Joana Pereira"


def test_equality_on_a_pii_path_gains_its_blind_tag_wherever_it_is_written() -> None:
    tag = blind_tag(INDEX, "email", "joana@exemplo.com.br")
    phone = blind_tag(INDEX, "customer.phone", "5531998765432")
    spec = {
        "data": {"email": ["Joana@Exemplo.com.br"], "plan": ["gold"]},
        "$or": [{"data.customer.phone": "+55 31 99876-5432"}, {"type": ["x"]}],
    }
    out = blind_spec(spec, PII, INDEX, keep_plain=True)
    assert out["data"]["email"] == ["Joana@Exemplo.com.br", {"prefix": f"{PREFIX}{tag}."}]
    assert out["data"]["plan"] == ["gold"]  # not PII: as written
    assert out["$or"][0]["data.customer.phone"] == [
        "+55 31 99876-5432",
        {"prefix": f"{PREFIX}{phone}."},
    ]
    stored_only = blind_spec(spec, PII, INDEX, keep_plain=False)
    assert stored_only["data"]["email"] == [{"prefix": f"{PREFIX}{tag}."}]
    # the rewritten pattern compiles, both stores can query it, and it matches the sealed text
    pattern = compile_pattern(stored_only, None)
    for dialect in ("sqlite", "postgres"):
        to_sql(pattern, dialect)
    sealed = {"data": {"email": f"{PREFIX}{tag}.AAAA", "plan": "gold"}, "type": "x"}
    assert match(pattern, sealed)
    other = blind_tag(os.urandom(32), "email", "joana@exemplo.com.br")  # another tenant's key
    assert not match(pattern, {**sealed, "data": {"email": f"{PREFIX}{other}.AAAA"}})


@pytest.mark.parametrize(
    "operator",
    [
        {"prefix": "jo"},
        {"suffix": ".br"},
        {"wildcard": "*@*"},
        {"equals-ignore-case": "joana@exemplo.com.br"},
        {"anything-but": "x"},
        {"numeric": [">", 1]},
        {"cidr": "10.0.0.0/8"},
    ],
)
def test_what_a_ciphertext_cannot_answer_is_refused_naming_the_field(
    operator: dict[str, object],
) -> None:
    with pytest.raises(PatternError, match=r"^data\.customer\.phone: "):
        blind_spec({"data": {"customer": {"phone": [operator]}}}, PII, INDEX, True)
    with pytest.raises(PatternError, match=r"^context\.ip: "):
        blind_spec({"$or": [{"context.ip": [operator]}]}, PII, INDEX, True)
    # the same operator on a field that is not PII is left to the filter language
    assert blind_spec({"data": {"plan": [operator]}}, PII, INDEX, True) == {
        "data": {"plan": [operator]}
    }


def test_exists_and_non_string_values_pass_as_written() -> None:
    spec = {"data": {"email": [{"exists": True}, None, 5]}}
    assert blind_spec(spec, PII, INDEX, keep_plain=False) == spec
