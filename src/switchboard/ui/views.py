"""The dashboard's pages and actions. Every page is one tenant's (the signed-in key's), reads
need the key's `read` scope and actions its `manage` scope; every POST carries the session's
CSRF token. Errors are HTML pages with the API's status codes, never a 500."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from switchboard.api.common import hub, read_body
from switchboard.auth import within_constraints
from switchboard.config import Settings
from switchboard.envelope import format_us, now_us
from switchboard.errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized
from switchboard.store import Cursor, EventQuery, Scope
from switchboard.ui import actions, catalog, charts, live, queries, replays
from switchboard.ui import session as sess
from switchboard.ui.masking import link_subjects, plain, shown
from switchboard.ui.viewer import Viewer

HOUR_US = 3_600_000_000
PAGE = 50  # events or deliveries per page
FORM_LIMIT = 65_536  # bytes of one form body
FORM_TYPE = "application/x-www-form-urlencoded"
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

Handler = Callable[[Request], Awaitable[Response]]


def _hour_label(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%H:00")


class Dashboard:
    """The pages, their templates and the key that signs sessions; built once per app."""

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

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/ui", self._page(self.overview)),
            Route("/ui/static/{name}", self.static),
            Route("/ui/live", self._page(self.live_page)),
            Route("/ui/live/stream", self._page(self.live_stream)),
            Route("/ui/sign-in", self.sign_in_form, methods=["GET"]),
            Route("/ui/sign-in", self.sign_in, methods=["POST"]),
            Route("/ui/sign-out", self._action(self.sign_out, Scope.READ), methods=["POST"]),
            Route("/ui/events", self._page(self.events)),
            Route("/ui/events/{event_id}", self._page(self.event)),
            Route("/ui/subjects/{subject}", self._page(self.subject)),
            Route("/ui/dlq", self._page(self.dlq)),
            Route("/ui/dlq/retry", self._action(self.dlq_retry, Scope.MANAGE), methods=["POST"]),
            Route(
                "/ui/dlq/archive", self._action(self.dlq_archive, Scope.MANAGE), methods=["POST"]
            ),
            Route("/ui/destinations", self._page(self.destinations)),
            Route("/ui/catalog", self._page(self.catalog_types)),
            Route("/ui/catalog/{name}", self._page(self.catalog_type)),
            Route("/ui/replays", self._page(self.replay_form)),
            Route("/ui/replays", self._action(self.replay_submit, Scope.MANAGE), methods=["POST"]),
            Route("/ui/replays/{replay_id}", self._page(self.replay_progress)),
        ]

    # -- plumbing ------------------------------------------------------------------------------

    def render(
        self, name: str, viewer: Viewer | None, status: int = 200, **context: Any
    ) -> Response:
        html = self.env.get_template(name).render(viewer=viewer, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def _error(self, viewer: Viewer | None, exc: ApiError) -> Response:
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

    def _page(self, view: Callable[[Request, Viewer], Awaitable[Response]]) -> Handler:
        async def handle(request: Request) -> Response:
            viewer = await self.viewer(request)
            if viewer is None:
                return RedirectResponse("/ui/sign-in", status_code=303)
            if not viewer.can(Scope.READ):
                return self._error(viewer, Forbidden("this API key lacks the 'read' scope"))
            try:
                return await view(request, viewer)
            except ApiError as exc:
                return self._error(viewer, exc)

        return handle

    def _action(
        self,
        act: Callable[[Request, Viewer, dict[str, list[str]]], Awaitable[Response]],
        scope: Scope,
    ) -> Handler:
        """A POST: signed in, the session's CSRF token in the form, and the key's `scope`."""

        async def handle(request: Request) -> Response:
            viewer = await self.viewer(request)
            if viewer is None:
                return self._error(None, Unauthorized("sign in first: the session is missing"))
            try:
                form = await self.form(request)
                sent = (form.get("csrf") or [""])[0]
                if not secrets.compare_digest(sent.encode(), viewer.csrf.encode()):
                    raise Forbidden(
                        "the form's CSRF token is missing or stale: reload the page and try again"
                    )
                if not viewer.can(scope):
                    raise Forbidden(f"this API key lacks the '{scope}' scope")
                return await act(request, viewer, form)
            except ApiError as exc:
                return self._error(viewer, exc)

        return handle

    async def form(self, request: Request) -> dict[str, list[str]]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != FORM_TYPE:
            raise BadRequest(f"a form must be sent as {FORM_TYPE}, got {ctype or 'nothing'!r}")
        body = await read_body(request, FORM_LIMIT)
        try:
            return parse_qs(body.decode(), keep_blank_values=True, max_num_fields=2000)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"the form cannot be read: {exc}") from None

    def _cookie_secure(self, request: Request) -> bool:
        mode = self.settings.ui_cookie_secure
        return mode == "ON" or (mode == "AUTO" and request.url.scheme == "https")

    async def static(self, request: Request) -> Response:
        """One of the dashboard's files (a fixed list: no path walking)."""
        name = request.path_params["name"]
        if name not in STATIC:
            return self._error(None, NotFound("no such file"))
        body = (resources.files("switchboard.ui") / "static" / name).read_bytes()
        return Response(
            body,
            media_type=STATIC[name],
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    # -- signing in and out --------------------------------------------------------------------

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
            secure=self._cookie_secure(request),
        )
        return response

    async def sign_in(self, request: Request) -> Response:
        try:
            form = await self.form(request)
        except ApiError as exc:
            return self._error(None, exc)
        sent = (form.get("csrf") or [""])[0]
        if not sess.csrf_ok(self.secret, request.cookies.get(sess.LOGIN_COOKIE), sent):
            return self._error(
                None, Forbidden("the sign-in form is stale or was not sent by this dashboard")
            )
        secret = (form.get("key") or [""])[0].strip()
        if not secret:
            return await self.sign_in_form(request, "Enter an API key.", 400)
        try:
            p = await hub(request).auth.authenticate(f"Bearer {secret}", None)
        except Unauthorized:
            return await self.sign_in_form(request, "That API key is unknown or revoked.", 401)
        if p.tenant_id is None:
            return await self.sign_in_form(
                request, "An admin key acts in every tenant: sign in with a tenant's key.", 403
            )
        if Scope.READ not in p.key.scopes:
            return await self.sign_in_form(
                request, "This API key lacks the 'read' scope the dashboard needs.", 403
            )
        hours = self.settings.ui_session_hours
        s = sess.new_session(p.key.id, p.key.prefix, now_us() + hours * HOUR_US)
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(
            sess.COOKIE,
            sess.encode(self.secret, s),
            max_age=hours * 3600,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=self._cookie_secure(request),
        )
        response.delete_cookie(sess.LOGIN_COOKIE, path="/ui")
        return response

    async def sign_out(
        self, request: Request, viewer: Viewer, form: dict[str, list[str]]
    ) -> Response:
        response = RedirectResponse("/ui/sign-in", status_code=303)
        response.delete_cookie(sess.COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    # -- pages ---------------------------------------------------------------------------------

    async def overview(self, request: Request, viewer: Viewer) -> Response:
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
        return self.render(
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

    async def events(self, request: Request, viewer: Viewer) -> Response:
        q = request.query_params
        search = {name: q.get(name, "").strip() for name in ("type", "subject", "trace_id")}
        cursor = None
        if q.get("cursor"):
            try:
                cursor = Cursor.decode(q["cursor"])
            except ValueError as exc:
                raise BadRequest(f"cursor: {exc}") from None
        if search["type"]:
            from switchboard.api.common import type_glob_problem

            if (problem := type_glob_problem(search["type"])) is not None:
                raise BadRequest(f"type: {problem}")
        query = EventQuery(
            types=(search["type"],) if search["type"] else (),
            subject=search["subject"] or None,
            trace_id=search["trace_id"] or None,
            cursor=cursor,
            limit=PAGE,
            pattern=viewer.constraint,
        )
        rows = await hub(request).store.list_events(viewer.tenant_id, query)
        older = None
        if len(rows) == PAGE:
            last = rows[-1]
            older = "?" + urlencode({**search, "cursor": Cursor(last.time_us, last.seq).encode()})
        # the search as typed is echoed masked too: the page shows what `GET /v1/events` would
        doc = await shown(request, viewer, "/v1/events", {"data": plain(rows), "search": search})
        return self.render(
            "events.html",
            viewer,
            nav="events",
            events=link_subjects(rows, doc["data"]),
            search=doc["search"],
            older=older,
        )

    async def event(self, request: Request, viewer: Viewer) -> Response:
        h = hub(request)
        event_id = request.path_params["event_id"]
        event = await h.store.get_event(viewer.tenant_id, event_id, None)
        if event is None or not within_constraints(viewer.principal, event):
            raise NotFound(f"no event with id {event_id!r} in this tenant")
        names = {d.id: d.name for d in await h.deliveries.list_destinations(viewer.tenant_id)}
        deliveries = [
            (d, await h.deliveries.attempts(viewer.tenant_id, d.id))
            for d in await h.deliveries.for_event(viewer.tenant_id, event.seq)
        ]
        doc = await shown(
            request,
            viewer,
            f"/v1/events/{quote(event_id, safe='')}",
            {"event": plain(event), "envelope": event.to_json(), "deliveries": plain(deliveries)},
        )
        return self.render(
            "event.html",
            viewer,
            nav="events",
            event=link_subjects([event], [doc["event"]])[0],
            envelope=doc["envelope"],
            deliveries=doc["deliveries"],
            names=names,
        )

    async def subject(self, request: Request, viewer: Viewer) -> Response:
        subject = request.path_params["subject"]
        rows = await hub(request).store.list_events(
            viewer.tenant_id, EventQuery(subject=subject, limit=200, pattern=viewer.constraint)
        )
        doc = await shown(
            request,
            viewer,
            f"/v1/subjects/{quote(subject, safe='')}/timeline",
            {"subject": subject, "data": plain(rows)},
        )
        return self.render(
            "subject.html", viewer, nav="events", subject=doc["subject"], events=doc["data"]
        )

    async def dlq(self, request: Request, viewer: Viewer) -> Response:
        h = hub(request)
        rows = await h.deliveries.listing(
            viewer.tenant_id, status="dead", pattern=viewer.constraint, limit=PAGE * 2
        )
        names = {d.id: d.name for d in await h.deliveries.list_destinations(viewer.tenant_id)}
        done = request.query_params.get("done", "")
        doc = await shown(request, viewer, "/v1/dlq", {"data": plain(rows)})
        return self.render("dlq.html", viewer, nav="dlq", rows=doc["data"], names=names, done=done)

    async def _dlq_ids(
        self, request: Request, viewer: Viewer, form: dict[str, list[str]]
    ) -> list[str]:
        """The selected deliveries, those of them the key may see when it has constraints."""
        ids = form.get("ids") or []
        if not ids:
            raise BadRequest("ids: select at least one delivery")
        if len(ids) > 1000:
            raise BadRequest("ids: at most 1,000 deliveries at once")
        if viewer.constraint is not None:
            ids = await hub(request).deliveries.visible(viewer.tenant_id, ids, viewer.constraint)
        return ids

    async def dlq_retry(
        self, request: Request, viewer: Viewer, form: dict[str, list[str]]
    ) -> Response:
        h = hub(request)
        ids = await self._dlq_ids(request, viewer, form)
        n = await h.deliveries.requeue(viewer.tenant_id, ids, now_us()) if ids else 0
        await actions.audited(request, viewer, "/v1/dlq/retry", {"ids": ids, "requeued": n})
        if h.worker is not None:
            h.worker.wakeup.set()
        return RedirectResponse("/ui/dlq?" + urlencode({"done": f"{n} requeued"}), 303)

    async def dlq_archive(
        self, request: Request, viewer: Viewer, form: dict[str, list[str]]
    ) -> Response:
        h = hub(request)
        ids = await self._dlq_ids(request, viewer, form)
        n = await h.deliveries.archive(viewer.tenant_id, ids, now_us()) if ids else 0
        await actions.audited(request, viewer, "/v1/dlq/archive", {"ids": ids, "archived": n})
        return RedirectResponse("/ui/dlq?" + urlencode({"done": f"{n} archived"}), 303)

    async def destinations(self, request: Request, viewer: Viewer) -> Response:
        h = hub(request)
        opened = await queries.open_deliveries(h.store, viewer.tenant_id, viewer.constraint)
        running = bool(h.settings.run_worker)  # the hub builds a worker either way; is it run?
        rows = []
        for d in await h.deliveries.list_destinations(viewer.tenant_id):
            state = await h.deliveries.destination_state(d.id)
            rows.append(
                {
                    "destination": d,
                    "failing_since": state[1] if state else None,
                    "breaker": h.worker.breaker_state(d.id) if running and h.worker else None,
                    "open": opened.get(d.id, queries.Open()),
                }
            )
        return self.render(
            "destinations.html",
            viewer,
            nav="destinations",
            rows=rows,
            has_worker=running,
        )

    async def replay_form(self, request: Request, viewer: Viewer) -> Response:
        return await replays.form_page(self, request, viewer)

    async def replay_submit(
        self, request: Request, viewer: Viewer, form: dict[str, list[str]]
    ) -> Response:
        return await replays.submit(self, request, viewer, form)

    async def replay_progress(self, request: Request, viewer: Viewer) -> Response:
        return await replays.progress(self, request, viewer)

    async def catalog_types(self, request: Request, viewer: Viewer) -> Response:
        return await catalog.types_page(self, request, viewer)

    async def catalog_type(self, request: Request, viewer: Viewer) -> Response:
        return await catalog.type_page(self, request, viewer)

    async def live_page(self, request: Request, viewer: Viewer) -> Response:
        return await live.page(self, request, viewer)

    async def live_stream(self, request: Request, viewer: Viewer) -> Response:
        return await live.stream(self, request, viewer)
