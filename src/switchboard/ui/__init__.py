"""The web dashboard at `/ui`: server-rendered pages over the same store functions as the API,
signed in with a tenant's API key (see docs/dashboard.md). `routes(settings)` is what the app
factory adds to its own; `HANDLERS` are the pages and actions, each declared with
`api.contract.endpoint`, which `api/openapi.py` describes."""

from __future__ import annotations

from starlette.routing import BaseRoute

from switchboard.config import Settings
from switchboard.ui import (
    automations,
    catalog,
    deliveries,
    events,
    live,
    replays,
    sources,
    traces,
    views,
)
from switchboard.ui.viewer import Handler

HANDLERS: tuple[Handler, ...] = (
    *views.HANDLERS,
    *events.HANDLERS,
    *traces.HANDLERS,
    *deliveries.HANDLERS,
    *sources.HANDLERS,
    *automations.HANDLERS,
    *live.HANDLERS,
    *catalog.HANDLERS,
    *replays.HANDLERS,
)


def routes(settings: Settings) -> list[BaseRoute]:
    dashboard = views.Dashboard(settings)
    return [dashboard.route(h) for h in HANDLERS]
