"""An automation document's shape as models: the body of `PUT /v1/automations/{name}`, so the
OpenAPI document publishes it (step kinds as a union) and a document that breaks it is refused.

The document is a program: what a JSON Schema cannot say (a duration over zero, a cron that
fires at most every 5 minutes, a pattern or template that compiles, ids used once, a `digest`
only first, a `wait_for` naming an earlier send) stays in `automations.parse_automation`, which
names every problem's path. `check_document` runs both and answers one 422 listing them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, UnsetType, field

# (contract's reading of a msgspec error as a JSON pointer: to be public there)
from switchboard.api.contract import Body, convert
from switchboard.automations import (
    DEFAULT_DIGEST_EVENTS,
    MAX_CANCEL_ON,
    MAX_DIGEST_EVENTS,
    MAX_DURATION_US,
    MAX_MATCH_PATHS,
    MAX_STEPS,
    MAX_TRIGGER_TYPES,
    NAME_RE,
    Automation,
    AutomationError,
    parse_automation,
)
from switchboard.envelope import TYPE_GLOB_RE
from switchboard.errors import Unprocessable
from switchboard.people import PURPOSE_RE

__all__ = ["DOCUMENT_REF", "NAME_PATTERN", "AutomationDocument", "check_document"]

NAME_PATTERN = NAME_RE.pattern
DOCUMENT_REF = "#/components/schemas/AutomationDocument"
# the parser's duration grammar (`automations.parse_duration`) with ASCII digits, so that the
# published pattern and the check mean the same in every regex dialect
_DURATION = r"^([0-9]{1,6}w)?([0-9]{1,6}d)?([0-9]{1,7}h)?([0-9]{1,9}m)?([0-9]{1,9}s)?(?!\n)$"
_PATH = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+){0,7}(?!\n)$"  # automations.PATH_RE
MAX_TEXT = 200  # a destination name, a dotted path
# well inside the document's own limit, so a longer one is a 422 naming it rather than a 413
MAX_TEMPLATE = 16_384
MAX_DESCRIPTION = 4_096

Duration = (
    Annotated[
        str,
        Meta(
            min_length=1,
            max_length=45,
            pattern=_DURATION,
            description="`90s`, `30m`, `2h`, `1d12h`, `1w`: longer than zero, at most a year.",
        ),
    ]
    | Annotated[
        float, Meta(gt=0, le=MAX_DURATION_US / 1_000_000, description="Seconds, at most a year.")
    ]
)
DottedPath = Annotated[
    str,
    Meta(
        max_length=MAX_TEXT,
        pattern=_PATH,
        description="A dotted path into the event, such as `data.service_id` or `subject`.",
    ),
]
EventType = Annotated[
    str,
    Meta(pattern=r"^[a-z0-9_.\-]{1,200}(?!\n)$", description="An event type (no globs)."),
]
TypeGlob = Annotated[
    str, Meta(pattern=TYPE_GLOB_RE.pattern, description="An event type, or a glob of one.")
]
StepId = Annotated[
    str,
    Meta(pattern=NAME_PATTERN, description="The step's name, used once in the document."),
]
FilterPattern = Annotated[dict[str, Any], Meta(description="A filter pattern (docs/filters.md).")]
Template = Annotated[
    str,
    Meta(min_length=1, max_length=MAX_TEMPLATE, description="A Jinja2 template."),
]
Outcome = Annotated[
    Literal["continue", "stop"], Meta(description="What the run does next (default continue).")
]


class Schedule(Body):
    schedule: Annotated[
        str,
        Meta(
            max_length=100,
            description='Five-field cron, e.g. "0 9 * * *"; fires at most every 5 minutes.',
        ),
    ]
    timezone: Annotated[
        str, Meta(min_length=1, max_length=64, description="IANA time zone (default UTC).")
    ] = "UTC"


class WaitUntil(Body):
    until: Annotated[DottedPath, Meta(description="A timestamp in the trigger event.")]


class WaitFor(Body):
    """An event that matches the trigger's values at `match` (`type`, `match`, `filter`), or a
    send step's delivery reaching a status (`delivery`, `status`), within a time."""

    within: Duration
    type: EventType | UnsetType = UNSET
    match: DottedPath | Annotated[list[DottedPath], Meta(max_length=MAX_MATCH_PATHS)] = field(
        default_factory=list
    )
    filter: FilterPattern | None = None
    delivery: (
        Annotated[str, Meta(pattern=NAME_PATTERN, description="An earlier send step's id.")]
        | UnsetType
    ) = UNSET
    status: Literal["succeeded", "delivered", "read", "dead"] | UnsetType = UNSET


class Send(Body):
    destination: Annotated[
        str,
        Meta(min_length=1, max_length=MAX_TEXT, description="A destination name of the tenant."),
    ]
    transform: Template | None = None


class Emit(Body):
    type: EventType
    data: Template | dict[str, Any] = "{{ data | tojson }}"
    subject: Template | None = None


class Digest(Body):
    window: Duration
    key: DottedPath | None = None
    max_events: Annotated[int, Meta(ge=1, le=MAX_DIGEST_EVENTS)] = DEFAULT_DIGEST_EVENTS


class Step(Body):
    """One step: exactly one of wait, wait_for, send, emit, if (with then/else), digest."""

    id: StepId | UnsetType = UNSET
    wait: Duration | WaitUntil | UnsetType = UNSET
    wait_for: WaitFor | UnsetType = UNSET
    on_event: Outcome | UnsetType = UNSET
    on_timeout: Outcome | UnsetType = UNSET
    send: Send | UnsetType = UNSET
    emit: Emit | UnsetType = UNSET
    if_: FilterPattern | UnsetType = field(name="if", default=UNSET)
    then: Annotated[list[AnyStep], Meta(max_length=MAX_STEPS)] | UnsetType = UNSET
    else_: Annotated[list[AnyStep], Meta(max_length=MAX_STEPS)] | UnsetType | None = field(
        name="else", default=UNSET
    )
    digest: Annotated[Digest, Meta(description="Only as the first step.")] | UnsetType = UNSET


_KINDS = ("wait", "wait_for", "send", "emit", "if", "digest")
# what msgspec cannot decode (a union of objects told apart by which key they have) the
# schema still says; the parser refuses the same documents (`a step has exactly one of …`)
AnyStep = Annotated[
    Step,
    Meta(
        extra_json_schema={
            "oneOf": [{"required": [kind]} for kind in _KINDS],
            "dependentRequired": {
                "on_event": ["wait_for"],
                "on_timeout": ["wait_for"],
                "then": ["if"],
                "else": ["if"],
            },
        }
    ),
]


class CancelOn(Body):
    type: EventType
    match: DottedPath | Annotated[list[DottedPath], Meta(min_length=1, max_length=MAX_MATCH_PATHS)]


class Dedupe(Body):
    key: DottedPath
    window: Duration


class Debounce(Body):
    period: Duration
    key: DottedPath | None = None
    max_wait: Annotated[Duration, Meta(description="Default: ten periods.")] | None = None


class AutomationDocument(Body):
    """An automation (docs/automations.md): at most 64 KiB, 50 steps counted over every
    branch, `if` nested 4 deep, durations up to a year."""

    on: (
        Annotated[TypeGlob, Meta(description="The event type or glob that starts a run.")]
        | Annotated[list[TypeGlob], Meta(min_length=1, max_length=MAX_TRIGGER_TYPES)]
        | Schedule
    )
    steps: Annotated[list[AnyStep], Meta(min_length=1, max_length=MAX_STEPS)]
    name: Annotated[str, Meta(pattern=NAME_PATTERN, description="The URL's name.")] | UnsetType = (
        UNSET
    )
    filter: (
        Annotated[FilterPattern, Meta(description="Only triggers that match start a run.")]
        | UnsetType
        | None
    ) = UNSET
    cancel_on: (
        Annotated[
            list[CancelOn],
            Meta(
                max_length=MAX_CANCEL_ON,
                description="Events that end a run whose trigger has the same values at `match`.",
            ),
        ]
        | UnsetType
    ) = UNSET
    dedupe: (
        Annotated[Dedupe, Meta(description="One run per value of `key` within `window`.")]
        | UnsetType
        | None
    ) = UNSET
    debounce: (
        Annotated[
            Debounce, Meta(description="One run per key after `period` without a new trigger.")
        ]
        | UnsetType
        | None
    ) = UNSET
    requires_consent: (
        Annotated[
            list[
                Annotated[str, Meta(pattern=PURPOSE_RE.pattern, description="A declared purpose.")]
            ],
            Meta(
                max_length=8,
                description="Consent purposes the trigger's subject must have granted.",
            ),
        ]
        | UnsetType
    ) = UNSET
    description: Annotated[str, Meta(max_length=MAX_DESCRIPTION)] | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


def check_document(spec: Any, name: str) -> Automation:
    """The document compiled, or a 422 naming every problem: the parser's (it looks at the
    whole document), else the first way it breaks the model."""
    try:
        auto = parse_automation(spec, name=name)
    except AutomationError as exc:
        raise Unprocessable(f"invalid automation: {exc}", details=exc.problems) from None
    convert(spec, AutomationDocument, Unprocessable, "invalid automation: ")
    return auto
