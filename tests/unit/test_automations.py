"""The automation document: parsing, validation with paths, limits; the interpreter through the
simulator on a fake clock."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from switchboard.automation_runs import Run, emitted_event, step_doc
from switchboard.automation_sim import read_stream, simulate
from switchboard.automations import (
    MAX_DEPTH,
    MAX_STEPS,
    AutomationError,
    correlation_key,
    format_duration,
    parse_automation,
    parse_duration,
)

FEEDBACK: dict[str, Any] = {
    "name": "service-feedback",
    "on": "service.completed",
    "filter": {"data": {"channel": ["whatsapp"]}},
    "steps": [
        {"wait": "2h"},
        {"send": {"destination": "wpp-feedback"}},
        {
            "id": "reply",
            "wait_for": {"type": "feedback.received", "match": "data.service_id", "within": "24h"},
            "on_event": "stop",
            "on_timeout": "continue",
        },
        {"send": {"destination": "email-feedback-reminder"}},
    ],
    "cancel_on": [{"type": "service.cancelled", "match": "data.service_id"}],
}


def problems(spec: Any) -> list[str]:
    with pytest.raises(AutomationError) as info:
        parse_automation(spec)
    return [p["path"] for p in info.value.problems]


def test_a_valid_document_compiles_to_a_flat_program() -> None:
    auto = parse_automation(FEEDBACK)
    assert [op.kind for op in auto.ops] == ["wait", "send", "wait_for", "send"]
    assert auto.ops[0].duration_us == 2 * 3_600_000_000
    assert auto.ops[2].id == "reply" and auto.ops[2].on_event == "stop"
    assert auto.ops[1].id == "steps.1"
    assert auto.cancel_on[0].paths == ("data.service_id",)


def test_if_compiles_to_a_branch_with_jumps() -> None:
    spec = {
        "name": "branchy",
        "on": "a.b",
        "steps": [
            {
                "if": {"trigger": {"data": {"vip": [True]}}},
                "then": [{"send": {"destination": "x"}}],
                "else": [{"send": {"destination": "y"}}, {"send": {"destination": "z"}}],
            },
            {"send": {"destination": "after"}},
        ],
    }
    ops = parse_automation(spec).ops
    assert [op.kind for op in ops] == ["branch", "send", "jump", "send", "send", "send"]
    assert ops[0].target == 3  # else starts after the jump
    assert ops[2].target == 5  # then-branch jumps past else


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"on": None}, "/on"),
        ({"on": ["BAD TYPE"]}, "/on/0"),
        ({"name": "Not Valid!"}, "/name"),
        ({"steps": []}, "/steps"),
        ({"steps": [{"wait": "2 hours"}]}, "/steps/0/wait"),
        ({"steps": [{"wait": "2h", "send": {"destination": "x"}}]}, "/steps/0"),
        ({"steps": [{"send": {"destination": "x", "colour": 1}}]}, "/steps/0/send/colour"),
        ({"steps": [{"wait_for": {"type": "a.*", "within": "1h"}}]}, "/steps/0/wait_for/type"),
        ({"steps": [{"wait_for": {"type": "a.b"}}]}, "/steps/0/wait_for/within"),
        (
            {"steps": [{"wait_for": {"type": "a.b", "within": "1h"}, "on_event": "maybe"}]},
            "/steps/0/on_event",
        ),
        ({"steps": [{"emit": {"type": "a.b", "data": "{{ oops"}}]}, "/steps/0/emit/data"),
        ({"filter": {"data": {"x": [{"bogus-operator": 1}]}}}, "/filter"),
        ({"cancel_on": [{"type": "a.b"}]}, "/cancel_on/0/match"),
        ({"dedupe": {"key": "data.x", "window": "forever"}}, "/dedupe/window"),
        ({"on": {"schedule": "0 9 * *"}}, "/on/schedule"),
        ({"on": {"schedule": "0 25 * * *"}}, "/on/schedule"),
        ({"on": {"schedule": "0 9 * * *", "timezone": "Mars/Olympus"}}, "/on/timezone"),
        ({"on": {"schedule": "0 9 * * *", "every": 2}}, "/on/every"),
        (
            {"steps": [{"digest": {"window": "1h", "max_events": 5000}}]},
            "/steps/0/digest/max_events",
        ),
        ({"steps": [{"digest": {"key": "data x", "window": "1h"}}]}, "/steps/0/digest/key"),
        (
            {"steps": [{"wait": "1h"}, {"digest": {"window": "1h"}}]},
            "/steps/1/digest",
        ),
        ({"debounce": {"key": "subject"}}, "/debounce/period"),
        ({"debounce": {"period": "1h", "max_wait": "10m"}}, "/debounce/max_wait"),
        ({"debounce": {"period": "1h"}, "dedupe": {"key": "subject", "window": "1h"}}, "/"),
        ({"requires_consent": ["Marketing!"]}, "/requires_consent/0"),
        ({"colour": "blue"}, "/colour"),
    ],
)
def test_every_problem_names_its_path(change: dict[str, Any], path: str) -> None:
    spec = {**copy.deepcopy(FEEDBACK), **change}
    assert path in problems(spec)


def test_durations() -> None:
    assert parse_duration("90s") == 90_000_000
    assert parse_duration("1h30m") == 5_400_000_000
    assert parse_duration("1w") == 7 * 86_400_000_000
    assert format_duration(2 * 3_600_000_000) == "2h00m"
    assert format_duration(26 * 3_600_000_000) == "1d2h00m"
    assert format_duration(45_000_000) == "45s"
    for bad in ("", "2", "h", "0s", "-1h", "1y", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.security
def test_durations_over_a_year_are_refused() -> None:
    for path, change in [
        ("/steps/0/wait", {"steps": [{"wait": "367d"}]}),
        ("/steps/0/wait", {"steps": [{"wait": "53w"}]}),
        ("/steps/0/wait", {"steps": [{"wait": 10**12}]}),
        (
            "/steps/0/wait_for/within",
            {"steps": [{"wait_for": {"type": "a.b", "within": "9999999h"}}]},
        ),
        ("/dedupe/window", {"dedupe": {"key": "subject", "window": "400d"}}),
    ]:
        assert path in problems({**FEEDBACK, **change})


@pytest.mark.security
def test_step_count_and_nesting_are_bounded() -> None:
    many = {**FEEDBACK, "steps": [{"send": {"destination": "x"}}] * (MAX_STEPS + 1)}
    assert "/steps" in problems(many)
    nested: dict[str, Any] = {"send": {"destination": "x"}}
    for _ in range(MAX_DEPTH + 2):
        nested = {"if": {"trigger": {"type": ["a.b"]}}, "then": [nested]}
    assert any("then" in p for p in problems({**FEEDBACK, "steps": [nested]}))
    # branches count too: a short document cannot hide many steps in its branches
    wide = {
        "if": {"trigger": {"type": ["a"]}},
        "then": [{"send": {"destination": "x"}}] * 30,
        "else": [{"send": {"destination": "x"}}] * 30,
    }
    assert problems({**FEEDBACK, "steps": [wide]})


@pytest.mark.security
def test_huge_documents_and_bad_templates_are_refused() -> None:
    big = {**FEEDBACK, "description": "x" * 70_000}
    assert problems(big) == ["/"]
    sandbox_escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    spec = {**FEEDBACK, "steps": [{"emit": {"type": "a.b", "data": sandbox_escape}}]}
    # refused when saved (templates.check reads no `_` attribute), so it never reaches a render
    assert problems(spec) == ["/steps/0/emit/data"]


def test_correlation_keys() -> None:
    doc = {"subject": "p-1", "data": {"service_id": 42, "org": {"id": "o"}}}
    assert correlation_key(doc, ("data.service_id",)) == "[42]"
    assert correlation_key(doc, ("data.service_id", "subject")) == '[42,"p-1"]'
    assert correlation_key(doc, ("data.missing",)) is None
    assert correlation_key(doc, ("data.org",)) is None  # objects do not correlate


def test_emitted_event_is_deterministic_and_caused_by_the_trigger() -> None:
    spec = {
        "name": "reply",
        "on": "whatsapp.inbound",
        "steps": [
            {
                "emit": {
                    "type": "feedback.received",
                    "data": '{"service_id": {{ data.service_id | tojson }}}',
                }
            }
        ],
    }
    op = parse_automation(spec).ops[0]
    trigger = {
        "id": "in-1",
        "type": "whatsapp.inbound",
        "trace_id": "tr-9",
        "subject": "p-1",
        "data": {"service_id": 7},
        "context": {},
    }
    run = Run("run-1", "t", "reply", 1, trigger, 3)
    first, second = emitted_event(run, op), emitted_event(run, op)
    assert first == second
    assert first["causation_id"] == "in-1" and first["trace_id"] == "tr-9"
    assert first["data"] == {"service_id": 7} and first["subject"] == "p-1"


@pytest.mark.security
def test_emit_chains_are_bounded() -> None:
    spec = {"name": "loop", "on": "a.b", "steps": [{"emit": {"type": "a.b"}}]}
    op = parse_automation(spec).ops[0]
    deep = {"id": "x", "type": "a.b", "data": {}, "context": {"automation_depth": 8}}
    from switchboard.automation_runs import StepFailed

    with pytest.raises(StepFailed, match="chain"):
        emitted_event(Run("r", "t", "loop", 1, deep, 1), op)


def test_step_doc_exposes_the_last_matched_event() -> None:
    run = Run(
        "r",
        "t",
        "n",
        1,
        {"id": "t"},
        1,
        matched={"reply": {"id": "m"}},
        history=[{"step": "reply", "matched": "m"}],
    )
    assert step_doc(run)["event"] == {"id": "m"}


async def timeline(spec: dict[str, Any], stream: str) -> list[str]:
    sim = await simulate([parse_automation(spec, version=1)], read_stream(stream))
    return sim.lines()


async def test_feedback_two_hours_later_then_a_reminder_without_reply() -> None:
    stream = (
        '{"at": "0", "type": "service.completed", "subject": "patient-42",'
        ' "data": {"service_id": 1, "channel": "whatsapp"}}\n'
    )
    assert await timeline(FEEDBACK, stream) == [
        "+2h00m send wpp-feedback to patient-42 (service-feedback)",
        "+1d2h00m send email-feedback-reminder to patient-42 (service-feedback)",
        "+1d2h00m completed service-feedback for patient-42",
    ]


async def test_a_reply_stops_the_reminder_even_one_that_came_early() -> None:
    stream = (
        '{"at": "0", "type": "service.completed", "subject": "p-1",'
        ' "data": {"service_id": 1, "channel": "whatsapp"}}\n'
        # arrives before the wait_for is even reached: the look-back sees it
        '{"at": "+1h", "type": "feedback.received", "id": "fb-1", "data": {"service_id": 1}}\n'
    )
    lines = await timeline(FEEDBACK, stream)
    assert lines == [
        "+2h00m send wpp-feedback to p-1 (service-feedback)",
        "+2h00m stopped service-feedback for p-1: feedback.received fb-1 arrived",
    ]


async def test_other_correlation_values_do_not_match_and_filter_applies() -> None:
    stream = (
        '{"at": "0", "type": "service.completed", "subject": "p-1",'
        ' "data": {"service_id": 1, "channel": "whatsapp"}}\n'
        '{"at": "0", "type": "service.completed", "subject": "p-2",'
        ' "data": {"service_id": 2, "channel": "email"}}\n'
        '{"at": "+3h", "type": "feedback.received", "data": {"service_id": 99}}\n'
    )
    lines = await timeline(FEEDBACK, stream)
    assert "completed service-feedback for p-1" in lines[-1]
    assert not any("p-2" in line for line in lines)


async def test_cancel_on_ends_the_run_during_its_wait() -> None:
    stream = (
        '{"at": "0", "type": "service.completed", "subject": "p-1",'
        ' "data": {"service_id": 1, "channel": "whatsapp"}}\n'
        '{"at": "+30m", "type": "service.cancelled", "id": "c-1", "data": {"service_id": 1}}\n'
    )
    assert await timeline(FEEDBACK, stream) == [
        "+0h30m cancelled service-feedback for p-1: cancel_on service.cancelled c-1",
    ]


async def test_dedupe_starts_one_run_per_key_per_window() -> None:
    spec = {
        "name": "welcome",
        "on": "client.registered",
        "dedupe": {"key": "subject", "window": "1d"},
        "steps": [{"send": {"destination": "email-welcome"}}],
    }
    stream = "\n".join(
        f'{{"at": "+{h}h", "type": "client.registered", "subject": "c-1"}}' for h in (1, 2)
    )
    lines = await timeline(spec, stream)
    assert lines.count("+1h00m send email-welcome to c-1 (welcome)") == 1
    assert any("dedupe" in line for line in lines)


async def test_if_branches_on_the_trigger() -> None:
    spec = {
        "name": "route",
        "on": "lead.created",
        "steps": [
            {
                "if": {"trigger": {"data": {"vip": [True]}}},
                "then": [{"send": {"destination": "slack-vip"}}],
                "else": [{"send": {"destination": "wpp-lead"}}],
            }
        ],
    }
    stream = (
        '{"type": "lead.created", "subject": "a", "data": {"vip": true}}\n'
        '{"type": "lead.created", "subject": "b", "data": {"vip": false}}\n'
    )
    lines = await timeline(spec, stream)
    assert "+0s send slack-vip to a (route)" in lines
    assert "+0s send wpp-lead to b (route)" in lines


async def test_wait_until_a_timestamp_of_the_trigger() -> None:
    spec = {
        "name": "expiry",
        "on": "reward_offered",
        "steps": [
            {"wait": {"until": "data.expires_at"}},
            {"emit": {"type": "reward_expired", "data": '{"reward_id": "{{ data.reward_id }}"}'}},
        ],
    }
    stream = (
        '{"type": "reward_offered", "subject": "c-1",'
        ' "data": {"reward_id": "r1", "expires_at": "2026-01-08T00:00:00Z"}}\n'
    )
    lines = await timeline(spec, stream)
    assert lines[0] == "+7d0h00m emit reward_expired for c-1 (expiry)"


def test_a_delivery_wait_names_an_earlier_send_and_a_status() -> None:
    ok = {
        "name": "esc",
        "on": "a.b",
        "steps": [
            {"id": "notice", "send": {"destination": "wpp"}},
            {
                "wait_for": {"delivery": "notice", "status": "read", "within": "4h"},
                "on_event": "stop",
            },
            {"send": {"destination": "supervisor"}},
        ],
    }
    op = parse_automation(ok).ops[1]
    assert (op.delivery_step, op.delivery_status, op.awaited) == ("notice", "read", None)
    bad = {
        **ok,
        "steps": [
            {"wait_for": {"delivery": "later", "status": "seen", "within": "4h"}},
            {"id": "later", "send": {"destination": "wpp"}},
        ],
    }
    assert problems(bad) == ["/steps/0/wait_for/delivery", "/steps/0/wait_for/status"]


async def test_an_unread_message_escalates_in_the_simulator() -> None:
    spec = {
        "name": "esc",
        "on": "a.b",
        "steps": [
            {"id": "notice", "send": {"destination": "wpp"}},
            {
                "wait_for": {"delivery": "notice", "status": "read", "within": "4h"},
                "on_event": "stop",
            },
            {"send": {"destination": "supervisor"}},
        ],
    }
    lines = await timeline(spec, '{"type": "a.b", "subject": "c-1"}\n')
    assert lines == [
        "+0s send wpp to c-1 (esc)",
        "+4h00m send supervisor to c-1 (esc)",
        "+4h00m completed esc for c-1",
    ]


@pytest.mark.security
def test_schedules_fire_at_most_every_five_minutes() -> None:
    """A tenant cannot make the hub fire a schedule every minute (or second: 6 fields)."""
    for cron in ("* * * * *", "*/2 * * * *", "0,1 * * * *", "* * * * * *", "0-59/4 9 * * *"):
        spec = {**copy.deepcopy(FEEDBACK), "on": {"schedule": cron}}
        assert "/on/schedule" in problems(spec), cron
    for cron in ("*/5 * * * *", "0 9 * * 1-5", "30 8 1 * *"):
        spec = {**copy.deepcopy(FEEDBACK), "on": {"schedule": cron}}
        assert parse_automation(spec).schedule is not None, cron


def test_a_schedule_fires_in_its_time_zone_and_skips_to_the_next_fire() -> None:
    from switchboard.automations import Schedule

    sp = Schedule("0 9 * * *", "America/Sao_Paulo")
    jan1 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    assert sp.next_after(jan1) == jan1 + 12 * 3_600_000_000  # 09:00 in São Paulo is 12:00 UTC
    # from a time long past (a hub that was down for days), the next fire is the one after it
    assert sp.next_after(jan1 + 3 * 86_400_000_000) == jan1 + (3 * 24 + 12) * 3_600_000_000


@pytest.mark.security
def test_long_keys_are_kept_as_their_hash() -> None:
    from switchboard.automations import MAX_KEY_CHARS, hold_key

    short = hold_key({"data": {"k": "abc"}}, "data.k")
    assert short == '"abc"'
    long = hold_key({"data": {"k": "x" * 100_000}}, "data.k")
    assert long is not None and long.startswith("sha256:") and len(long) <= MAX_KEY_CHARS
    assert hold_key({"data": {}}, "data.k") is None
    assert hold_key({"data": {"k": {"nested": 1}}}, "data.k") is None
    assert hold_key({}, None) == "*"


async def test_debounce_on_a_fake_clock_waits_for_quiet_but_never_past_max_wait() -> None:
    """A message every 5 minutes for 2 hours never leaves 10 quiet minutes: without max_wait
    the notice would never go out (starvation); with it, one goes out every 30 minutes."""
    from switchboard.automation_sim import read_stream, simulate

    auto = parse_automation(
        {
            "name": "notice",
            "on": "chat.message.received",
            "debounce": {"key": "data.thread", "period": "10m", "max_wait": "30m"},
            "steps": [{"send": {"destination": "inbox"}}],
        }
    )
    lines = [
        f'{{"at": "+{5 * n or 1}m", "type": "chat.message.received", "subject": "c", '
        f'"data": {{"thread": "t", "n": {n}}}}}'
        for n in range(25)
    ]
    sim = await simulate([auto], read_stream("\n".join(lines)))
    sends = [line.split(" ")[0] for line in sim.lines() if " send " in line]
    assert sends == ["+0h31m", "+1h05m", "+1h40m", "+2h10m"]  # then quiet after +2h00m


async def test_a_digest_on_a_fake_clock_collects_from_its_first_event() -> None:
    from switchboard.automation_sim import read_stream, simulate

    auto = parse_automation(
        {
            "name": "batch",
            "on": "reminder.due",
            "steps": [
                {"id": "d", "digest": {"key": "subject", "window": "1h"}},
                {"send": {"destination": "email"}},
            ],
        }
    )
    stream = "\n".join(
        f'{{"at": "+{m}m", "type": "reminder.due", "subject": "{who}", "data": {{}}}}'
        for m, who in [(1, "a"), (21, "b"), (51, "a"), (71, "a")]
    )
    sim = await simulate([auto], read_stream(stream))
    digests = [line for line in sim.lines() if "digest of" in line]
    assert digests == [
        "+1h01m digest of 2 events for a (batch)",
        "+1h21m digest of 1 event for b (batch)",
        "+2h11m digest of 1 event for a (batch)",
    ]


def planned_event(raw: dict[str, Any]) -> Any:
    from switchboard.envelope import build_event

    return build_event(raw, tenant_id="acme", default_source="app", received_us=1_000_000)


def test_the_planner_keys_wake_ups_exactly_as_the_events_document_would() -> None:
    from switchboard.automation_engine import Planner
    from switchboard.records import Wake

    spec = {
        "name": "w",
        "on": "a.start",
        "steps": [
            {"wait_for": {"type": "a.reply", "match": ["data.k", "subject"], "within": "1h"}},
            {"wait_for": {"type": "a.reply", "match": ["data.k", "subject"], "within": "1h"}},
        ],
        "cancel_on": [{"type": "a.reply", "match": "actor.id"}, {"type": "a.other", "match": "id"}],
    }
    planner = Planner([parse_automation(spec, name="w", version=1)])
    event = planned_event(
        {"type": "a.reply", "subject": "s-1", "actor": {"id": "u-1"}, "data": {"k": 1}}
    )
    doc = event.match_doc()
    # the two identical waits make one wake-up; `actor` is built by match_doc, `data` is not
    assert planner.plan(event) == [
        Wake("acme", "a.reply", str(correlation_key(doc, ("actor.id",)))),
        Wake("acme", "a.reply", str(correlation_key(doc, ("data.k", "subject")))),
    ]
    assert planner.plan(planned_event({"type": "a.unrelated", "data": {"k": 1}})) == []
    # a value missing at a path wakes nothing for that correlation
    assert planner.plan(planned_event({"type": "a.reply", "data": {}})) == []


def test_wake_ups_read_off_the_event_key_exactly_as_the_events_document_would() -> None:
    from switchboard.automation_engine import Planner
    from switchboard.records import Wake

    spec = {
        "name": "d",
        "on": "a.start",
        "steps": [
            {
                "wait_for": {
                    "type": "a.reply",
                    "match": ["data.order.id", "subject"],
                    "within": "1h",
                }
            },
            {"wait_for": {"type": "a.reply", "match": "context.thread", "within": "1h"}},
        ],
    }
    planner = Planner([parse_automation(spec, name="d", version=1)])
    for raw in (
        {"subject": "s-1", "data": {"order": {"id": 7}}, "context": {"thread": "t-9"}},
        {"subject": "s-1", "data": {"order": {"id": "é-x"}}, "context": {"thread": 1.5}},
        {"subject": "s-1", "data": {"order": {"id": [1]}}},  # a list matches nothing
        {"subject": "s-1", "data": {"order": {"id": {"a": 1}}}},  # nor does an object
        {"subject": "s-1", "data": {"order": 3}},  # the path ends at a scalar
        {"data": {"order": {"id": 7}}, "context": {"thread": True}},  # no subject
        {"subject": "s-1", "data": {}},
    ):
        event = planned_event({"type": "a.reply", **raw})
        doc = event.match_doc()
        expected = [
            Wake("acme", "a.reply", key)
            for paths in (("data.order.id", "subject"), ("context.thread",))
            if (key := correlation_key(doc, paths)) is not None
        ]
        assert planner.plan(event) == expected, raw


def test_the_planner_starts_runs_by_type_glob_and_filter() -> None:
    from switchboard.automation_engine import Planner
    from switchboard.store.automations import RunStart

    spec = {
        "name": "g",
        "on": ["lead.*"],
        "filter": {"data": {"channel": ["whatsapp"]}},
        "steps": [{"wait": "1h"}],
    }
    planner = Planner([parse_automation(spec, name="g", version=1)])
    started = planner.plan(planned_event({"type": "lead.created", "data": {"channel": "whatsapp"}}))
    assert [type(h) for h in started] == [RunStart]
    assert planner.plan(planned_event({"type": "lead.created", "data": {"channel": "email"}})) == []
    assert (
        planner.plan(planned_event({"type": "order.created", "data": {"channel": "whatsapp"}}))
        == []
    )
    # the hub's own events start only automations that name them, even through a glob
    star_spec = {"name": "s", "on": "*", "steps": [{"wait": "1h"}]}
    star = Planner([parse_automation(star_spec, name="s", version=1)])
    assert star.plan(planned_event({"type": "switchboard.schedule", "data": {}})) == []
