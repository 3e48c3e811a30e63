"""The ingest ceiling: the same ASGI server the hub runs (uvicorn, uvloop, httptools), answering
202 to the same POST after reading and parsing its JSON body, and doing nothing else.

Run: ``python -m benchmarks.ceiling_app PORT``.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.config import Settings
from switchboard.server import server_config


async def ingest(request: Request) -> Response:
    doc = orjson.loads(await request.body())
    n = len(doc) if isinstance(doc, list) else 1
    return Response(orjson.dumps({"accepted": n}), 202, media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/v1/events", ingest, methods=["POST"]), Route("/health", health)])


def serve(asgi: Any, port: int) -> None:
    """Run `asgi` with the server configuration `switchboard serve` runs (`server_config`)."""
    config = server_config(asgi, Settings.from_env(), host="127.0.0.1", port=port, lifespan="auto")
    uvicorn.Server(config).run()


def main() -> None:
    serve(app, int(sys.argv[1]))


if __name__ == "__main__":
    main()
