"""Inbound sources: their configuration and secrets. Typed endpoints (see `api/contract.py`),
described from these models. The public receiving URL is `api/webhooks.py`, the request log and
reprocessing `api/source_requests.py`, the mappings `api/mappings.py`."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    Body,
    Model,
    Params,
    decode_body,
    decode_path,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.models import InboundStatus
from switchboard.envelope import now_us
from switchboard.errors import BadRequest, Conflict, NotFound
from switchboard.sources import (
    MAX_SECRETS,
    NAME_RE,
    PRESET_NAMES,
    PresetName,
    mask_secret,
    new_secret_for,
    new_source_id,
    parse_source,
    public_preset_config,
)
from switchboard.sources import Source as SourceRecord
from switchboard.sources.inbound import Inbound
from switchboard.sources.mappings import (
    MappingLibrary,
    load_mapping_dir,
    shipped_dir,
)
from switchboard.store import Scope
from switchboard.store import inbound as sql

# (the sibling modules of the receiving URL, the request log and mappings share these)
__all__ = [
    "ID_PATTERN",
    "TAG",
    "InboundStatus",
    "SourceCounters",
    "SourcePath",
    "Text",
    "counters",
    "inbound",
    "own_source",
    "routes",
]

T = TypeVar("T")

TAG = "sources"
MAX_TEXT = 200  # a mapping's name or version, an event source: as the event envelope's ids
MAX_SECRET = 1024  # a provider's secret or token (Meta's app secret is 32 characters)
MAX_CIDR = 100  # an IPv6 network with its prefix is at most 49 characters
MAX_ALLOWLIST = 100
MAX_DEDUP_WINDOW = 90 * 86400
ID_PATTERN = r"^[A-Za-z0-9_\-]+(?!\n)$"  # source and request ids: no text a store cannot compare


Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
SourceName = Annotated[
    str,
    Meta(
        pattern=NAME_RE.pattern,
        description="Unique in the tenant: lowercase letters, digits, '.', '_' or '-' "
        "(at most 63).",
    ),
]
Preset = Annotated[
    PresetName,
    Meta(
        description="How requests are verified (docs/sources.md); `none` only on trusted networks."
    ),
]
PresetConfig = Annotated[
    dict[str, Any],
    Meta(
        description="Per preset: `hmac` the HMAC fields (header, algorithm, encoding, prefix, "
        'signed, timestamp_header); `token` `{"headers": [...]}`; `whatsapp_cloud` '
        "`verify_token` (8 to 200 printable ASCII characters, masked in answers); `twilio` `url`; "
        "`tolerance` (seconds, 1 to 86400, default 300) for `standard`, `svix` and `stripe`."
    ),
]
Secret = Annotated[str, Meta(min_length=1, max_length=MAX_SECRET)]
Secrets = Annotated[
    list[Secret],
    Meta(
        max_length=MAX_SECRETS,
        description="Up to two active secrets (the current one and the one being rotated out); "
        "omitted, one is generated and shown once in `secret`.",
    ),
]
IpAllowlist = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=MAX_CIDR)]],
    Meta(
        max_length=MAX_ALLOWLIST,
        description="CIDRs allowed to call the receiving URL (others get 403); empty: any address.",
    ),
]
MappingName = Annotated[Text, Meta(description="The mapping that turns payloads into events.")]
MappingVersion = Annotated[Text, Meta(description="The pinned version; null: the newest.")]
EventSource = Annotated[Text, Meta(description="The `source` of the events it produces.")]
DedupWindow = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_DEDUP_WINDOW,
        description="Seconds (at most 90 days); overrides the mapping's business-dedup windows, "
        "0 turns business dedup off.",
    ),
]


class SourceIn(Body):
    name: SourceName
    preset: Preset
    preset_config: PresetConfig | UnsetType | None = UNSET
    secrets: Secrets | UnsetType = UNSET
    ip_allowlist: IpAllowlist | UnsetType = UNSET
    mapping: MappingName | UnsetType | None = UNSET
    mapping_version: MappingVersion | UnsetType | None = UNSET
    event_source: Annotated[
        EventSource | UnsetType, Meta(description="Default: the mapping's name, else `webhook`.")
    ] = UNSET
    dedup_window: DedupWindow | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET


class SourcePatch(Body):
    """Only the fields sent change."""

    name: SourceName | UnsetType = UNSET
    preset: Preset | UnsetType = UNSET
    preset_config: PresetConfig | UnsetType | None = UNSET
    secrets: Secrets | UnsetType = UNSET
    ip_allowlist: IpAllowlist | UnsetType = UNSET
    mapping: MappingName | UnsetType | None = UNSET
    mapping_version: MappingVersion | UnsetType | None = UNSET
    event_source: EventSource | UnsetType = UNSET
    dedup_window: DedupWindow | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET


Count = Annotated[int, Meta(ge=0)]


class SourceCounters(Model):
    received: Annotated[Count, Meta(description="Every request that reached the URL.")]
    verified: Annotated[Count, Meta(description="Requests whose checks passed.")]
    failed_verification: Annotated[Count, Meta(description="Answered 401 or 403.")]
    events_produced: Annotated[Count, Meta(description="Events stored from this source.")]


class Source(Model):
    id: Annotated[str, Meta(examples=["src_…"])]
    name: str
    preset: PresetName
    preset_config: dict[str, Any]
    secrets: Annotated[list[str], Meta(description="Masked: only their kind and last characters.")]
    ip_allowlist: list[str]
    mapping: str | None
    mapping_version: str | None
    event_source: str
    dedup_window: int | None
    enabled: bool
    url: Annotated[str, Meta(description="The public receiving URL.")]
    counters: SourceCounters
    created_us: int
    updated_us: int
    secret: Annotated[str | UnsetType, Meta(description="A generated secret: shown once, now.")] = (
        UNSET
    )


class Sources(Model):
    data: list[Source]


class SourcePath(Params):
    source_id: Annotated[
        str, Meta(max_length=100, pattern=ID_PATTERN, description="The source id (src_…).")
    ]


class SourceSecretIn(Body):
    secret: (
        Annotated[Secret, Meta(description="The new secret; omitted: one is generated.")] | None
    ) = None


def source_view(s: SourceRecord, request: Request, secret: str | None = None) -> Source:
    return Source(
        id=s.id,
        name=s.name,
        preset=s.preset,  # type: ignore[arg-type]
        preset_config=public_preset_config(s.preset_config),
        secrets=[mask_secret(x) for x in s.secrets],
        ip_allowlist=list(s.ip_allowlist),
        mapping=s.mapping,
        mapping_version=s.mapping_version,
        event_source=s.event_source,
        dedup_window=s.dedup_window,
        enabled=s.enabled,
        url=f"{str(request.base_url).rstrip('/')}/v1/sources/{s.id}/webhook",
        counters=counters(s),
        created_us=s.created_us,
        updated_us=s.updated_us,
        secret=secret if secret else UNSET,
    )


def counters(s: SourceRecord) -> SourceCounters:
    c = s.counters
    return SourceCounters(
        received=c.received,
        verified=c.verified,
        failed_verification=c.failed_verification,
        events_produced=c.events_produced,
    )


def inbound(request: Request) -> Inbound:
    """The app's inbound pipeline, built on first use (shipped mappings are read once)."""
    state = request.app.state
    found: Inbound | None = getattr(state, "inbound", None)
    if found is None:
        folder = shipped_dir()
        library = MappingLibrary(load_mapping_dir(folder) if folder.is_dir() else {})
        found = state.inbound = Inbound(hub(request), library)
    return found


async def own_source(request: Request, scope: Scope) -> SourceRecord:
    p = await principal(request, scope)
    source_id = decode_path(request, SourcePath).source_id
    source = await sql.get_source(hub(request).store, source_id, p.tenant())
    if source is None:
        raise NotFound("no source with that id in this tenant")
    return source


async def _source_body(request: Request, model: type[T]) -> T:
    try:
        return await decode_body(request, model, 65536)
    except BadRequest as exc:
        if exc.details and exc.details[0]["path"] == "/preset":
            # the vocabulary, and that `none` is asked for on purpose, say more than the model's
            message = (
                f"must be one of {', '.join(PRESET_NAMES)} ('none' only for trusted internal "
                "networks)"
            )
            raise BadRequest(
                f"preset: {message}", details=[{"path": "/preset", "message": message}]
            ) from None
        raise


def _sent(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a body carries (an update changes only those), as `parse_source` reads them."""
    return {f: value for f in body.__struct_fields__ if (value := getattr(body, f)) is not UNSET}


async def _check_mapping(
    request: Request, tenant_id: str, fields: dict[str, Any], current: SourceRecord | None
) -> None:
    name = fields.get("mapping", current.mapping if current else None)
    version = fields.get("mapping_version", current.mapping_version if current else None)
    if name is None:
        if version is not None:
            raise BadRequest(
                "mapping_version needs a mapping name",
                details=[{"path": "/mapping", "message": "is required"}],
            )
        return
    if await inbound(request).mapping(tenant_id, name, version) is None:
        pin = f"{name}@{version}" if version else name
        raise BadRequest(
            f"mapping {pin} does not exist (see GET /v1/mappings)",
            details=[
                {
                    "path": "/mapping_version" if version else "/mapping",
                    "message": "unknown mapping",
                }
            ],
        )


@endpoint(
    "POST /v1/sources",
    "createSource",
    TAG,
    "Create a source",
    "A receiving endpoint for a provider's webhooks; a secret is generated (and shown once) "
    "if none is sent. The preset's config, the CIDRs and the mapping (which must exist) are "
    "checked by their own parsers (400 naming the field).",
    scope="manage",
    body=SourceIn,
    ok={201: (Source, "Created; `url` is the receiving URL.")},
    errors=(409,),
)
async def create_source(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    fields = parse_source(_sent(await _source_body(request, SourceIn)))
    tenant_id = p.tenant()
    await _check_mapping(request, tenant_id, fields, None)
    generated = None
    if "secrets" not in fields:
        generated = new_secret_for(fields["preset"])
        fields["secrets"] = (generated,) if generated else ()
    elif fields["preset"] != "none" and not fields["secrets"]:
        raise BadRequest(
            f"preset {fields['preset']!r} needs a secret",
            details=[{"path": "/secrets", "message": "empty"}],
        )
    stamp = now_us()
    source = SourceRecord(
        id=new_source_id(),
        tenant_id=tenant_id,
        created_us=stamp,
        updated_us=stamp,
        **{"event_source": fields.get("mapping") or "webhook", **fields},
    )
    if any(s.name == source.name for s in await sql.list_sources(h.store, tenant_id)):
        raise Conflict(f"a source named {source.name!r} exists in this tenant")
    await sql.insert_source(h.store, source)
    return respond(source_view(source, request, generated), 201)  # a generated secret: shown once


@endpoint(
    "GET /v1/sources",
    "listSources",
    TAG,
    "List sources",
    "Every source of the tenant, with counters.",
    scope="read",
    ok={200: (Sources, "OK")},
)
async def list_sources(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    found = await sql.list_sources(hub(request).store, p.tenant())
    return respond(Sources(data=[source_view(s, request) for s in found]))


@endpoint(
    "GET /v1/sources/{source_id}",
    "getSource",
    TAG,
    "Get a source",
    "One source, secrets masked, with counters.",
    scope="read",
    path=SourcePath,
    ok={200: (Source, "OK")},
    errors=(404,),
)
async def get_source(request: Request) -> Response:
    return respond(source_view(await own_source(request, Scope.READ), request))


@endpoint(
    "PATCH /v1/sources/{source_id}",
    "updateSource",
    TAG,
    "Change a source",
    "Only the fields sent change (e.g. pin another mapping_version).",
    scope="manage",
    path=SourcePath,
    body=SourcePatch,
    ok={200: (Source, "OK")},
    errors=(404, 409),
)
async def update_source(request: Request) -> Response:
    source = await own_source(request, Scope.MANAGE)
    fields = parse_source(_sent(await _source_body(request, SourcePatch)), source)
    await _check_mapping(request, source.tenant_id, fields, source)
    updated = replace(source, updated_us=now_us(), **fields)
    if updated.preset != "none" and not updated.secrets:
        raise BadRequest(
            f"preset {updated.preset!r} needs a secret",
            details=[{"path": "/secrets", "message": "empty"}],
        )
    if updated.name != source.name and any(
        s.name == updated.name and s.id != source.id
        for s in await sql.list_sources(hub(request).store, source.tenant_id)
    ):
        raise Conflict(
            f"a source named {updated.name!r} exists in this tenant",
            details=[{"path": "/name", "message": "the name of another source"}],
        )
    await sql.update_source(hub(request).store, updated)
    return respond(source_view(updated, request))


@endpoint(
    "DELETE /v1/sources/{source_id}",
    "deleteSource",
    TAG,
    "Delete a source",
    "Its receiving URL answers 404 afterwards.",
    scope="manage",
    path=SourcePath,
    ok={204: (None, "Done; no body.")},
    errors=(404,),
)
async def delete_source(request: Request) -> Response:
    source = await own_source(request, Scope.MANAGE)
    await sql.delete_source(hub(request).store, source.tenant_id, source.id)
    return Response(status_code=204)


@endpoint(
    "POST /v1/sources/{source_id}/secrets",
    "rotateSourceSecret",
    TAG,
    "Rotate a source's secret",
    "Adds a secret (given or generated) as the newest; the previous one stays valid until the "
    "next rotation. The body may be empty. A source with preset `none` takes no secret (400).",
    scope="manage",
    path=SourcePath,
    body=SourceSecretIn,
    body_required=False,
    ok={200: (Source, "Rotated; a generated secret is in `secret`.")},
    errors=(404,),
)
async def rotate_secret(request: Request) -> Response:
    """Add a secret (given, or generated) as the newest; the previous one stays active until
    the next rotation, so the provider can be switched over without losing requests."""
    source = await own_source(request, Scope.MANAGE)
    sent = request.headers.get("content-length", "0") != "0"
    secret = (await decode_body(request, SourceSecretIn, 65536)).secret if sent else None
    generated = None
    if secret is None:
        secret = generated = new_secret_for(source.preset)
        if secret is None:
            raise BadRequest(
                "preset 'none' takes no secret",
                details=[{"path": "/secret", "message": "the source's preset takes none"}],
            )
    secrets = (secret, *source.secrets)[:MAX_SECRETS]
    updated = replace(source, secrets=secrets, updated_us=now_us())
    await sql.update_source(hub(request).store, updated)
    return respond(source_view(updated, request, generated))


routes = routes_of(
    create_source,
    list_sources,
    get_source,
    update_source,
    delete_source,
    rotate_secret,
)
