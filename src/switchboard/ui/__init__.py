"""The web dashboard at `/ui`: server-rendered pages over the same store functions as the API,
signed in with a tenant's API key (see docs/dashboard.md). `routes(settings)` is what the app
factory adds to its own."""

from __future__ import annotations

from starlette.routing import BaseRoute

from switchboard.config import Settings
from switchboard.ui.views import Dashboard


def routes(settings: Settings) -> list[BaseRoute]:
    return Dashboard(settings).routes()
