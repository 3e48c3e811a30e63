"""Inbound sources: their configuration, the public receiving URL, the request log, reprocessing,
and the mappings they can pin."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from switchboard.api.common import (
    JSONResponse,
    hub,
    principal,
    query_choice,
    query_int,
    read_body,
    read_json,
    within,
)
from switchboard.api.models import INBOUND_STATUSES
from switchboard.envelope import EnvelopeError, now_us, parse_time
from switchboard.errors import BadRequest, Conflict, NotFound
from switchboard.hub import Hub
from switchboard.sources import MAX_SECRETS, Source, new_secret_for, new_source_id, parse_source
from switchboard.sources.inbound import Inbound
from switchboard.sources.mappings import (
    MappingError,
    MappingLibrary,
    load_mapping_dir,
    parse_mapping,
    shipped_dir,
)
from switchboard.sources.whatsapp_cloud import HandshakeRefused, answer_handshake
from switchboard.store import Scope
from switchboard.store import inbound as sql

__all__ = ["inbound", "routes"]


def inbound(request: Request) -> Inbound:
    """The app's inbound pipeline, built on first use (shipped mappings are read once)."""
    state = request.app.state
    found: Inbound | None = getattr(state, "inbound", None)
    if found is None:
        folder = shipped_dir()
        library = MappingLibrary(load_mapping_dir(folder) if folder.is_dir() else {})
        found = state.inbound = Inbound(hub(request), library)
    return found


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _own_source(request: Request, scope: Scope) -> Source:
    p = await principal(request, scope)
    source = await sql.get_source(hub(request).store, request.path_params["source_id"], p.tenant())
    if source is None:
        raise NotFound("no source with that id in this tenant")
    return source


async def _check_mapping(
    request: Request, tenant_id: str, fields: dict[str, Any], current: Source | None
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


async def create_source(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    fields = parse_source(await read_json(request, 65536))
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
    source = Source(
        id=new_source_id(),
        tenant_id=tenant_id,
        created_us=stamp,
        updated_us=stamp,
        **{"event_source": fields.get("mapping") or "webhook", **fields},
    )
    if any(s.name == source.name for s in await sql.list_sources(h.store, tenant_id)):
        raise Conflict(f"a source named {source.name!r} exists in this tenant")
    await sql.insert_source(h.store, source)
    body = source.public(_base_url(request))
    if generated:
        body["secret"] = generated  # shown once, like an API key
    return JSONResponse(body, status_code=201)


async def list_sources(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    found = await sql.list_sources(hub(request).store, p.tenant())
    return JSONResponse({"data": [s.public(_base_url(request)) for s in found]})


async def get_source(request: Request) -> Response:
    source = await _own_source(request, Scope.READ)
    return JSONResponse(source.public(_base_url(request)))


async def update_source(request: Request) -> Response:
    source = await _own_source(request, Scope.MANAGE)
    fields = parse_source(await read_json(request, 65536), source)
    await _check_mapping(request, source.tenant_id, fields, source)
    updated = replace(source, updated_us=now_us(), **fields)
    if updated.preset != "none" and not updated.secrets:
        raise BadRequest(
            f"preset {updated.preset!r} needs a secret",
            details=[{"path": "/secrets", "message": "empty"}],
        )
    await sql.update_source(hub(request).store, updated)
    return JSONResponse(updated.public(_base_url(request)))


async def rotate_secret(request: Request) -> Response:
    """Add a secret (given, or generated) as the newest; the previous one stays active until
    the next rotation, so the provider can be switched over without losing requests."""
    source = await _own_source(request, Scope.MANAGE)
    body = (
        await read_json(request, 65536) if request.headers.get("content-length", "0") != "0" else {}
    )
    if not isinstance(body, dict):
        raise BadRequest('the body must be {"secret": …} or empty')
    secret = body.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise BadRequest("secret must be a non-empty string")
    generated = None
    if secret is None:
        secret = generated = new_secret_for(source.preset)
        if secret is None:
            raise BadRequest("preset 'none' takes no secret")
    secrets = (secret, *source.secrets)[:MAX_SECRETS]
    updated = replace(source, secrets=secrets, updated_us=now_us())
    await sql.update_source(hub(request).store, updated)
    out = updated.public(_base_url(request))
    if generated:
        out["secret"] = generated
    return JSONResponse(out)


async def delete_source(request: Request) -> Response:
    source = await _own_source(request, Scope.MANAGE)
    await sql.delete_source(hub(request).store, source.tenant_id, source.id)
    return Response(status_code=204)


async def receive_webhook(request: Request) -> Response:
    """The public receiving URL: no API key; the source's preset authenticates the request.
    Answered within SWITCHBOARD_INGEST_TIMEOUT (503 after it: providers retry)."""
    h = hub(request)
    return await within(h.settings.ingest_timeout, _receive_webhook(request, h))


async def _receive_webhook(request: Request, h: Hub) -> Response:
    # the client address is the TCP peer, or what a trusted proxy says (server.server_config)
    remote = request.client.host if request.client else None
    h.limiter.check_source(request.path_params["source_id"], remote)  # before any work
    body = await read_body(request, h.settings.max_body_bytes)
    reply = await inbound(request).receive(
        request.path_params["source_id"], dict(request.headers), body, remote, url=_called(request)
    )
    return JSONResponse(reply.body, status_code=reply.status_code)


async def webhook_handshake(request: Request) -> Response:
    """The WhatsApp Cloud API's GET verification of the receiving URL: echo hub.challenge when
    hub.verify_token is the source's verify token."""
    h = hub(request)
    source_id = request.path_params["source_id"]
    h.limiter.check_source(source_id, request.client.host if request.client else None)
    try:
        challenge = answer_handshake(await sql.get_source(h.store, source_id), request.query_params)
    except HandshakeRefused as exc:
        code = {400: "bad_request", 403: "forbidden", 404: "not_found"}[exc.status]
        return JSONResponse({"error": {"code": code, "message": str(exc)}}, status_code=exc.status)
    return PlainTextResponse(challenge, headers={"x-content-type-options": "nosniff"})


def _called(request: Request) -> str:
    """The URL the provider called (Twilio signs it): under SWITCHBOARD_PUBLIC_URL when set (the
    hub behind a proxy sees another address), else as this request arrived."""
    public = hub(request).settings.public_url.rstrip("/")
    if not public:
        return str(request.url)
    query = request.url.query
    return public + request.url.path + (f"?{query}" if query else "")


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter '{name}' must be true or false")


async def list_requests(request: Request) -> Response:
    source = await _own_source(request, Scope.READ)
    limit = query_int(request, "limit", 50, 1, 500)
    found = await sql.list_requests(
        hub(request).store,
        source.tenant_id,
        source.id,
        status=query_choice(request, "status", INBOUND_STATUSES),
        verified=_bool_param(request, "verified"),
        before_id=request.query_params.get("cursor"),
        limit=limit,
    )
    with_body = _bool_param(request, "body") is not False
    return JSONResponse(
        {
            "data": [r.public(with_body) for r in found],
            "next_cursor": found[-1].id if len(found) == limit else None,
            "counters": source.counters.to_json(),
        }
    )


async def get_request(request: Request) -> Response:
    source = await _own_source(request, Scope.READ)
    found = await sql.get_request(
        hub(request).store, source.tenant_id, request.path_params["request_id"]
    )
    if found is None or found.source_id != source.id:
        raise NotFound("no request with that id on this source")
    return JSONResponse(found.public())


async def reprocess(request: Request) -> Response:
    source = await _own_source(request, Scope.MANAGE)
    body = await read_json(request, 65536)
    if not isinstance(body, dict):
        raise BadRequest("the body must be an object {mapping_version, from?, to?, dry_run}")
    name = body.get("mapping", source.mapping)
    version = body.get("mapping_version")
    if not isinstance(name, str) or (version is not None and not isinstance(version, str)):
        raise BadRequest(
            "mapping and mapping_version must be strings",
            details=[{"path": "/mapping_version", "message": "must be a string"}],
        )
    dry_run = body.get("dry_run", True)
    if not isinstance(dry_run, bool):
        raise BadRequest("dry_run must be true or false")
    limit = body.get("limit", 10_000)
    if not isinstance(limit, int) or not 1 <= limit <= 100_000:
        raise BadRequest("limit must be an integer from 1 to 100000")
    bounds: dict[str, int | None] = {}
    for key in ("from", "to"):
        raw = body.get(key)
        if raw is None:
            bounds[key] = None
            continue
        try:
            bounds[key] = parse_time(raw, f"/{key}")
        except EnvelopeError as exc:
            raise BadRequest(f"{key}: {exc.errors[0]['message']}", details=exc.errors) from None
    pipeline = inbound(request)
    mapping = await pipeline.mapping(source.tenant_id, name, version)
    if mapping is None:
        raise NotFound(f"mapping {name}@{version or 'latest'} does not exist")
    tenant = await hub(request).tenant(source.tenant_id)
    assert tenant is not None  # the source belongs to the caller's tenant
    result = await pipeline.reprocess(
        source,
        tenant,
        mapping,
        from_us=bounds["from"],
        to_us=bounds["to"],
        dry_run=dry_run,
        limit=limit,
    )
    return JSONResponse(result)


# --- mappings ----------------------------------------------------------------------------------


def _mapping_json(spec: dict[str, Any], origin: str) -> dict[str, Any]:
    return {
        "name": spec.get("name"),
        "version": str(spec.get("version")),
        "description": spec.get("description", ""),
        "origin": origin,
        "spec": spec,
    }


async def list_mappings(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    shipped = [_mapping_json(m.spec, "shipped") for m in inbound(request).library.list()]
    own = [
        _mapping_json(s, "tenant")
        for s in await sql.tenant_mappings(hub(request).store, p.tenant())
    ]
    return JSONResponse({"data": shipped + own})


async def put_mapping(request: Request) -> Response:
    """Store a tenant's own mapping version (immutable: a change is a new version)."""
    p = await principal(request, Scope.MANAGE)
    name, version = request.path_params["name"], request.path_params["version"]
    body = await read_json(request, 262_144)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a mapping document (JSON)")
    body = {**body, "name": name, "version": version}
    try:
        parse_mapping(body, f"{name}@{version}")
    except MappingError as exc:
        raise BadRequest(str(exc), details=exc.errors) from None
    if inbound(request).library.get(name, version) is not None:
        raise Conflict(f"{name}@{version} is a shipped mapping; choose another version")
    if not await sql.put_mapping(hub(request).store, p.tenant(), name, version, body, now_us()):
        raise Conflict(f"{name}@{version} exists; mapping versions are immutable")
    return JSONResponse(_mapping_json(body, "tenant"), status_code=201)


routes = [
    Route("/v1/sources", create_source, methods=["POST"]),
    Route("/v1/sources", list_sources, methods=["GET"]),
    Route("/v1/sources/{source_id}", get_source, methods=["GET"]),
    Route("/v1/sources/{source_id}", update_source, methods=["PATCH"]),
    Route("/v1/sources/{source_id}", delete_source, methods=["DELETE"]),
    Route("/v1/sources/{source_id}/secrets", rotate_secret, methods=["POST"]),
    Route("/v1/sources/{source_id}/webhook", receive_webhook, methods=["POST"]),
    Route("/v1/sources/{source_id}/webhook", webhook_handshake, methods=["GET"]),
    Route("/v1/sources/{source_id}/requests", list_requests, methods=["GET"]),
    Route("/v1/sources/{source_id}/requests/{request_id}", get_request, methods=["GET"]),
    Route("/v1/sources/{source_id}/reprocess", reprocess, methods=["POST"]),
    Route("/v1/mappings", list_mappings, methods=["GET"]),
    Route("/v1/mappings/{name}/{version}", put_mapping, methods=["PUT"]),
]
