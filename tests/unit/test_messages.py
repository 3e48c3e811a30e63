"""Message templates as code: the document format, the locale chain, and the pt-BR templates
shipped in templates/ rendered with the seed catalogs' examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard import messages, templates

ROOT = Path(__file__).resolve().parents[2]


def template(*variants: dict[str, Any], **extra: Any) -> messages.MessageTemplate:
    return messages.parse_template({"name": "t", "variants": list(variants), **extra})


def test_the_locale_chain_falls_back_from_region_to_language_to_the_default() -> None:
    t = template(
        {"channel": "email", "locale": "pt-BR", "text": "Olá"},
        {"channel": "email", "locale": "en", "text": "Hi"},
        {"channel": "email", "locale": "es", "text": "Hola"},
        {"channel": "whatsapp", "locale": "pt-BR", "text": "Oi"},
        default_locale="pt-BR",
    )
    assert messages.locale_chain("es-MX", "pt-BR") == ["es-mx", "es", "pt-br"]

    def chosen(channel: str, wanted: str | None) -> str:
        v = messages.pick(t, channel, wanted)
        assert v is not None
        return v.locale

    assert chosen("email", "es-MX") == "es"
    assert chosen("email", "en-US") == "en"
    assert chosen("email", "pt") == "pt-BR"  # a language alone finds its region
    assert chosen("email", "fr") == "pt-BR"  # the default
    assert chosen("email", None) == "pt-BR"
    assert chosen("whatsapp", "en") == "pt-BR"
    assert messages.pick(t, "slack", "pt-BR") is None


def test_a_variant_replaces_the_destination_templates() -> None:
    t = template({"channel": "email", "locale": "pt-BR", "subject": "S", "text": "T"})
    config = {"host": "smtp", "subject_template": "old", "html_template": "old", "to": ["a@b.c"]}
    assert messages.config_for(t.variants[0], config) == {
        "host": "smtp",
        "to": ["a@b.c"],
        "subject_template": "S",
        "text_template": "T",
    }


@pytest.mark.security
@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"variants": []}, "/variants"),
        ({"variants": [{"channel": "email", "locale": "pt-BR", "text": "x"}] * 51}, "/variants"),
        ({"variants": [{"channel": "fax", "locale": "pt-BR", "text": "x"}]}, "/variants/0/channel"),
        ({"variants": [{"channel": "email", "locale": "x_y", "text": "x"}]}, "/variants/0/locale"),
        ({"variants": [{"channel": "email", "locale": "en", "body": "x"}]}, "/variants/0/body"),
        (
            {"variants": [{"channel": "email", "locale": "en", "text": "x" * 20001}]},
            "/variants/0/text",
        ),
        (
            {"variants": [{"channel": "email", "locale": "en", "text": "ok\n{% if %}"}]},
            "/variants/0/text",
        ),
        (
            {
                "variants": [
                    {"channel": "whatsapp", "locale": "en", "text": "x", "buttons": [{"id": "a"}]}
                ]
            },
            "/variants/0/buttons/0",
        ),
        (
            {"name": "Bad Name", "variants": [{"channel": "email", "locale": "en", "text": "x"}]},
            "/name",
        ),
    ],
)
def test_invalid_documents_name_the_path(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(messages.MessageError) as caught:
        messages.parse_template({"name": "t", **doc})
    assert path in {p for p, _ in caught.value.problems}, caught.value.problems


def test_a_compile_error_names_its_line() -> None:
    with pytest.raises(messages.MessageError) as caught:
        template({"channel": "email", "locale": "en", "text": "line one\nline two {% if %}"})
    assert "line 2" in caught.value.problems[0][1]


@pytest.mark.security
@pytest.mark.parametrize(
    "text", ["{{ data.__class__.__mro__ }}", "{{ ''.__class__.__subclasses__() }}"]
)
def test_the_sandbox_refuses_reaching_python_internals_when_saved(text: str) -> None:
    with pytest.raises(messages.MessageError, match="/variants/0/text"):
        template({"channel": "email", "locale": "en", "text": text})


def test_html_is_escaped_and_text_is_not() -> None:
    t = template(
        {"channel": "email", "locale": "en", "html": "<p>{{ data.n }}</p>", "text": "{{ data.n }}"}
    )
    rendered, errors = messages.render_variant(t.variants[0], {"data": {"n": "<b>Ana</b>"}})
    assert not errors
    assert rendered["html"] == "<p>&lt;b&gt;Ana&lt;/b&gt;</p>" and rendered["text"] == "<b>Ana</b>"


EXAMPLES = {  # template -> (catalog type file, extra event fields)
    "lead_welcome": "care-integrations/types/lead.created.yaml",
    "client_welcome": "care-integrations/types/client.registered.yaml",
    "feedback_request": "care-integrations/types/service.completed.yaml",
    "billing_pre_due": "comms-hub/types/billing.invoice.pre_due.yaml",
    "billing_overdue_7d": "comms-hub/types/billing.invoice.overdue.yaml",
    "onboarding_reminder": "essay-platform/types/usuario_cadastrado.yaml",
    "reward_offered": "clinic-loyalty/types/reward_offered.yaml",
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_shipped_pt_br_templates_render_the_seed_examples(name: str) -> None:
    doc = yaml.safe_load((ROOT / "templates" / f"{name}.yaml").read_text(encoding="utf-8"))
    t = messages.parse_template(doc, name)
    assert t.default_locale == "pt-BR"
    spec = yaml.safe_load((ROOT / "catalogs" / EXAMPLES[name]).read_text(encoding="utf-8"))
    data = spec["versions"][-1]["examples"][0]
    event = {"type": spec["name"], "data": data, "recipient": {"name": "Ana"}}
    for out in messages.preview(t, event, "pt-BR"):
        assert out["errors"] == [], (name, out)
        assert out["locale"] == "pt-BR"
        assert all(v for v in out["rendered"].values()), (name, out)


def test_every_file_in_templates_is_tested() -> None:
    assert {p.stem for p in (ROOT / "templates").glob("*.yaml")} == set(EXAMPLES)


def test_a_webhook_variant_is_a_json_body_in_place_of_the_transform() -> None:
    t = template(
        {"channel": "webhook", "locale": "pt-BR", "body": '{"texto": {{ data.name | tojson }}}'},
        {"channel": "webhook", "locale": "en", "body": '{"text": {{ data.name | tojson }}}'},
    )
    variant = messages.pick(t, "webhook", "en-US")
    assert variant is not None and variant.locale == "en"
    assert messages.config_for(variant, {"url": "https://x.example"}) == {
        "url": "https://x.example"
    }
    assert messages.body_of(variant) == '{"text": {{ data.name | tojson }}}'
    rendered, errors = messages.render_variant(variant, {"data": {"name": 'Ana "A"'}})
    assert errors == [] and rendered == {"body": {"text": 'Ana "A"'}}
    broken = template({"channel": "webhook", "locale": "en", "body": "not json {{ 1 }}"})
    _, errors = messages.render_variant(broken.variants[0], {"data": {}})
    assert len(errors) == 1 and errors[0].startswith("body: ")
    with pytest.raises(messages.MessageError) as exc:
        template({"channel": "webhook", "locale": "en", "text": "x"})
    assert exc.value.problems[0][0] == "/variants/0/text"


def test_recipient_and_unsubscribe_url_are_top_level_names_when_present() -> None:
    source = "{{ recipient.name }} {{ unsubscribe_url }} {{ event.unsubscribe_url }}"
    event = {"data": {}, "recipient": {"name": "Ana"}, "unsubscribe_url": "https://u/1"}
    assert templates.render(source, event) == "Ana https://u/1 https://u/1"
    # absent (a route without preferences): undefined, so it renders nothing, never "None"
    assert templates.render("[{{ unsubscribe_url }}]", {"data": {}}) == "[]"
