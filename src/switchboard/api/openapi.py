"""The OpenAPI 3.1 document, generated: every operation from an `@endpoint` handler's route
metadata and the msgspec models that decode its requests and encode its answers
(`api/contract.py`); only what every operation shares (the error answers, the tenant header,
the security schemes, tags) is written here.

`tests/unit/test_openapi.py` checks the document against the app's routes: a route whose
handler has no `@endpoint` fails it. The limits quoted are the defaults of `Settings`.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from starlette.routing import Route

from switchboard.api import (
    admin,
    audit,
    automations,
    catalog,
    deliveries,
    engagement,
    events,
    health,
    mappings,
    messages,
    observe,
    purposes,
    recipients,
    retention,
    source_requests,
    sources,
    subjects,
    webhooks,
)
from switchboard.api import segment as segment_api
from switchboard.api.contract import PUBLIC, Endpoint, Raw, endpoints_of

__all__ = ["openapi_document"]

Schema = dict[str, Any]
REF = "#/components/schemas/{name}"
Operation = tuple[str, str, dict[str, Any]]  # (path, method, operation object)

TAGS = [
    ("events", "Ingest events (native, legacy shapes, CloudEvents); query, timelines, metrics."),
    ("catalog", "Event types and their versioned JSON Schemas."),
    ("tenants & keys", "Tenants (admin) and the API keys of a tenant."),
    ("destinations & routes", "Where events go (webhook, Slack, WhatsApp…) and which go there."),
    ("deliveries", "One delivery per (event, destination), its attempts, provider receipts."),
    ("dlq", "Dead-lettered deliveries: list, count, retry, archive."),
    ("replays", "Re-route stored events through routes or straight to destinations."),
    ("inbox", "The in-app notification channel's items, per recipient."),
    ("recipients", "The people events are about: profiles, the consent ledger, preferences."),
    ("templates", "Message templates as code: variants per channel and locale, previews."),
    ("engagement", "Email open pixels and tracked links: signed, no key; they record events."),
    ("sources", "Inbound provider webhooks, their request log and mappings."),
    ("segment", "The Segment HTTP tracking API, for existing Segment clients."),
    (
        "automations",
        "Versioned step documents (wait, wait_for, send, emit, if, digest), triggered by events "
        "or a schedule, and their runs.",
    ),
    ("health", "Liveness, store health and this document."),
    ("subjects", "A data subject's rights: export everything held about them, erase it."),
    ("dashboard", "The web dashboard's HTML pages, signed in with a session cookie."),
]

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,62}(?!\n)$"
ERRORS = {
    400: ("BadRequest", "Malformed JSON, body or parameters; `details` name the fields."),
    401: ("Unauthorized", "No API key, or an unknown or revoked one."),
    403: ("Forbidden", "The key lacks the scope, or an admin key sent no X-Switchboard-Tenant."),
    404: ("NotFound", "Nothing with that id in this tenant."),
    409: ("Conflict", "The change conflicts with what is stored."),
    413: ("PayloadTooLarge", "The body (or batch) is over the limit."),
    415: ("UnsupportedMedia", "The Content-Type is not one this operation reads."),
    422: ("Unprocessable", "Well-formed but invalid; `details` name every problem."),
    429: ("RateLimited", "The key or tenant is over its rate limit; wait Retry-After seconds."),
    431: ("HeadersTooLarge", "The request line and headers are over SWITCHBOARD_MAX_HEADER_BYTES."),
    503: ("Unavailable", "The store is unavailable; retry after Retry-After seconds."),
}


# --- small builders ---------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], *required: str, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": props, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _s(description: str = "", **extra: Any) -> Schema:
    """A string schema."""
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _null(schema: Schema) -> Schema:
    """`schema` or null (3.1 spells it as a type list)."""
    if "type" in schema and isinstance(schema["type"], str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _int(description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", **extra}
    if description:
        schema["description"] = description
    return schema


def _json(schema: Schema, description: str = "") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _p(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _op(
    route: str,
    op_id: str,
    tag: str,
    summary: str,
    description: str,
    *,
    scope: str,
    params: list[Schema] | tuple[Schema, ...] = (),
    body: Schema | None = None,
    content: dict[str, Any] | None = None,
    optional_body: bool = False,
    ok: dict[int, dict[str, Any]],
    errors: tuple[int, ...] = (),
) -> Operation:
    """One operation on `route` ("GET /v1/events") with an API key of `scope`: 401, 403, 503
    and the tenant header come with it; a JSON `body` (or a `content` map) brings 400, 413, 415.
    """
    method, path = route.split(" ")
    params = [*params] if scope == "admin" else [*params, _p("TenantHeader")]
    tenant = "" if scope == "admin" else " (or an admin key naming the tenant)"
    op: dict[str, Any] = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "description": f"{description} Scope: `{scope}`{tenant}.",
        "security": [{"bearerAuth": [scope]}],
    }
    if params:
        op["parameters"] = params
    codes = {*errors, 400, 401, 403, 503}  # 400: the tenant header and parameters are checked
    if body is not None or content is not None:
        media = content or {"application/json": {"schema": body}}
        op["requestBody"] = {"required": not optional_body, "content": media}
        codes |= {400, 413, 415}
    op["responses"] = _responses(ok, codes)
    return path, method.lower(), op


def _responses(ok: dict[int, dict[str, Any]], codes: set[int]) -> dict[str, Any]:
    """The operation's own answers, then the shared errors it may give (its own answer for a
    status, such as a webhook's 400 in its reply shape, wins over the shared one)."""
    return {
        **{str(status): response for status, response in ok.items()},
        **{
            str(c): {"$ref": f"#/components/responses/{ERRORS[c][0]}"}
            for c in sorted(codes)
            if c not in ok
        },
    }


# --- components ------------------------------------------------------------------------------


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "code": _s(examples=["schema_violation", "not_found"]),
                        "message": _s("Says how to fix the request."),
                        "details": {"type": "array", "items": _ref("ErrorDetail")},
                    },
                    "code",
                    "message",
                )
            },
            "error",
        ),
        "Page": _obj(
            {
                "data": {"type": "array", "items": {}},
                "next_cursor": _null(_s("Pass as ?cursor= for the next page; null at the end.")),
            },
            "data",
            "next_cursor",
        ),
    }


def _components() -> dict[str, Any]:
    retry_after = {
        "description": "Seconds to wait before retrying.",
        "schema": _int(minimum=1),
    }
    responses: dict[str, Any] = {}
    for status, (name, description) in ERRORS.items():
        response = _json(_ref("Error"), description)
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
        responses[name] = response
    return {
        "schemas": _schemas(),
        "responses": responses,
        "headers": {"RetryAfter": retry_after},
        "parameters": {
            "TenantHeader": {
                "name": "X-Switchboard-Tenant",
                "in": "header",
                "description": "Only with an admin key: the tenant to act in.",
                "schema": _s(pattern=TENANT_PATTERN),
            },
        },
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "An API key: `Authorization: Bearer sb_…`. Scopes: ingest (send events), "
                    "read (query), manage (change the tenant's configuration), admin (every "
                    "tenant; name one with X-Switchboard-Tenant)."
                ),
            },
            "segmentWriteKey": {
                "type": "http",
                "scheme": "basic",
                "description": "Segment's way: the write key (an ingest key) as the username.",
            },
        },
    }


# --- generated from typed endpoints (api/contract.py) ------------------------------------------
# Every route a resource module serves whose handler is declared with @endpoint; their models are
# the schemas below. To convert an area: declare its handlers with @endpoint and Body/Params/Model
# structs, serve them with `routes_of(...)` in the module's `routes`, and delete its
# `_<area>_paths()` and the schemas only it used.
MODULES = (
    health,
    events,
    catalog,
    admin,
    deliveries,
    sources,
    webhooks,
    source_requests,
    mappings,
    segment_api,
    automations,
    recipients,
    engagement,
    messages,
    purposes,
    subjects,
    observe,
    audit,
    retention,
)


def _typed_handlers() -> list[Any]:
    # the dashboard's routes are built per app (from its settings); its handlers are not
    from switchboard import ui

    return [
        *(
            r.endpoint
            for m in MODULES
            for r in m.routes
            if isinstance(r, Route) and hasattr(r.endpoint, "endpoint")
        ),
        *ui.HANDLERS,
    ]


def _parameters(model: type[Any] | None, where: str) -> list[Schema]:
    if model is None:
        return []
    (ref,), components = msgspec.json.schema_components([model], ref_template=REF)
    spec = components[ref["$ref"].rsplit("/", 1)[1]]
    required = set(spec.get("required", ()))
    out = []
    for name, schema in spec.get("properties", {}).items():
        schema = dict(schema)
        param: Schema = {"name": name, "in": where, "description": schema.pop("description", "")}
        if where == "path" or name in required:
            param["required"] = True
        param["schema"] = schema
        out.append(param)
    return out


def _typed_paths() -> tuple[list[Operation], dict[str, Schema]]:
    """The operations of the typed endpoints and the component schemas of their models."""
    specs = endpoints_of(_typed_handlers())
    types: list[Any] = []
    for e in specs:
        for t in (*_body_types(e.body), *(t for t, _ in e.ok.values())):
            if t is not None and _raws(t) is None and t not in types:
                types.append(t)
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(map(_key, types), refs, strict=True))
    return [_typed_op(e, ref_of) for e in specs], schemas


def _raws(t: Any) -> tuple[Raw, ...] | None:
    """A Raw body or answer, or a tuple of them (one per media type it comes in: a provider's
    JSON or form, a stylesheet or an image); None for a model."""
    if isinstance(t, Raw):
        return (t,)
    if isinstance(t, tuple) and t and all(isinstance(r, Raw) for r in t):
        return t
    return None


def _content(raws: tuple[Raw, ...]) -> dict[str, Any]:
    return {r.media: {"schema": r.schema} for r in raws}


# An Endpoint's `body` may also be a map of media type → body when each media type carries its
# own shape (POST /v1/events), and a tuple of models (anyOf) when a JSON body may come in shapes
# msgspec cannot tell apart by a tag.
def _body_types(body: Any) -> list[Any]:
    """The models a body declaration names."""
    bodies = body.values() if isinstance(body, dict) else (body,)
    out: list[Any] = []
    for b in bodies:
        if b is None or _raws(b) is not None:
            continue
        out.extend(b if isinstance(b, tuple) else (b,))
    return out


def _body_schema(body: Any, ref_of: dict[str, Schema]) -> Schema:
    if isinstance(body, Raw):
        return body.schema
    if isinstance(body, tuple):
        return {"anyOf": [ref_of[_key(t)] for t in body]}
    return ref_of[_key(body)]


def _key(t: Any) -> str:
    return repr(t)  # types such as list[Event] are not hashable the same way every time


def _typed_op(e: Endpoint, ref_of: dict[str, Schema]) -> Operation:
    def media(t: Any, text: str) -> dict[str, Any]:
        if t is None:
            return {"description": text}
        if (raws := _raws(t)) is not None:
            return {"description": text, "content": _content(raws)}
        return _json(ref_of[_key(t)], text)

    params = [
        *_parameters(e.path, "path"),
        *_parameters(e.query, "query"),
        *_parameters(e.headers, "header"),
    ]
    content = None
    if isinstance(e.body, dict):
        content = {m: {"schema": _body_schema(b, ref_of)} for m, b in e.body.items()}
    elif (raws := _raws(e.body)) is not None:
        content = _content(raws)
    elif e.body is not None:
        content = {m: {"schema": _body_schema(e.body, ref_of)} for m in e.body_media}
    ok = {status: media(t, text) for status, (t, text) in e.ok.items()}
    if e.scope == PUBLIC:
        op: dict[str, Any] = {
            "operationId": e.op_id,
            "tags": [e.tag],
            "summary": e.summary,
            "description": e.description,
            "security": [{}, *e.security] if e.security else [],
        }
        if params:
            op["parameters"] = params
        codes = {*e.errors, *((400,) if params else ())}
        if content is not None:
            op["requestBody"] = {"required": e.body_required, "content": content}
            codes |= {400, 413, 415}
        op["responses"] = _responses(ok, codes)
        return e.url, e.method.lower(), op
    path, method, op = _op(
        e.route,
        e.op_id,
        e.tag,
        e.summary,
        e.description,
        scope=e.scope,
        params=params,
        content=content,
        optional_body=not e.body_required,
        ok=ok,
        errors=e.errors,
    )
    if e.security:
        op["security"] = [*op["security"], *e.security]
    return path, method, op


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (cached: treat it as read-only)."""
    typed, typed_schemas = _typed_paths()
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in (*typed,):
        if method in paths.setdefault(path, {}):
            raise ValueError(f"{method.upper()} {path} is described twice")
        paths[path][method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": "0.1.0",
            "summary": "A self-hosted multi-tenant event hub.",
            "description": "Send events, validate them against a catalog, route them to "
            "destinations, and receive provider webhooks. Errors are JSON: "
            '`{"error": {"code", "message", "details": [{"path", "message"}]}}`.',
        },
        "tags": [{"name": name, "description": description} for name, description in TAGS],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": _with_schemas(_components(), typed_schemas),
    }


def _with_schemas(components: dict[str, Any], generated: dict[str, Schema]) -> dict[str, Any]:
    clash = set(generated) & set(components["schemas"])
    if clash:
        raise ValueError(f"schemas both hand-written and generated: {sorted(clash)}")
    return {**components, "schemas": {**components["schemas"], **generated}}
