"""The dashboard's plumbing, its sign-in and its overview. Every page is one tenant's (the
signed-in key's), reads need the key's `read` scope and actions its `manage` scope; every POST
carries the session's CSRF token. Errors are HTML pages with the API's status codes, never a
500. The page modules (`events`, `deliveries`, `traces`, …) declare their pages with
`viewer.page` and `viewer.action`; `Dashboard.route` serves each of them."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from switchboard.api.common import hub, read_body
from switchboard.api.contract import PUBLIC, Params, Raw, decode_path, endpoint, endpoint_of
from switchboard.config import Settings
from switchboard.envelope import format_us, now_us
from switchboard.errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized
from switchboard.store import Scope
from switchboard.ui import charts, queries
from switchboard.ui import session as sess
from switchboard.ui.viewer import (
    FORM_TYPE,
    HTML,
    REFUSED,
    SCOPE_KEY,
    TAG,
    Act,
    Form,
    Handler,
    Pages,
    View,
    Viewer,
    action,
    dashboard_of,
    form_body,
    page,
)

HOUR_US = 3_600_000_000
FORM_LIMIT = 65_536  # bytes of one form body
# Only the hub's own script file runs on these pages (no inline script), and no other site may
# frame them (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
}


def _hour_label(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%H:00")


class Dashboard:
    """The pages' templates, the key that signs sessions, and the checks every page and action
    passes; built once per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # without a configured secret, sessions last as long as this process
        self.secret = settings.ui_secret.encode() or secrets.token_bytes(32)
        self.env = Environment(
            loader=PackageLoader("switchboard.ui", "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
        )
        self.env.filters["when"] = lambda us: format_us(us) if us else ""
        self.streams: dict[str, int] = {}  # live tails open per key id, in this process

    def route(self, handler: Handler) -> Route:
        """`handler` (declared with `@endpoint`) served by this dashboard."""
        spec = endpoint_of(handler)

        async def serve(request: Request) -> Response:
            request.scope[SCOPE_KEY] = self
            return await handler(request)

        serve.endpoint = spec  # type: ignore[attr-defined]  # the route is as typed as its handler
        return Route(spec.served_url, serve, methods=[spec.method])

    # -- plumbing ------------------------------------------------------------------------------

    def render(
        self, name: str, viewer: Viewer | None, status: int = 200, **context: Any
    ) -> Response:
        html = self.env.get_template(name).render(viewer=viewer, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def error(self, viewer: Viewer | None, exc: ApiError) -> Response:
        return self.render("error.html", viewer, exc.status, code=exc.status, message=str(exc))

    async def viewer(self, request: Request) -> Viewer | None:
        """The session's key when it is still active, else None (signed out, expired, revoked)."""
        s = sess.decode(self.secret, request.cookies.get(sess.COOKIE), now_us())
        if s is None:
            return None
        for key in await hub(request).store.keys_by_prefix(s.prefix):
            if key.id == s.key_id and key.revoked_us is None and key.tenant_id is not None:
                return Viewer(key, key.tenant_id, sess.csrf_token(self.secret, s.nonce))
        return None

    async def serve_page(self, request: Request, view: View) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return RedirectResponse("/ui/sign-in", status_code=303)
        if not viewer.can(Scope.READ):
            return self.error(viewer, Forbidden("this API key lacks the 'read' scope"))
        try:
            return await view(self, request, viewer)
        except ApiError as exc:
            return self.error(viewer, exc)

    async def serve_action(self, request: Request, act: Act, scope: Scope) -> Response:
        """A POST: signed in, the session's CSRF token in the form, and the key's `scope`."""
        viewer = await self.viewer(request)
        if viewer is None:
            return self.error(None, Unauthorized("sign in first: the session is missing"))
        try:
            form = await self.form(request)
            sent = (form.get("csrf") or [""])[0]
            if not secrets.compare_digest(sent.encode(), viewer.csrf.encode()):
                raise Forbidden(
                    "the form's CSRF token is missing or stale: reload the page and try again"
                )
            if not viewer.can(scope):
                raise Forbidden(f"this API key lacks the '{scope}' scope")
            return await act(self, request, viewer, form)
        except ApiError as exc:
            return self.error(viewer, exc)

    async def form(self, request: Request) -> Form:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != FORM_TYPE:
            raise BadRequest(f"a form must be sent as {FORM_TYPE}, got {ctype or 'nothing'!r}")
        body = await read_body(request, FORM_LIMIT)
        try:
            return parse_qs(body.decode(), keep_blank_values=True, max_num_fields=2000)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"the form cannot be read: {exc}") from None

    def cookie_secure(self, request: Request) -> bool:
        mode = self.settings.ui_cookie_secure
        return mode == "ON" or (mode == "AUTO" and request.url.scheme == "https")

    async def sign_in_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        nonce = request.cookies.get(sess.LOGIN_COOKIE) or secrets.token_urlsafe(16)
        response = self.render(
            "sign_in.html",
            None,
            status,
            csrf=sess.csrf_token(self.secret, nonce),
            error=error,
        )
        response.set_cookie(
            sess.LOGIN_COOKIE,
            nonce,
            max_age=3600,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=self.cookie_secure(request),
        )
        return response


def _dashboard(request: Request) -> Dashboard:
    found = dashboard_of(request)
    assert isinstance(found, Dashboard)  # every route is served by `Dashboard.route`
    return found


# -- files, signing in and out -----------------------------------------------------------------


class FilePath(Params):
    name: Annotated[
        str, Meta(max_length=64, description="`dashboard.css` or `live.js`: nothing else.")
    ]


@endpoint(
    "GET /ui/static/{name}",
    "uiStatic",
    TAG,
    "Dashboard files",
    "The stylesheet (`dashboard.css`) and the live tail's script (`live.js`).",
    scope=PUBLIC,
    path=FilePath,
    ok={
        200: (Raw("text/css"), "The file (`live.js` is `text/javascript`)."),
        404: (HTML, REFUSED.format("not one of the dashboard's files")),
    },
)
async def static(request: Request) -> Response:
    """One of the dashboard's files (a fixed list: no path walking)."""
    name = decode_path(request, FilePath).name
    if name not in STATIC:
        return _dashboard(request).error(None, NotFound("no such file"))
    body = (resources.files("switchboard.ui") / "static" / name).read_bytes()
    return Response(
        body,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@endpoint(
    "GET /ui/sign-in",
    "uiSignInForm",
    TAG,
    "Sign-in form",
    "Asks for an API key.",
    scope=PUBLIC,
    ok={200: (HTML, "The form.")},
)
async def sign_in_form(request: Request) -> Response:
    return await _dashboard(request).sign_in_form(request)


SIGN_IN_FORM = Raw(
    FORM_TYPE,
    {
        "type": "object",
        "properties": {
            "csrf": {"type": "string", "description": "The form's own token."},
            "key": {"type": "string", "description": "A tenant's API key with `read`."},
        },
        "required": ["csrf", "key"],
    },
)


@endpoint(
    "POST /ui/sign-in",
    "uiSignIn",
    TAG,
    "Sign in",
    "Checks the key (a tenant's, with `read`) and sets an HttpOnly, SameSite=Strict session "
    "cookie; a wrong key gets the form again with 401.",
    scope=PUBLIC,
    body=SIGN_IN_FORM,
    ok={
        303: (None, "Signed in: a redirect to the overview."),
        401: (HTML, "The form again: the key is unknown or revoked."),
        403: (HTML, REFUSED.format("a stale form, an admin key, or a key without `read`")),
    },
)
async def sign_in(request: Request) -> Response:
    d = _dashboard(request)
    try:
        form = await d.form(request)
    except ApiError as exc:
        return d.error(None, exc)
    sent = (form.get("csrf") or [""])[0]
    if not sess.csrf_ok(d.secret, request.cookies.get(sess.LOGIN_COOKIE), sent):
        return d.error(
            None, Forbidden("the sign-in form is stale or was not sent by this dashboard")
        )
    secret = (form.get("key") or [""])[0].strip()
    if not secret:
        return await d.sign_in_form(request, "Enter an API key.", 400)
    try:
        p = await hub(request).auth.authenticate(f"Bearer {secret}", None)
    except Unauthorized:
        return await d.sign_in_form(request, "That API key is unknown or revoked.", 401)
    if p.tenant_id is None:
        return await d.sign_in_form(
            request, "An admin key acts in every tenant: sign in with a tenant's key.", 403
        )
    if Scope.READ not in p.key.scopes:
        return await d.sign_in_form(
            request, "This API key lacks the 'read' scope the dashboard needs.", 403
        )
    hours = d.settings.ui_session_hours
    s = sess.new_session(p.key.id, p.key.prefix, now_us() + hours * HOUR_US)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        sess.COOKIE,
        sess.encode(d.secret, s),
        max_age=hours * 3600,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=d.cookie_secure(request),
    )
    response.delete_cookie(sess.LOGIN_COOKIE, path="/ui")
    return response


@action(
    "POST /ui/sign-out",
    "uiSignOut",
    "Sign out",
    "Ends the session.",
    scope=Scope.READ,
    body=form_body(),
)
async def sign_out(d: Pages, request: Request, viewer: Viewer, form: Form) -> Response:
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(sess.COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


# -- health at a glance --------------------------------------------------------------------------


@page(
    "GET /ui",
    "uiOverview",
    "Dashboard overview",
    "Events per hour and delivery attempts over the last 24 hours, the backlog and the DLQ size.",
)
async def overview(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    now = now_us()
    start = (now // HOUR_US - 23) * HOUR_US
    hours = [start + i * HOUR_US for i in range(24)]
    per_hour: dict[int, int] = dict.fromkeys(hours, 0)
    mine = viewer.constraint  # a key limited inside its tenant counts only its part
    for row in await h.store.metrics(viewer.tenant_id, HOUR_US, start, now + 1, mine):
        if row.bucket_us in per_hour:
            per_hour[row.bucket_us] += row.count
    attempts = await queries.attempts_by_hour(h.store, viewer.tenant_id, HOUR_US, start, mine)
    opened = await queries.open_deliveries(h.store, viewer.tenant_id, mine)
    ok = sum(a[0] for a in attempts.values())
    failed = sum(a[1] for a in attempts.values())
    events_chart = charts.chart(
        [charts.Bucket(_hour_label(b), per_hour[b]) for b in hours], "events"
    )
    delivery_chart = charts.chart(
        [charts.Bucket(_hour_label(b), *attempts.get(b, (0, 0))) for b in hours],
        "succeeded",
        "failed",
    )
    return d.render(
        "overview.html",
        viewer,
        nav="overview",
        events_chart=events_chart,
        delivery_chart=delivery_chart,
        events_total=sum(per_hour.values()),
        attempts_ok=ok,
        attempts_failed=failed,
        success_rate=None if ok + failed == 0 else round(100 * ok / (ok + failed), 1),
        dlq=sum(o.dead for o in opened.values()),
        backlog=sum(o.backlog for o in opened.values()),
    )


@page(
    "GET /ui/destinations",
    "uiDestinations",
    "Destinations",
    "Each destination's state, this process's circuit breaker, how long it has been failing, "
    "its backlog and dead deliveries.",
)
async def destinations(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    opened = await queries.open_deliveries(h.store, viewer.tenant_id, viewer.constraint)
    running = bool(h.settings.run_worker)  # the hub builds a worker either way; is it run?
    rows = []
    for dest in await h.deliveries.list_destinations(viewer.tenant_id):
        state = await h.deliveries.destination_state(dest.id)
        rows.append(
            {
                "destination": dest,
                "failing_since": state[1] if state else None,
                "breaker": h.worker.breaker_state(dest.id) if running and h.worker else None,
                "open": opened.get(dest.id, queries.Open()),
            }
        )
    return d.render("destinations.html", viewer, nav="destinations", rows=rows, has_worker=running)


HANDLERS: tuple[Handler, ...] = (
    overview,
    static,
    sign_in_form,
    sign_in,
    sign_out,
    destinations,
)
