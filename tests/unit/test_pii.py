"""The PII classes and their masks (pure)."""

from __future__ import annotations

import pytest

from switchboard.catalog import CatalogError, parse_event_type
from switchboard.pii import PiiClass, Redactor, classify, mask, mask_text


@pytest.mark.parametrize(
    ("value", "cls", "shown"),
    [
        ("joana.pereira@exemplo.com.br", PiiClass.EMAIL, "j***@e***.com.br"),
        ("+55 31 99876-5432", PiiClass.PHONE, "+55 31 9****-5432"),
        ("5531998765432", PiiClass.PHONE, "+55 31 9****-5432"),
        ("(31) 3333-4444", PiiClass.PHONE, "31 3***-4444"),
        ("123.456.789-09", PiiClass.CPF, "***.456.789-**"),
        ("12345678909", PiiClass.CPF, "***.456.789-**"),
        ("12.345.678/0001-95", PiiClass.CNPJ, "**.***.***/0001-**"),
        ("Joana da Silva Pereira", PiiClass.NAME, "J. D. S. P."),
        ("203.0.113.7", PiiClass.IP, "203.0.*.*"),
        ("2001:db8:85a3::8a2e:370:7334", PiiClass.IP, "2001:db8:…"),
        ("call me after lunch", PiiClass.FREE_TEXT, "[19 characters hidden]"),
        (5531998765432, PiiClass.PHONE, "+55 31 9****-5432"),
        ({"street": "Rua A"}, PiiClass.FREE_TEXT, "[hidden]"),
        (None, PiiClass.EMAIL, None),
    ],
)
def test_each_class_masks_its_values(value: object, cls: PiiClass, shown: object) -> None:
    assert mask(value, cls) == shown


def test_a_value_that_does_not_fit_its_class_shows_nothing_of_itself() -> None:
    assert mask("not-a-cpf", PiiClass.CPF) == "[9 characters hidden]"
    assert mask("nobody", PiiClass.EMAIL) == "[6 characters hidden]"


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("email", PiiClass.EMAIL),
        ("customerEmail", PiiClass.EMAIL),
        ("customer.email", PiiClass.EMAIL),
        ("phone_raw", PiiClass.PHONE),
        ("businessPhone", PiiClass.PHONE),
        ("from", PiiClass.PHONE),
        ("cpf", PiiClass.CPF),
        ("sender_name", PiiClass.NAME),
        ("ip", PiiClass.IP),
        ("pix_key", PiiClass.FREE_TEXT),
        ("message_text", PiiClass.FREE_TEXT),
        ("zipcode", PiiClass.FREE_TEXT),
    ],
)
def test_a_path_is_classified_by_its_last_segment(path: str, cls: PiiClass) -> None:
    assert classify(path) == cls


def test_free_text_detectors_leave_ids_and_times_alone() -> None:
    text = (
        "lead 0190a1b2-1234-7abc-8def-123456789012 at 2026-12-03T16:06:07Z (1700000000000): "
        "joana@exemplo.com, +55 31 99876-5432, cpf 123.456.789-09, cnpj 12.345.678/0001-95"
    )
    assert mask_text(text) == (
        "lead 0190a1b2-1234-7abc-8def-123456789012 at 2026-12-03T16:06:07Z (1700000000000): "
        "j***@e***.com, +55 31 9****-5432, cpf ***.456.789-**, cnpj **.***.***/0001-**"
    )


def test_the_redactor_masks_data_paths_and_then_the_values_it_met_anywhere() -> None:
    r = Redactor()
    classes = {"name": PiiClass.NAME, "items.note": PiiClass.FREE_TEXT}
    data = {"name": "Joana Pereira", "items": [{"note": "gate code 4411"}], "plan": "gold"}
    masked = r.data(data, classes)
    assert masked == {
        "name": "J. P.",
        "items": [{"note": "[14 characters hidden]"}],
        "plan": "gold",
    }
    assert data["name"] == "Joana Pereira"  # the original is not changed
    assert r.strings({"body": "Hello Joana Pereira, gate code 4411"}) == {
        "body": "Hello J. P., [14 characters hidden]"
    }


def test_the_catalog_names_classes_and_refuses_unknown_ones() -> None:
    doc = {
        "name": "lead.created",
        "pii": ["document", "email"],
        "pii_classes": {"document": "cpf"},
        "versions": [{"version": "1.0", "schema": {"type": "object"}}],
    }
    spec = parse_event_type(doc, where="t")
    assert spec.pii_fields() == {"document": PiiClass.CPF, "email": PiiClass.EMAIL}
    with pytest.raises(CatalogError, match=r"pii_classes.document: 'rg' is not a PII class"):
        parse_event_type({**doc, "pii_classes": {"document": "rg"}}, where="t")
    with pytest.raises(CatalogError, match=r"pii_classes.phone: not one of the type's pii"):
        parse_event_type({**doc, "pii_classes": {"phone": "phone"}}, where="t")


def test_known_values_are_replaced_longest_first_in_one_pass() -> None:
    known = {"Joana": "J.", "joana@exemplo.com": "j***@e***.com", "+55 31 99876-5432": "P"}
    text = "Joana <joana@exemplo.com> +55 31 99876-5432, Joana again; +55 31 9"
    assert mask_text(text, known) == "J. <j***@e***.com> P, J. again; +55 31 9"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("123.456.789-09", "***.456.789-**"),
        ("12.345.678/0001-95", "**.***.***/0001-**"),
        ("+55 31 99876-5432", "+55 31 9****-5432"),
        ("a@b.co", "a***@b***.co"),
    ],
)
def test_each_detector_finds_a_value_standing_alone(text: str, shown: str) -> None:
    assert mask_text(text) == shown
