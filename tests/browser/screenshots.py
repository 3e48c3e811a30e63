"""`make screenshots`: a PNG of every dashboard page, of the API docs page and of the unsubscribe
page, into a folder (docs/images/ by default). It serves a hub on a temporary SQLite file, fills
one demo tenant with a day of events and two webhook receivers on 127.0.0.1 (one answering 200,
one 500, so the DLQ has something in it), and photographs the pages in headless Chromium."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from switchboard import unsubscribe
from switchboard.config import Settings
from tests.browser.conftest import require_browser, start_browser, waiter
from tests.conftest import LOOPBACK, Api, serve

WIDTH = 1280
UNSUBSCRIBE_SECRET = "screenshots-only-" + "s" * 32


async def receiver(status: int) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


async def seed(api: Api, ok_url: str, failing_url: str) -> tuple[str, str]:
    """The demo tenant: two destinations, two routes, an automation, a day of events. Returns
    (key, an event id with a delivered webhook)."""
    _, key = await api.tenant("clinica-demo")
    for name, url, schedule in (("crm", ok_url, "0,1s"), ("billing", failing_url, "0")):
        body = {"name": name, "kind": "webhook", "config": {"url": url}, "retry_schedule": schedule}
        status, answer, _ = await api.call("POST", "/v1/destinations", key, json=body)
        assert status == 201, answer
    for route in (
        {"name": "leads", "types": ["lead.*", "appointment.*"], "destinations": ["crm"]},
        {"name": "payments", "types": ["payment.*"], "destinations": ["billing"]},
    ):
        status, answer, _ = await api.call("POST", "/v1/routes", key, json=route)
        assert status == 201, answer
    visit = {
        "type": "object",
        "required": ["patient"],
        "properties": {
            "patient": {"type": "string", "minLength": 1},
            "channel": {"enum": ["site", "whatsapp", "phone"]},
            "unit": {"type": "string"},
        },
    }
    for name, description in (
        ("lead.created", "Someone asked about care through the site or WhatsApp."),
        ("appointment.scheduled", "A first visit was booked for a patient."),
        ("appointment.confirmed", "The patient confirmed the visit."),
    ):
        body = {
            "description": description,
            "owner": "recepcao",
            "pii": ["patient"],
            "versions": [
                {
                    "version": "1.0",
                    "schema": visit,
                    "examples": [{"patient": "patient-1", "channel": "site", "unit": "Centro"}],
                }
            ],
        }
        status, answer, _ = await api.call("PUT", f"/v1/event-types/{name}", key, json=body)
        assert status in (200, 201), answer
    welcome = {
        "name": "welcome",
        "description": "Greet a new lead, then check on them two hours later.",
        "on": "lead.created",
        "steps": [{"id": "greet", "send": {"destination": "crm"}}, {"wait": "2h"}],
    }
    status, answer, _ = await api.call("PUT", "/v1/automations/welcome", key, json=welcome)
    assert status == 201, answer
    now = datetime.now(UTC)
    events = []
    for i in range(72):
        when = now - timedelta(minutes=20 * i + 3)
        patient = f"patient-{i % 5 + 1}"
        kind = ("lead.created", "appointment.scheduled", "appointment.confirmed")[i % 3]
        events.append(
            {
                "id": f"evt-{i:03d}",
                "type": kind,
                "time": when.isoformat(),
                "subject": patient,
                "actor": {"id": "recepcao", "type": "user"},
                "data": {"patient": patient, "channel": "site", "unit": "Centro"},
            }
        )
    for i in range(4):
        events.append(
            {
                "id": f"pay-{i}",
                "type": "payment.failed",
                "subject": f"patient-{i + 1}",
                "data": {"amount": 120 + 15 * i, "currency": "BRL"},
            }
        )
    status, answer, _ = await api.call("POST", "/v1/events", key, json=events)
    assert status == 202, answer

    async def settled() -> bool:
        _, dlq, _ = await api.call("GET", "/v1/dlq", key)
        _, done, _ = await api.call("GET", "/v1/deliveries?status=succeeded&limit=1000", key)
        return len(dlq["data"]) >= 4 and len(done["data"]) >= 72

    loop = asyncio.get_running_loop()
    end = loop.time() + 120
    while not await settled():
        if loop.time() > end:
            raise SystemExit("the demo deliveries did not settle within two minutes")
        await asyncio.sleep(0.2)
    return key, "evt-000"


async def seed_sources(api: Api, key: str) -> dict[str, str]:
    """Two sources: site forms (no verification) with a few requests, and a GitHub one that
    refused an unsigned request. Returns the pages of the first, its first request, a run of
    the automation and a delivery of evt-000, by name."""
    made = {}
    for body in (
        {"name": "site-forms", "preset": "none"},
        {"name": "github", "preset": "github", "secrets": ["demo-github-secret"]},
    ):
        status, answer, _ = await api.call("POST", "/v1/sources", key, json=body)
        assert status == 201, answer
        made[body["name"]] = answer["id"]
    for n, unit in enumerate(("Centro", "Savassi", "Centro")):
        form = {"form": "contact", "unit": unit, "patient": f"patient-{n + 6}", "channel": "site"}
        path = f"/v1/sources/{made['site-forms']}/webhook"
        assert (await api.call("POST", path, json=form))[0] == 200
    path = f"/v1/sources/{made['github']}/webhook"
    assert (await api.call("POST", path, json={"zen": "unsigned"}))[0] == 401
    _, log, _ = await api.call("GET", f"/v1/sources/{made['site-forms']}/requests", key)
    _, runs, _ = await api.call("GET", "/v1/automations/welcome/runs?limit=1", key)
    _, sent, _ = await api.call("GET", "/v1/events/evt-000/deliveries", key)
    _, event, _ = await api.call("GET", "/v1/events/evt-000", key)
    source = f"/ui/sources/{made['site-forms']}"
    return {
        "trace": f"/ui/traces/{event['trace_id']}",
        "delivery": f"/ui/deliveries/{sent['data'][0]['id']}",
        "source": source,
        "request": f"{source}/requests/{log['data'][-1]['id']}",
        "run": f"/ui/runs/{runs['data'][0]['id']}",
    }


def photograph(
    driver: Any, url: str, path: Path, ready: tuple[str, str], lo: int = 600, hi: int = 1600
) -> None:
    """The page at `url` once `ready` is there, as tall as the page (between lo and hi px)."""
    driver.set_window_size(WIDTH, 900)
    if url:
        driver.get(url)
    waiter(driver)(ec.presence_of_element_located(ready))
    height = driver.execute_script("return document.documentElement.scrollHeight")
    # the whole page in one picture: the viewport is made as tall as the page
    metrics = {"width": WIDTH, "height": min(max(int(height), lo), hi)}
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**metrics, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    print(f"wrote {path}")


def shoot(
    driver: Any,
    base: str,
    key: str,
    event_id: str,
    more: dict[str, str],
    token: str,
    out: Path,
) -> None:
    h1 = (By.TAG_NAME, "h1")
    photograph(driver, base + "/ui/sign-in", out / "dashboard-sign-in.png", (By.ID, "key"))
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    waiter(driver)(ec.presence_of_element_located((By.ID, "events-total")))
    pages = [
        ("/ui", "dashboard-overview.png", (By.ID, "events-chart-title")),
        ("/ui/events", "dashboard-events.png", h1),
        ("/ui/live", "dashboard-live.png", (By.XPATH, "//p[starts-with(., 'Live:')]")),
        (f"/ui/events/{event_id}", "dashboard-event.png", (By.CSS_SELECTOR, "section.delivery")),
        ("/ui/subjects/patient-1", "dashboard-subject.png", (By.CSS_SELECTOR, "ol.timeline")),
        (more["trace"], "dashboard-trace.png", (By.CSS_SELECTOR, "ol.trace")),
        ("/ui/deliveries", "dashboard-deliveries.png", (By.CSS_SELECTOR, "table.deliveries")),
        (more["delivery"], "dashboard-delivery.png", (By.CSS_SELECTOR, "table.attempts")),
        ("/ui/sources", "dashboard-sources.png", (By.CSS_SELECTOR, "table.sources")),
        (more["source"], "dashboard-source.png", (By.CSS_SELECTOR, "table.requests")),
        (more["request"], "dashboard-source-request.png", (By.CSS_SELECTOR, "pre.json")),
        ("/ui/automations", "dashboard-automations.png", (By.CSS_SELECTOR, "table.automations")),
        ("/ui/automations/welcome", "dashboard-automation.png", (By.CSS_SELECTOR, "table.runs")),
        (more["run"], "dashboard-run.png", (By.CSS_SELECTOR, "table.steps")),
        ("/ui/dlq", "dashboard-dlq.png", (By.ID, "retry")),
        ("/ui/destinations", "dashboard-destinations.png", h1),
        ("/ui/catalog", "dashboard-catalog.png", h1),
        ("/ui/catalog/lead.created", "dashboard-event-type.png", h1),
        ("/ui/events/no-such-event", "dashboard-not-found.png", h1),
    ]
    for path, name, ready in pages:
        photograph(driver, base + path, out / name, ready)
    driver.get(base + "/ui/replays")
    driver.find_element(By.ID, "types").send_keys("appointment.*")
    driver.find_element(By.ID, "dry-run").click()
    photograph(driver, "", out / "dashboard-replay.png", (By.ID, "plan-summary"))
    docs_ready = (By.CSS_SELECTOR, ".swagger-ui .info")
    photograph(driver, base + "/docs", out / "api-docs.png", docs_ready, hi=1400)
    photograph(
        driver,
        f"{base}/v1/unsubscribe/{token}",
        out / "unsubscribe.png",
        (By.TAG_NAME, "button"),
        lo=440,
        hi=440,
    )


async def main(out: Path) -> None:
    require_browser_or_exit()
    out.mkdir(parents=True, exist_ok=True)
    ok_runner, ok_url = await receiver(200)
    bad_runner, bad_url = await receiver(500)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'hub.db'}",
            key_rate=0,
            tenant_rate=0,
            egress_allow=LOOPBACK,
            unsubscribe_secret=UNSUBSCRIBE_SECRET,
            internal_events="dead",  # the demo's charts show the sent events, not the hub's own
        )
        try:
            async with serve(settings) as api:
                key, event_id = await seed(api, ok_url, bad_url)
                more = await seed_sources(api, key)
                token = unsubscribe.token(
                    UNSUBSCRIBE_SECRET, "clinica-demo", "patient-1", "marketing", "email"
                )
                driver = await asyncio.to_thread(start_browser, WIDTH, 900)
                try:
                    await asyncio.to_thread(shoot, driver, api.url, key, event_id, more, token, out)
                finally:
                    await asyncio.to_thread(driver.quit)
        finally:
            await ok_runner.cleanup()
            await bad_runner.cleanup()


def require_browser_or_exit() -> None:
    try:
        require_browser()
    except BaseException as exc:  # pytest's skip/fail outside a test: say why and stop
        raise SystemExit(f"make screenshots needs Chromium: {exc}") from None


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")))
