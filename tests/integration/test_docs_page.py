"""/docs works offline: Swagger UI comes from the hub itself, never from a third-party host."""

from __future__ import annotations

import re

from tests.conftest import Api


async def test_docs_page_references_no_external_host_and_its_assets_answer(
    sqlite_api: Api,
) -> None:
    status, body, _ = await sqlite_api.call("GET", "/docs")
    assert status == 200
    html = body.decode() if isinstance(body, bytes) else str(body)
    assert not re.search(r"(https?:)?//", html.replace("<!doctype", "")), html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"/docs/assets/swagger-ui.css", "/docs/assets/swagger-ui-bundle.js"} <= set(assets)
    for path in assets:
        status, asset, headers = await sqlite_api.call("GET", path)
        assert status == 200, path
        if path.startswith("/docs/assets/"):
            assert len(asset) > 500, path
    _, script, headers = await sqlite_api.call("GET", "/docs/assets/swagger-ui-bundle.js")
    assert headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in script


async def test_docs_assets_serve_only_the_page_files(sqlite_api: Api) -> None:
    for name in ("index.html", "..%2F__init__.py", "swagger-ui.js.map"):
        status, _, _ = await sqlite_api.call("GET", f"/docs/assets/{name}")
        assert status == 404, name
