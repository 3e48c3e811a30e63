"""Template renders under a budget: each way a template could run long or build a huge value in
one step is stopped with OverBudget (docs/security.md, "Templates")."""

from __future__ import annotations

import pytest

from switchboard.templates import Budget, OverBudget, TemplateProblem, check, render, render_json

pytestmark = pytest.mark.security

EVENT = {"id": "e1", "type": "lead.created", "data": {"name": "Ana", "items": [{"sku": "A"}]}}
QUICK = Budget(max_output=10_000, timeout=0.2)


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
    ],
)
def test_a_render_that_emits_nothing_stops_at_the_deadline(template: str) -> None:
    with pytest.raises(OverBudget, match=r"longer than 0\.2 s"):
        render(template, EVENT, budget=QUICK)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}",
        "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'|indent(1000000000, true) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ 'x'.zfill(1000000000) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '%*d' % (999999999, 1) }}",
        "{{ '%999999999d'|format(1) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{0:>{1}}'.format(1, 999999999) }}",
        "{{ ('a' * 5000)|replace('', 'bbbb') }}",
        "{{ ('a' * 5000).replace('a', 'bbbb') }}",
        "{{ range(100000)|join('a' * 1000) }}",
        "{{ ('a' * 1000).join(range(100000)|map('string')) }}",
        "{{ 10 ** 10000000 }}",
        "{{ (10 ** 10000) * (10 ** 10000) }}",
        "{% for i in range(100000) %}abc{% endfor %}",
    ],
)
def test_a_step_that_builds_a_huge_value_is_refused(template: str) -> None:
    with pytest.raises(OverBudget):
        render(template, EVENT, budget=QUICK)


def test_ordinary_templates_render_as_before() -> None:
    body = render_json(
        '{"text": "novo lead {{ data.name }}", "skus": {{ data["items"]|map(attribute="sku")'
        '|list|tojson }}, "n": "{{ \'%05d\' % 42 }}", "w": "{{ \'{:>4}\'.format(\'a\') }}"}',
        EVENT,
    )
    assert body == {"text": "novo lead Ana", "skus": ["A"], "n": "00042", "w": "   a"}
    assert render("{% for x in data['items'] %}{{ loop.index }}{{ x.sku }}{% endfor %}", EVENT) == (
        "1A"
    )
    assert render("<b>{{ data.name }}</b>{{ '<i>' }}", EVENT, html=True) == "<b>Ana</b>&lt;i&gt;"


def test_output_at_the_cap_renders_and_one_more_character_does_not() -> None:
    budget = Budget(max_output=1000, timeout=5)
    assert len(render("{{ 'a' * 1000 }}", EVENT, budget=budget)) == 1000
    with pytest.raises(OverBudget, match="SWITCHBOARD_TEMPLATE_MAX_OUTPUT"):
        render("{{ 'a' * 1000 }}b", EVENT, budget=budget)


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{ data.__class__ }}", "attribute '__class__' is not allowed"),
        ("{{ data._private }}", "attribute '_private' is not allowed"),
        ("{% extends 'base' %}", "include, extends and import"),
        ("{% import 'm' as m %}", "include, extends and import"),
        ("x" * 40_000, "at most 32768"),
        ("{% for %}", "does not compile"),
    ],
)
def test_check_refuses_what_a_render_could_not_do(template: str, says: str) -> None:
    with pytest.raises(TemplateProblem, match=says):
        check(template)
