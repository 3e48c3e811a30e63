"""The dashboard's guards over plain HTTP, on both stores: the session cookie, CSRF tokens,
scopes, tenant isolation and bad input. (The browser tests walk the same pages as a person.)"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

import pytest

from switchboard.audit import action_name
from switchboard.auth import mint_key
from switchboard.envelope import now_us
from switchboard.ui import session as sess
from tests.conftest import Api

pytestmark = pytest.mark.security

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """Just enough of a browser: keeps the cookies it is given, does not follow redirects."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.cookies: dict[str, str] = {}
        self.set_cookie: list[str] = []

    async def request(
        self, method: str, path: str, form: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, Any]:
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            h.setdefault("Content-Type", FORM["Content-Type"])
        async with self.api.session.request(
            method, self.api.url + path, data=form, headers=h, allow_redirects=False
        ) as resp:
            self.set_cookie = resp.headers.getall("Set-Cookie", [])
            for raw in self.set_cookie:
                for name, morsel in SimpleCookie(raw).items():
                    if morsel["max-age"] == "0" or morsel.value == "":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return resp.status, await resp.text(), resp.headers

    async def sign_in(self, key: str) -> tuple[int, str, Any]:
        status, page, _ = await self.request("GET", "/ui/sign-in")
        assert status == 200
        token = CSRF_RE.search(page)
        assert token is not None
        return await self.request("POST", "/ui/sign-in", f"csrf={token[1]}&key={key}")

    async def csrf(self, path: str = "/ui/dlq") -> str:
        status, page, _ = await self.request("GET", path)
        assert status == 200, page
        token = CSRF_RE.search(page)
        assert token is not None
        return token[1]


async def test_sign_in_sets_a_strict_httponly_cookie_without_the_key(api: Api) -> None:
    _, key = await api.tenant()
    b = Browser(api)
    status, _, headers = await b.sign_in(key)
    assert status == 303 and headers["Location"] == "/ui"
    (cookie,) = [c for c in b.set_cookie if c.startswith(sess.COOKIE + "=")]
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/ui" in flags
    assert "secure" not in flags  # plain http here; AUTO sets it over https
    payload = sess._unb64(b.cookies[sess.COOKIE].split(".")[0]).decode()
    assert key not in cookie and key not in payload  # the key id and prefix only
    status, page, headers = await b.request("GET", "/ui")
    assert status == 200 and "<h1>Overview</h1>" in page
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"


async def test_wrong_key_admin_key_and_stale_form_are_refused(api: Api) -> None:
    b = Browser(api)
    status, page, _ = await b.sign_in("sb_" + "x" * 43)
    assert status == 401 and "unknown or revoked" in page and sess.COOKIE not in b.cookies
    status, page, _ = await b.sign_in(api.admin_key)
    assert status == 403 and "tenant&#39;s key" in page and sess.COOKIE not in b.cookies
    _, key = await api.tenant()
    status, page, _ = await Browser(api).request("POST", "/ui/sign-in", f"csrf=forged&key={key}")
    assert status == 403 and "stale" in page
    status, page, _ = await b.request(
        "POST", "/ui/sign-in", "csrf=x", {"Content-Type": "text/plain"}
    )
    assert status == 400 and "application/x-www-form-urlencoded" in page


async def test_actions_need_the_sessions_csrf_token_and_the_manage_scope(api: Api) -> None:
    _, key = await api.tenant()
    b = Browser(api)
    await b.sign_in(key)
    token = await b.csrf()
    status, page, _ = await b.request("POST", "/ui/dlq/retry", "ids=d1")
    assert status == 403 and "CSRF" in page
    status, page, _ = await b.request("POST", "/ui/dlq/retry", "ids=d1&csrf=" + "A" * len(token))
    assert status == 403 and "CSRF" in page
    status, _, headers = await b.request("POST", "/ui/dlq/retry", f"ids=d1&csrf={token}")
    assert status == 303 and headers["Location"] == "/ui/dlq?done=0+requeued"
    # the action is in the audit log, as the API's would be, with the signed-in key
    status, audit, _ = await api.call("GET", "/v1/audit", key)
    assert status == 200, audit
    [entry] = [e for e in audit["data"] if e["path"] == "/ui/dlq/retry"]
    assert entry["action"] == action_name("POST", "/v1/dlq/retry")
    assert entry["after"]["ids"] == ["d1"] and entry["after"]["via"] == "dashboard"
    # another session's token does not fit this one
    other = Browser(api)
    await other.sign_in(key)
    status, _, _ = await other.request("POST", "/ui/dlq/archive", f"ids=d1&csrf={token}")
    assert status == 403
    # a read-only key can look but not act
    tid, _ = await api.tenant()
    reader, record = mint_key(tid, "reader", ["read"])
    await api.hub.store.create_key(record)
    r = Browser(api)
    assert (await r.sign_in(reader))[0] == 303
    status, page, _ = await r.request("POST", "/ui/dlq/retry", f"ids=d1&csrf={await r.csrf()}")
    assert status == 403 and "manage" in page
    # without a session at all
    status, _, _ = await Browser(api).request("POST", "/ui/dlq/retry", f"ids=d1&csrf={token}")
    assert status == 401


async def test_a_revoked_key_or_altered_cookie_ends_the_session(api: Api) -> None:
    tid, _ = await api.tenant()
    secret, record = mint_key(tid, "short-lived", ["read", "manage"])
    await api.hub.store.create_key(record)
    b = Browser(api)
    await b.sign_in(secret)
    assert (await b.request("GET", "/ui/events"))[0] == 200
    payload, sig = b.cookies[sess.COOKIE].split(".")
    b.cookies[sess.COOKIE] = payload + "." + sig[::-1]
    status, _, headers = await b.request("GET", "/ui/events")
    assert status == 303 and headers["Location"] == "/ui/sign-in"
    b.cookies[sess.COOKIE] = payload + "." + sig
    assert (await b.request("GET", "/ui/events"))[0] == 200
    assert await api.hub.store.revoke_key(tid, record.id, now_us())
    status, _, headers = await b.request("GET", "/ui/events")
    assert status == 303 and headers["Location"] == "/ui/sign-in"


async def test_pages_show_only_the_tenants_own_data_and_bad_input_is_a_4xx(api: Api) -> None:
    _, key = await api.tenant()
    _, other = await api.tenant()
    for k, eid in ((key, "mine-1"), (other, "theirs-1")):
        status, _, _ = await api.call(
            "POST", "/v1/events", k, json={"id": eid, "type": "a.b", "subject": "s-1", "data": {}}
        )
        assert status == 202
    b = Browser(api)
    await b.sign_in(key)
    status, page, _ = await b.request("GET", "/ui/events/mine-1")
    assert status == 200 and "mine-1" in page
    status, page, _ = await b.request("GET", "/ui/events/theirs-1")
    assert status == 404 and "theirs-1" in page and "Not found" in page
    status, page, _ = await b.request("GET", "/ui/subjects/s-1")
    assert status == 200 and "mine-1" in page and "theirs-1" not in page
    status, page, _ = await b.request("GET", "/ui/events?type=a.b")
    assert "mine-1" in page and "theirs-1" not in page
    status, page, _ = await b.request("GET", "/ui/events?type=" + "A%20B")
    assert status == 400 and "type:" in page
    status, page, _ = await b.request("GET", "/ui/events?cursor=%%%")
    assert status == 400 and "cursor" in page
    status, page, _ = await b.request("GET", "/ui/events?subject=<script>alert(1)</script>")
    assert status == 200 and "<script>alert(1)" not in page and "&lt;script&gt;" in page


async def test_the_catalog_browser_shows_the_tenants_types_and_not_anothers(api: Api) -> None:
    _, key = await api.tenant()
    _, other = await api.tenant()
    schema = {"type": "object", "required": ["plan"], "properties": {"plan": {"type": "string"}}}
    for k, name in ((key, "trial.started"), (other, "their.secret")):
        body = {
            "owner": "growth",
            "pii": ["email"],
            "versions": [{"version": "1.0", "schema": schema, "examples": [{"plan": "gold"}]}],
        }
        status, answer, _ = await api.call("PUT", f"/v1/event-types/{name}", k, json=body)
        assert status in (200, 201), answer
    b = Browser(api)
    await b.sign_in(key)
    status, page, _ = await b.request("GET", "/ui/catalog")
    assert status == 200 and "trial.started" in page and "their.secret" not in page
    status, page, _ = await b.request("GET", "/ui/catalog/trial.started")
    assert status == 200 and "Version 1.0 (current)" in page and '"plan": "gold"' in page
    status, page, _ = await b.request("GET", "/ui/catalog/their.secret")
    assert status == 404 and "Not found" in page


async def test_the_overview_counts_come_from_an_index_on_attempts(api: Api) -> None:
    """Migration 0012's index serves the overview's attempts query (SQLite's plan names it; on
    PostgreSQL, whose plan for an empty table is a scan whatever the indexes, it exists with the
    query's columns), so the query reads one tenant's last day, not every attempt."""
    from switchboard.ui.queries import ATTEMPTS_BY_HOUR

    store = api.hub.store
    if store.dialect == "postgres":
        rows = await store.fetch(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_attempts_tenant_started'"
        )
        assert rows and "(tenant_id, started_us)" in rows[0][0]
        return
    params = (3_600_000_000, 3_600_000_000, "t", 0)
    rows = await store.fetch("EXPLAIN QUERY PLAN " + ATTEMPTS_BY_HOUR, params)
    assert "ix_attempts_tenant_started" in " ".join(str(r) for r in rows)


async def test_a_key_holds_at_most_four_live_tails(api: Api) -> None:
    """Streams are opened over raw connections and read up to their first message; the fifth
    is refused while four are open, and a closed one frees its place."""
    import asyncio

    from switchboard.ui.live import MAX_STREAMS

    _, key = await api.tenant()
    b = Browser(api)
    await b.sign_in(key)
    cookie = "; ".join(f"{k}={v}" for k, v in b.cookies.items())
    port = int(api.url.rsplit(":", 1)[1])

    async def open_stream() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ui/live/stream?after=0 HTTP/1.1\r\nHost: x\r\nCookie: "
            + cookie.encode()
            + b"\r\n\r\n"
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        return reader, writer, head

    opened = []
    for _ in range(MAX_STREAMS):
        reader, writer, head = await open_stream()
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        assert b"retry: 2000" in await reader.readuntil(b"\n\n")  # the stream has begun
        opened.append(writer)
    _, writer, head = await open_stream()
    assert head.startswith(b"HTTP/1.1 429")
    writer.close()
    for w in opened:
        w.close()
        await w.wait_closed()

    loop = asyncio.get_running_loop()
    end = loop.time() + 60
    while True:  # the hub notices the closed connections and frees their places
        _, writer, head = await open_stream()
        writer.close()
        if head.startswith(b"HTTP/1.1 200"):
            break
        assert loop.time() < end, "the closed streams did not free their places"
        await asyncio.sleep(0.1)


async def test_destinations_page_says_when_no_worker_runs_here(hub_api: Api) -> None:
    _, key = await hub_api.tenant()
    body = {"name": "crm", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}
    status, answer, _ = await hub_api.call("POST", "/v1/destinations", key, json=body)
    assert status == 201, answer
    b = Browser(hub_api)
    await b.sign_in(key)
    status, page, _ = await b.request("GET", "/ui/destinations")
    assert status == 200 and "No delivery worker runs in this process" in page
    assert '<th scope="row">crm</th>' in page and ">idle<" not in page.replace("\n", "")
