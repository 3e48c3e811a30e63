"""Liveness, store health, this API's OpenAPI document and its reference page: typed endpoints
(see `api/contract.py`) that take no API key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    PUBLIC,
    Model,
    Params,
    Raw,
    decode_path,
    endpoint,
    respond,
    routes_of,
)
from switchboard.envelope import now_us
from switchboard.errors import BadRequest, NotFound
from switchboard.store import Scope

__all__ = ["DOCS_ASSETS", "routes"]

TAG = "health"
ERROR = {"$ref": "#/components/schemas/Error"}  # the API's error shape (openapi.py)

# Swagger UI comes from the swagger-ui-bundle-v2 package and is served by the hub itself, so
# /docs works on a network without Internet access and no visit is reported to a third party.
DOCS_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
DOCS_HTML = """<!doctype html><html><head><title>Switchboard API</title>
<meta charset="utf-8"><link rel="icon" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head><body>
<div id="ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The raw document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>"""


class Liveness(Model):
    status: Literal["ok"]


class HealthMigrations(Model):
    current: Annotated[str | None, Meta(description="The store's migration revision.")]
    head: Annotated[str | None, Meta(description="The newest revision this release knows.")]
    up_to_date: bool


class HealthStore(Model):
    backend: Literal["sqlite", "postgres"]
    reachable: bool
    migrations: HealthMigrations
    counts: Annotated[
        dict[str, Annotated[int, Meta(ge=0)]] | UnsetType,
        Meta(description="Rows per table, every tenant's: only for an admin key."),
    ] = UNSET
    error: Annotated[str | UnsetType, Meta(description="Why the store is not reachable.")] = UNSET


class HealthBacklog(Model):
    due: Annotated[int, Meta(ge=0, description="Deliveries due now, every tenant's.")]
    oldest_due_seconds: Annotated[float, Meta(ge=0, description="How long the oldest waits.")]


class Health(Model):
    status: Literal["ok", "degraded"]
    store: HealthStore
    backlog: Annotated[HealthBacklog | UnsetType, Meta(description="Only for an admin key.")] = (
        UNSET
    )


class AssetPath(Params):
    name: Annotated[
        Literal[tuple(DOCS_ASSETS)],  # type: ignore[valid-type]
        Meta(description="The asset's file name."),
    ]


@endpoint(
    "GET /health",
    "health",
    TAG,
    "Liveness",
    "Answers while the process runs; touches nothing else.",
    scope=PUBLIC,
    ok={200: (Liveness, "OK")},
)
async def health(request: Request) -> Response:
    return respond(Liveness(status="ok"))


@endpoint(
    "GET /health/detailed",
    "healthDetailed",
    TAG,
    "Store health",
    "Store reachability and migration revision, for anyone; with an admin key also the row "
    "counts and the due backlog (they span every tenant). Any other key is refused.",
    scope=PUBLIC,
    # an API key is optional here, and only an admin key is taken
    security=({"bearerAuth": ["admin"]},),
    ok={
        200: (Health, "Healthy."),
        503: (Health, "Degraded: the store is unreachable or behind."),
    },
    errors=(401, 403),
)
async def health_detailed(request: Request) -> Response:
    """Store health for anyone (load balancers, probes); row counts only for an admin key,
    since they span every tenant, and counting is work no anonymous caller should cause."""
    admin = False
    if request.headers.get("authorization"):  # a key that is sent must be an admin key
        await principal(request, Scope.ADMIN)
        admin = True
    h = await hub(request).store.health(counts=admin)
    store = HealthStore(
        backend=h.backend,  # type: ignore[arg-type]
        reachable=h.error is None,
        migrations=HealthMigrations(
            current=h.revision, head=h.head, up_to_date=h.revision == h.head
        ),
        counts=h.counts if admin else UNSET,
        error=h.error or UNSET,
    )
    backlog: HealthBacklog | UnsetType = UNSET
    if admin and h.error is None:
        # the due backlog (one indexed count), spanning every tenant like the counts
        due, oldest = await hub(request).observe.backlog(now_us())
        waited = round(max(0, now_us() - oldest) / 1e6, 3) if oldest else 0.0
        backlog = HealthBacklog(due=due, oldest_due_seconds=waited)
    body = Health(status="ok" if h.ok else "degraded", store=store, backlog=backlog)
    return respond(body, 200 if h.ok else 503)


@endpoint(
    "GET /openapi.json",
    "openapi",
    TAG,
    "This document",
    "The OpenAPI 3.1 description of the API.",
    scope=PUBLIC,
    ok={200: (dict[str, Any], "OK")},
)
async def openapi(request: Request) -> Response:
    # the document is built from this module's endpoints too: the app hands it down
    # (api/__init__.py), so this module does not import openapi.py, which imports it
    return respond(request.app.state.openapi_document())


@endpoint(
    "GET /docs",
    "docs",
    TAG,
    "API reference page",
    "Swagger UI over /openapi.json.",
    scope=PUBLIC,
    ok={200: (Raw("text/html"), "HTML")},
)
async def docs(request: Request) -> Response:
    return HTMLResponse(DOCS_HTML)


@endpoint(
    "GET /docs/assets/{name}",
    "docsAsset",
    TAG,
    "API reference page assets",
    "Swagger UI's stylesheet, script and icon, served from the installed package (no "
    "third-party CDN): swagger-ui.css, swagger-ui-bundle.js, favicon-32x32.png.",
    scope=PUBLIC,
    path=AssetPath,
    ok={
        200: (
            (
                Raw("text/css"),
                Raw("text/javascript"),
                Raw("image/png", {"type": "string", "contentMediaType": "image/png"}),
            ),
            "The file.",
        ),
        404: (Raw("application/json", ERROR), "Not one of the page's assets."),
    },
)
async def docs_asset(request: Request) -> Response:
    """One of Swagger UI's files, from the installed package (a fixed list: no path walking)."""
    from swagger_ui_bundle import swagger_ui_path

    try:
        name = decode_path(request, AssetPath).name
    except BadRequest:  # a file that is not there is a 404, as on any web server
        raise NotFound("no such asset") from None
    body = (swagger_ui_path / name).read_bytes()
    return Response(
        body,
        media_type=DOCS_ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )


HANDLERS = (health, health_detailed, openapi, docs, docs_asset)
routes = routes_of(*HANDLERS)
