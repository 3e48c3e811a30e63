"""Who is looking at a dashboard page, and what the page modules need from the dashboard: the
values the views pass down (so the page modules need not import the views)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response

from switchboard.auth import Principal
from switchboard.patterns import Pattern
from switchboard.store import ApiKey, Scope


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
