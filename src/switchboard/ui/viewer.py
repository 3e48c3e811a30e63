"""Who is looking at a dashboard page, what the page modules need from the dashboard (the
values the views pass down, so the page modules need not import the views), and how a page or
an action is declared: `@page` and `@action` give its handler an `api.contract` Endpoint, so
the OpenAPI document describes the dashboard from the same declarations it is served from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.contract import PUBLIC, Params, Raw, endpoint
from switchboard.auth import Principal
from switchboard.patterns import Pattern
from switchboard.store import ApiKey, Scope

TAG = "dashboard"
HTML = Raw("text/html")
FORM_TYPE = "application/x-www-form-urlencoded"
SCOPE_KEY = "switchboard.dashboard"  # ASGI scope key: the Dashboard serving the request
Handler = Callable[[Request], Awaitable[Response]]
Form = dict[str, list[str]]


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the signed-in key, its tenant and the session's CSRF token."""

    key: ApiKey
    tenant_id: str
    csrf: str

    def can(self, scope: Scope) -> bool:
        return scope in self.key.scopes

    @property
    def principal(self) -> Principal:
        """The key as the API sees it: what it may see of its tenant."""
        return Principal(self.key, self.tenant_id)

    @property
    def constraint(self) -> Pattern | None:
        """The key's constraints (None: the whole tenant); every page narrows its reads by them."""
        return self.principal.constraint


class Pages(Protocol):
    """What a page module uses of the dashboard."""

    streams: dict[str, int]  # live tails open per key id, in this process

    def render(
        self, name: str, viewer: Viewer | None, status: int = 200, **context: Any
    ) -> Response: ...

    async def serve_page(self, request: Request, view: View) -> Response: ...

    async def serve_action(self, request: Request, act: Act, scope: Scope) -> Response: ...


View = Callable[[Pages, Request, Viewer], Awaitable[Response]]
Act = Callable[[Pages, Request, Viewer, Form], Awaitable[Response]]


def dashboard_of(request: Request) -> Pages:
    """The dashboard that serves this request (its route put it in the scope)."""
    found: Pages = request.scope[SCOPE_KEY]
    return found


SIGN_IN_REDIRECT = (None, "Not signed in (or the session ended): a redirect to `/ui/sign-in`.")
REFUSED = "An HTML page saying why: {}."


def page(
    route: str,
    op_id: str,
    summary: str,
    description: str,
    *,
    path: type[Params] | None = None,
    query: type[Params] | None = None,
    refusals: dict[int, str] | None = None,
    ok: Raw = HTML,
) -> Callable[[View], Handler]:
    """A page: signed in with a key that has `read`; answers HTML (or `ok`), a 303 to the
    sign-in form without a session, and its errors (`refusals`: status → why) as HTML pages
    with the API's statuses."""
    replies: dict[int, tuple[Any, str]] = {
        200: (ok, "The page." if ok is HTML else "The answer."),
        303: SIGN_IN_REDIRECT,
        403: (HTML, REFUSED.format("the key lacks the `read` scope")),
    }
    for status, why in (refusals or {}).items():
        replies[status] = (HTML, REFUSED.format(why))

    def declare(view: View) -> Handler:
        async def handle(request: Request) -> Response:
            return await dashboard_of(request).serve_page(request, view)

        handle.__qualname__ = view.__qualname__
        return endpoint(
            route,
            op_id,
            TAG,
            summary,
            description,
            scope=PUBLIC,
            path=path,
            query=query,
            ok=replies,
        )(handle)

    return declare


def form_body(**fields: dict[str, Any]) -> Raw:
    """A form's body: the session's `csrf` token and `fields` (JSON Schemas of their values)."""
    return Raw(
        FORM_TYPE,
        {
            "type": "object",
            "properties": {"csrf": {"type": "string", "description": "The session's token."}}
            | fields,
            "required": ["csrf"],
        },
    )


def action(
    route: str,
    op_id: str,
    summary: str,
    description: str,
    *,
    scope: Scope,
    body: Raw,
    path: type[Params] | None = None,
    again: str = "",
) -> Callable[[Act], Handler]:
    """A form post: signed in, the session's CSRF token in the form, and the key's `scope`;
    done, it redirects (303) to the page to show next (or answers `again`, a page, with 200)."""
    replies: dict[int, tuple[Any, str]] = {
        303: (None, "Done: a redirect to the page to show next."),
        401: (HTML, REFUSED.format("there is no session")),
        403: (HTML, REFUSED.format(f"a missing or stale CSRF token, or no `{scope}` scope")),
    }
    if again:
        replies[200] = (HTML, again)

    def declare(act: Act) -> Handler:
        async def handle(request: Request) -> Response:
            return await dashboard_of(request).serve_action(request, act, scope)

        handle.__qualname__ = act.__qualname__
        return endpoint(
            route,
            op_id,
            TAG,
            summary,
            description,
            scope=PUBLIC,
            path=path,
            body=body,
            ok=replies,
        )(handle)

    return declare
