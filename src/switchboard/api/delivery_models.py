"""The request and response models of `api/deliveries.py`: destinations, routes, deliveries and
attempts, the dead-letter queue, replays and the inbox. The handlers decode with them and
`openapi.py` publishes them, so each limit below is both checked and documented here.

What a JSON Schema cannot say stays in the handlers, each answering 400/422 naming the field: a
destination's `config` per channel kind (`channels/registry.py`), the operator's maxima for
`timeout` and `concurrency`, duration strings of a retry schedule, filter patterns, templates,
time zones, and names of destinations, routes and purposes that must exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, UnsetType, field

from switchboard.api.common import MAX_TYPE_GLOBS
from switchboard.api.contract import Body, Model, Params
from switchboard.api.event_shapes import MAX_FILTER
from switchboard.api.models import DeliveryStatus as Status
from switchboard.envelope import TYPE_GLOB_RE
from switchboard.messages import NAME_RE
from switchboard.people import PURPOSE_RE
from switchboard.retry import MAX_DELAY, MAX_ITEMS
from switchboard.templates import MAX_SOURCE

MAX_NAME = 200  # a destination's or route's name, as the event envelope's ids
MAX_REF = 200  # an id or a name in a path or a query
MAX_RECIPIENT = 1000  # an inbox recipient: a user id, possibly read from the event's data
MAX_IDS = 10_000  # ids in one DLQ or inbox action
# A listing's query string, every parameter at its maximum, fits SWITCHBOARD_MAX_HEADER_BYTES'
# default (16 KiB) even with the filter's JSON punctuation percent-encoded.
MAX_TYPE_VALUES = 50  # `type` values in a listing's query (each may hold comma-separated globs)
MAX_TEMPLATE = MAX_SOURCE  # characters of a route transform: a template's own bound
MAX_NAMES = 100  # destinations or sources one route names; routes or destinations a replay names
MAX_ROUTES = 1000  # routes in one routes file
MAX_SECRET = 1000  # characters of one destination secret
# The maxima are chosen so that a body one item or character over any of them is still under
# its body limit: the answer names the field (400), never only the size (413).
ID = r"^[A-Za-z0-9_.:\-]{1,64}(?!\n)$"  # the ids the hub makes (UUIDv7, with a prefix)

Ref = Annotated[str, Meta(min_length=1, max_length=MAX_REF, description="An id or a name.")]
Time = Annotated[
    str,
    Meta(
        max_length=64,
        description="ISO 8601 with a timezone.",
        extra_json_schema={"format": "date-time"},
    ),
]
TypeGlob = Annotated[
    str,
    Meta(
        pattern=TYPE_GLOB_RE.pattern,
        description="An event type, or a glob of one with * and ?.",
    ),
]
Priority = Literal["high", "normal", "low"]

# --- destinations -------------------------------------------------------------------------------

# The channel kinds of `channels/registry.KINDS` (tests/unit/test_openapi.py compares them).
Kind = Literal["webhook", "slack", "discord", "email", "whatsapp", "inbox", "whatsapp_cloud", "sms"]

CONFIG = (
    "Per kind (docs/channels.md), checked by the channel: each problem is a 422 naming "
    "`config.<field>`. webhook: url, headers. slack: url, template, blocks_template. discord: "
    "url, template, username, avatar_url. email: host, port, security, validate_certs, username, "
    "from, reply_to, to | to_path, subject_template, text_template, html_template. whatsapp: "
    "provider (gateway | zapi), base_url, channel, instance, client_token, to | to_path, "
    "default_country, template, buttons. whatsapp_cloud: phone_number_id, base_url, api_version, "
    "to | to_path, default_country, message, template, wa_template, buttons, list, media. sms: "
    "provider (twilio | gateway), to | to_path, default_country, template, max_segments, "
    "account_sid, from | messaging_service_sid, status_callback, base_url, url, method, "
    "auth_header, body_template. inbox: recipient | recipient_path, title_template, "
    "body_template, link_template. URLs and hosts must pass the egress policy. Credentials are "
    "write-only: answers mask them, and a masked value sent back keeps the stored one."
)
Config = Annotated[dict[str, Any], Meta(description=CONFIG)]
Secrets = Annotated[
    list[Annotated[str, Meta(max_length=MAX_SECRET)]],
    Meta(
        max_length=2,
        description="Signing or provider secrets (two during rotation); masked in answers "
        "except the one generated on create.",
    ),
]
Timeout = Annotated[
    float,
    Meta(
        ge=0.1,
        description="Seconds per attempt (default 10), at most SWITCHBOARD_MAX_DESTINATION_TIMEOUT "
        "(30 unless the operator sets it; over it: 422).",
    ),
]
Concurrency = Annotated[
    int,
    Meta(
        ge=1,
        description="Most attempts in flight (default 10), at most "
        "SWITCHBOARD_MAX_DESTINATION_CONCURRENCY (100 unless the operator sets it; over it: 422).",
    ),
]
PerSecond = Annotated[float, Meta(ge=0.001, le=100_000)]
PerMinute = Annotated[float, Meta(ge=0.001, le=1_000_000)]
Delay = Annotated[float, Meta(ge=0, le=MAX_DELAY)] | Annotated[str, Meta(max_length=32)]
Schedule = (
    Annotated[str, Meta(max_length=1000)]
    | Annotated[list[Delay], Meta(max_length=MAX_ITEMS)]
    | None
)
SCHEDULE = (
    'Delays before attempts 1…n: "0,5s,5m,30m,2h" or a list of seconds and durations, at most '
    "30 items of at most 7 days each (null: the default schedule)."
)


class DestinationChange(Body):
    """A PATCH: only the fields sent change (re-enable with `enabled: true`)."""

    name: Annotated[str, Meta(min_length=1, max_length=MAX_NAME)] | UnsetType = UNSET
    kind: Kind | UnsetType = UNSET
    config: Config | UnsetType = UNSET
    secrets: Secrets | UnsetType | None = UNSET
    timeout: Timeout | UnsetType = UNSET
    concurrency: Concurrency | UnsetType = UNSET
    rate_per_second: PerSecond | UnsetType | None = UNSET
    rate_per_minute: PerMinute | UnsetType | None = UNSET
    retry_schedule: Annotated[Schedule, Meta(description=SCHEDULE)] | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class NewDestination(DestinationChange, kw_only=True):
    """A destination to create: a webhook without `secrets` is given a signing secret."""

    name: Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
    kind: Kind


class Destination(Model):
    id: Annotated[str, Meta(examples=["dst_0196…"])]
    name: str
    kind: str
    config: Annotated[dict[str, Any], Meta(description="Per kind; credentials masked.")]
    secrets: Annotated[list[str], Meta(description="Masked, except a generated one on create.")]
    timeout: float
    concurrency: int
    rate_per_second: float | None
    rate_per_minute: float | None
    retry_schedule: Annotated[
        list[float] | None, Meta(description="Seconds; null: the default schedule.")
    ]
    enabled: bool
    disabled_reason: str | None


class Destinations(Model):
    data: list[Destination]


class RefPath(Params):
    ref: Ref


# --- routes -------------------------------------------------------------------------------------

Names = Annotated[list[Annotated[str, Meta(max_length=MAX_NAME)]], Meta(max_length=MAX_NAMES)]
Globs = Annotated[list[Annotated[str, Meta(max_length=200)]], Meta(max_length=MAX_TYPE_GLOBS)]
Purposes = Annotated[list[Annotated[str, Meta(pattern=PURPOSE_RE.pattern)]], Meta(max_length=10)]


class RouteChange(Body):
    """A route's fields; a string stands for a list of one."""

    name: Annotated[str, Meta(min_length=1, max_length=MAX_NAME)] | UnsetType = UNSET
    types: (
        Annotated[str, Meta(max_length=200)]
        | Annotated[Globs, Meta(description='Type globs (default ["*"]).')]
        | UnsetType
    ) = UNSET
    sources: Annotated[str, Meta(max_length=MAX_NAME)] | Names | UnsetType = UNSET
    filter: (
        Annotated[dict[str, Any], Meta(description="A filter pattern (docs/filters.md).")]
        | UnsetType
        | None
    ) = UNSET
    destinations: (
        Annotated[str, Meta(max_length=MAX_NAME)]
        | Annotated[Names, Meta(description="Destination names or ids, at least one.")]
        | UnsetType
    ) = UNSET
    priority: Priority | UnsetType = UNSET
    transform: (
        Annotated[
            str,
            Meta(max_length=MAX_TEMPLATE, description="A template producing the delivered body."),
        ]
        | UnsetType
        | None
    ) = UNSET
    ordering_key: (
        Annotated[
            str, Meta(max_length=MAX_NAME, description="A dotted path, e.g. data.invoice_id.")
        ]
        | UnsetType
        | None
    ) = UNSET
    enabled: bool | UnsetType = UNSET
    requires_consent: (
        Annotated[str, Meta(pattern=PURPOSE_RE.pattern)]
        | Annotated[Purposes, Meta(description="Purposes the subject must have granted.")]
        | UnsetType
    ) = UNSET
    preferences: bool | UnsetType = UNSET
    to: (
        Annotated[
            Literal["recipient"], Meta(description="Address the subject's profile contact point.")
        ]
        | UnsetType
        | None
    ) = UNSET
    template: (
        Annotated[str, Meta(pattern=NAME_RE.pattern, description="A message template's name.")]
        | UnsetType
        | None
    ) = UNSET
    quiet_hours: (
        Annotated[
            dict[str, Any],
            Meta(description='{start: "21:00", end: "08:00", timezone: "America/Sao_Paulo"}.'),
        ]
        | UnsetType
        | None
    ) = UNSET


class NewRoute(RouteChange, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
    destinations: (
        Annotated[str, Meta(max_length=MAX_NAME)]
        | Annotated[Names, Meta(description="Destination names or ids, at least one.")]
    )


class RoutesIn(RouteChange):
    """One route (name and destinations required), or a routes file: `routes` alone."""

    routes: (
        Annotated[
            list[NewRoute],
            Meta(max_length=MAX_ROUTES, description="A routes file, applied at once."),
        ]
        | UnsetType
    ) = UNSET


class Route(Model):
    """A route as it was sent, with its id (and, on listings, the destination ids)."""

    id: Annotated[str, Meta(examples=["rte_0196…"])]
    name: str | UnsetType = UNSET
    types: str | list[str] | UnsetType = UNSET
    sources: str | list[str] | UnsetType = UNSET
    filter: dict[str, Any] | UnsetType | None = UNSET
    destinations: str | list[str] | UnsetType = UNSET
    priority: str | UnsetType = UNSET
    transform: str | UnsetType | None = UNSET
    ordering_key: str | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    requires_consent: str | list[str] | UnsetType = UNSET
    preferences: bool | UnsetType = UNSET
    to: str | UnsetType | None = UNSET
    template: str | UnsetType | None = UNSET
    quiet_hours: dict[str, Any] | UnsetType | None = UNSET
    destination_ids: list[str] | UnsetType = UNSET


class Routes(Model):
    data: list[Route]


# --- deliveries and attempts -------------------------------------------------------------------


class Delivery(Model):
    id: str
    event_seq: int
    destination_id: str
    route_id: str | None
    status: Status
    priority: Priority
    attempts: Annotated[int, Meta(ge=0)]
    next_attempt_at: Annotated[str | None, Meta(description="While pending or retrying.")]
    ordering_key: str | None
    replay_id: str | None
    provider_id: Annotated[
        str | None, Meta(description="The provider's message id (WhatsApp gateways, Twilio).")
    ]
    last_error: str | None
    created_at: str
    updated_at: str


class EventDelivery(Delivery):
    event_id: str


class EventSummary(Model):
    id: str
    type: str
    time: str
    subject: str | None


class ListedDelivery(Delivery):
    event: Annotated[EventSummary, Meta(description="A summary of the delivery's event.")]


class EventDeliveries(Model):
    data: list[EventDelivery]


class DeliveryPage(Model):
    data: list[ListedDelivery]
    next_cursor: Annotated[
        str | None, Meta(description="Pass as ?cursor= for the next page; null at the end.")
    ]


class Attempt(Model):
    n: Annotated[int, Meta(ge=1)]
    started_at: str
    latency_ms: float
    ok: bool
    status_code: int | None
    error: Annotated[str | None, Meta(examples=["timeout", "connection"])]
    message: str | None
    response: Annotated[str | None, Meta(description="The start of the receiver's answer.")]
    request_headers: dict[str, str] | None


class Attempts(Model):
    data: list[Attempt]


class DeliveryPath(Params):
    delivery_id: Annotated[str, Meta(max_length=MAX_REF, description="The delivery id.")]


class EventPath(Params):
    event_id: Annotated[str, Meta(max_length=MAX_REF, description="The event's id.")]


class EventQuery(Params):
    source: (
        Annotated[
            str,
            Meta(
                max_length=MAX_REF,
                description="The event's source, when one id exists under several.",
            ),
        ]
        | UnsetType
    ) = UNSET


# Query parameters left out are UNSET (not None): a query string has no null to send.
class DeadQuery(Params):
    """The filters of the dead-letter listing (and, with `status`, of every delivery)."""

    destination: (
        Annotated[str, Meta(max_length=MAX_REF, description="A destination id or name.")]
        | UnsetType
    ) = UNSET
    type: (
        Annotated[
            list[Annotated[str, Meta(max_length=200)]],
            Meta(
                max_length=MAX_TYPE_VALUES,
                description="Event types (repeat or comma-separate; globs such as lead.*): at "
                f"most {MAX_TYPE_VALUES} values of 200 characters, {MAX_TYPE_GLOBS} globs in all.",
            ),
        ]
        | UnsetType
    ) = UNSET
    from_: Annotated[Time, Meta(description="Updated at or after.")] | UnsetType = field(
        name="from", default=UNSET
    )
    to: Annotated[Time, Meta(description="Updated before.")] | UnsetType = UNSET
    filter: (
        Annotated[
            str,
            Meta(
                max_length=MAX_FILTER,
                description='A JSON filter pattern over the event, e.g. {"data.method":["pix"]} '
                "(docs/filters.md).",
                extra_json_schema={"contentMediaType": "application/json"},
            ),
        ]
        | UnsetType
    ) = UNSET
    replay: (
        Annotated[str, Meta(max_length=MAX_REF, description="Only deliveries a replay created.")]
        | UnsetType
    ) = UNSET
    cursor: (
        Annotated[
            str, Meta(max_length=MAX_REF, description="The next_cursor of the previous page.")
        ]
        | UnsetType
    ) = UNSET
    limit: Annotated[int, Meta(ge=1, le=1000, description="Page size (default 100).")] = 100


class DeliveryQuery(DeadQuery):
    status: Annotated[Status, Meta(description="Delivery status.")] | UnsetType = UNSET


# --- the dead-letter queue and the inbox -------------------------------------------------------


class Ids(Body):
    ids: Annotated[
        list[Annotated[str, Meta(pattern=ID)]],
        Meta(max_length=MAX_IDS, description=f"At most {MAX_IDS:,}."),
    ]


class Requeued(Model):
    requeued: Annotated[int, Meta(ge=0, description="Deliveries requeued.")]


class Archived(Model):
    archived: Annotated[int, Meta(ge=0, description="Deliveries archived.")]


class Marked(Model):
    marked: Annotated[int, Meta(ge=0, description="Items marked.")]


class DeadStats(Model):
    total: Annotated[int, Meta(ge=0)]
    by_type: dict[str, int]
    by_destination: dict[str, int]


class InboxItem(Model, kw_only=True):
    """An item the inbox channel delivered, as its templates rendered it."""

    id: str
    delivery_id: str
    event_id: str | None = None
    type: str | None = None
    title: str = ""
    body: str = ""
    link: str | None = None
    created_at: str
    read_at: str | None


class InboxItems(Model):
    data: list[InboxItem]


class InboxPath(Params):
    recipient: Annotated[
        str, Meta(max_length=MAX_RECIPIENT, description="The recipient (e.g. a user id).")
    ]


class InboxQuery(Params):
    unread: (
        Annotated[Literal["true", "false"], Meta(description="Only unread items.")] | UnsetType
    ) = UNSET
    limit: Annotated[int, Meta(ge=1, le=500, description="Page size (default 50).")] = 50


# --- replays ------------------------------------------------------------------------------------


class ReplayIn(Body):
    """Without routes or destinations: every enabled route. Destinations alone: sent directly,
    even to ones created after the events."""

    from_: Annotated[Time, Meta(description="Events at or after.")] | None = field(
        name="from", default=None
    )
    to: Annotated[Time, Meta(description="Events before.")] | None = None
    types: (
        TypeGlob
        | Annotated[
            list[TypeGlob],
            Meta(max_length=MAX_TYPE_GLOBS, description=f"At most {MAX_TYPE_GLOBS}."),
        ]
    ) = field(default_factory=list)
    filter: (
        Annotated[dict[str, Any], Meta(description="A filter pattern (docs/filters.md).")] | None
    ) = None
    routes: Annotated[
        list[Annotated[str, Meta(max_length=MAX_NAME)]],
        Meta(max_length=MAX_NAMES, description="Route names or ids."),
    ] = field(default_factory=list)
    destinations: Annotated[
        list[Annotated[str, Meta(max_length=MAX_NAME)]],
        Meta(max_length=MAX_NAMES, description="Destination names or ids."),
    ] = field(default_factory=list)
    dry_run: Annotated[
        bool, Meta(description="Answer with the counts and a sample instead of starting.")
    ] = False


class ReplayScope(Model):
    from_us: int | None
    to_us: int | None
    types: list[str]
    filter: dict[str, Any] | None
    route_ids: list[str]
    destination_ids: list[str]


class Replay(Model):
    id: Annotated[str, Meta(examples=["rpl_0196…"])]
    status: Literal["running", "done", "failed"]
    total: Annotated[int | None, Meta(description="Events the replay covers.")]
    scanned: Annotated[int, Meta(ge=0)]
    events: Annotated[int, Meta(ge=0, description="Events that produced deliveries.")]
    deliveries: Annotated[int, Meta(ge=0, description="Deliveries created.")]
    error: str | None
    spec: ReplayScope


class SampleDelivery(Model):
    event_id: str
    type: str
    time: str
    destination_id: str
    route_id: str | None


class ReplayDryRun(Model):
    dry_run: Literal[True]
    events: Annotated[int, Meta(ge=0)]
    deliveries: Annotated[int, Meta(ge=0)]
    sample: list[SampleDelivery]


class ReplayPath(Params):
    replay_id: Annotated[str, Meta(max_length=MAX_REF, description="The replay id.")]


# --- provider receipts --------------------------------------------------------------------------


class Receipt(Body):
    provider_id: Annotated[
        str, Meta(min_length=1, max_length=200, description="The provider's message id.")
    ]
    status: Literal["delivered", "read", "failed"]
    error: (
        Annotated[
            str,
            Meta(
                max_length=500,
                description="With failed: the provider's reason, kept as the "
                "delivery's last error.",
            ),
        ]
        | None
    ) = None


class Updated(Model):
    updated: Annotated[int, Meta(ge=0, description="Deliveries changed.")]
