"""The dashboard as a person uses it, in headless Chromium: sign in, find events sent through
the API, open one and its subject's timeline, retry a dead delivery until a real receiver takes
it, and be refused a wrong key, another tenant's event and a form without its CSRF token.

Selenium blocks, and the hub serves on this test's event loop: every browser step runs in a
thread (`asyncio.to_thread`) so the hub keeps answering."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.conftest import waiter
from tests.conftest import Api
from tests.integration.conftest import Receiver

DEADLINE = 60.0  # seconds for the worker to reach a state, on a loaded machine


async def until(check: Any, what: str) -> Any:
    """Poll an async check until it answers something truthy (no fixed sleeps in assertions)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def dead_deliveries(api: Api, key: str, n: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        status, body, _ = await api.call("GET", "/v1/dlq", key)
        assert status == 200
        return body["data"] if len(body["data"]) >= n else None

    result: list[dict[str, Any]] = await until(check, f"{n} dead deliveries")
    return result


async def setup_tenant(api: Api, receiver: Receiver) -> tuple[str, list[str]]:
    """A tenant whose route sends lead.* to `receiver` with a single attempt, and three events
    about one subject; returns (key, event ids)."""
    _, key = await api.tenant()
    status, _, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        json={
            "name": "crm",
            "kind": "webhook",
            "config": {"url": receiver.url},
            "retry_schedule": "0",
        },
    )
    assert status == 201
    status, _, _ = await api.call(
        "POST",
        "/v1/routes",
        key,
        json={"name": "leads", "types": ["lead.*"], "destinations": ["crm"]},
    )
    assert status == 201
    ids = [f"lead-{i}" for i in range(3)]
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        json=[
            {
                "id": i,
                "type": "lead.created",
                "subject": "patient-42",
                "trace_id": "trace-browser-1",
                "data": {"name": f"Lead {n}"},
            }
            for n, i in enumerate(ids)
        ],
    )
    assert status == 202, body
    return key, ids


def sign_in(driver: Any, base: str, key: str) -> None:
    wait = waiter(driver)
    driver.get(base + "/ui")
    wait(ec.presence_of_element_located((By.ID, "key")))
    assert driver.current_url.endswith("/ui/sign-in")
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def heading(driver: Any) -> str:
    text: str = waiter(driver)(ec.presence_of_element_located((By.TAG_NAME, "h1"))).text
    return text


@pytest.mark.security
async def test_sign_in_find_events_and_retry_a_dead_delivery(
    api: Api,
    receivers: Any,
    clean_browser: Any,
) -> None:
    receiver: Receiver = await receivers(default=500)
    key, ids = await setup_tenant(api, receiver)
    _, other_key = await api.tenant()
    status, _, _ = await api.call(
        "POST", "/v1/events", other_key, json={"id": "secret-1", "type": "lead.created", "data": {}}
    )
    assert status == 202
    dead = await dead_deliveries(api, key, 3)
    driver = clean_browser
    wait = waiter(driver)

    def wrong_key_then_right_one() -> None:
        sign_in(driver, api.url, "sb_notakey0000000000000000000000000000000")
        alert = wait(ec.presence_of_element_located((By.ID, "sign-in-error")))
        assert "unknown or revoked" in alert.text
        sign_in(driver, api.url, key)
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        # the three sent, and the hub's own switchboard.delivery_dead events about them
        assert int(driver.find_element(By.ID, "events-total").text) >= 3
        assert driver.find_element(By.ID, "dlq-size").text == "3"
        # the session cookie is out of JavaScript's reach
        assert "sb_session" not in driver.execute_script("return document.cookie")

    await asyncio.to_thread(wrong_key_then_right_one)

    def events_list_event_and_timeline() -> None:
        driver.find_element(By.LINK_TEXT, "Events").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Events"))
        shown = driver.find_elements(By.CSS_SELECTOR, "table.events tbody tr td code")
        assert set(ids) <= {c.text for c in shown}
        driver.find_element(By.ID, "type").send_keys("lead.*")
        driver.find_element(By.CSS_SELECTOR, "form.search button").click()
        wait(ec.url_contains("type=lead."))
        shown = driver.find_elements(By.CSS_SELECTOR, "table.events tbody tr td code")
        assert sorted(c.text for c in shown) == ids
        # the trace holds the hub's delivery_dead events too; with the type, only the three
        driver.find_element(By.ID, "trace_id").send_keys("trace-browser-1")
        driver.find_element(By.CSS_SELECTOR, "form.search button").click()
        wait(ec.url_contains("trace_id=trace-browser-1"))
        shown = driver.find_elements(By.CSS_SELECTOR, "table.events tbody tr td code")
        assert sorted(c.text for c in shown) == ids
        driver.find_element(By.LINK_TEXT, ids[0]).click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), ids[0]))
        delivery = driver.find_element(By.CSS_SELECTOR, "section.delivery h3").text
        assert "crm" in delivery and "dead" in delivery
        assert "HTTP 500" in driver.find_element(By.CSS_SELECTOR, "section.delivery").text
        driver.find_element(By.LINK_TEXT, "patient-42").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Timeline of patient-42"))
        kinds = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "ol.timeline li a")]
        assert kinds.count("lead.created") == 3

    await asyncio.to_thread(events_list_event_and_timeline)

    receiver.default = 200  # the receiver is back: a retry from the DLQ page now succeeds
    chosen = next(d for d in dead if d["event"]["id"] == ids[0])

    def retry_from_the_dlq_page() -> None:
        driver.find_element(By.LINK_TEXT, "Dead letters").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dead-letter queue"))
        driver.find_element(By.ID, "pick-" + chosen["id"]).click()
        driver.find_element(By.ID, "retry").click()
        done = wait(ec.presence_of_element_located((By.ID, "dlq-done")))
        assert done.text == "1 requeued."

    await asyncio.to_thread(retry_from_the_dlq_page)

    async def succeeded() -> bool:
        status, body, _ = await api.call("GET", f"/v1/deliveries/{chosen['id']}", key)
        return status == 200 and body["status"] == "succeeded"

    await until(succeeded, "the retried delivery to succeed")
    assert [r["json"]["id"] for r in receiver.received if r["json"]].count(ids[0]) == 2

    def refusals_and_sign_out() -> None:
        driver.get(f"{api.url}/ui/events/{ids[0]}")
        wait(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, "section.delivery h3"), "succeeded")
        )
        driver.get(f"{api.url}/ui/events/secret-1")  # the other tenant's event
        assert heading(driver) == "Not found"
        # a form whose CSRF token was taken out is refused, and nothing is archived
        driver.get(api.url + "/ui/dlq")
        wait(ec.presence_of_element_located((By.ID, "archive")))
        driver.execute_script(
            "document.querySelector('main input[name=csrf]').remove();"
            "document.querySelector('main input[name=ids]').checked = true;"
        )
        driver.find_element(By.ID, "archive").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Not allowed"))
        assert "CSRF" in driver.find_element(By.CSS_SELECTOR, "p.error").text
        driver.get(api.url + "/ui/dlq")
        wait(ec.presence_of_element_located((By.ID, "archive")))
        assert len(driver.find_elements(By.CSS_SELECTOR, "input[name=ids]")) == 2
        driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
        wait(ec.url_contains("/ui/sign-in"))
        driver.get(api.url + "/ui/dlq")
        wait(ec.url_contains("/ui/sign-in"))

    await asyncio.to_thread(refusals_and_sign_out)


async def test_a_trace_the_deliveries_and_a_sources_request_log(
    api: Api,
    receivers: Any,
    clean_browser: Any,
) -> None:
    receiver: Receiver = await receivers(default=200)
    key, ids = await setup_tenant(api, receiver)
    _, other_key = await api.tenant()
    secret = {"id": "secret-1", "type": "lead.created", "trace_id": "trace-secret", "data": {}}
    assert (await api.call("POST", "/v1/events", other_key, json=secret))[0] == 202
    status, source, _ = await api.call(
        "POST", "/v1/sources", key, json={"name": "forms", "preset": "none"}
    )
    assert status == 201, source
    form = {"form": "contact", "order": "A-77"}
    status, _, _ = await api.call("POST", f"/v1/sources/{source['id']}/webhook", json=form)
    assert status == 200

    async def delivered() -> bool:
        status, body, _ = await api.call("GET", "/v1/deliveries?status=succeeded", key)
        return status == 200 and len(body["data"]) == 3

    await until(delivered, "the three deliveries to succeed")
    driver = clean_browser
    wait = waiter(driver)

    def open_a_trace_and_its_delivery() -> None:
        sign_in(driver, api.url, key)
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        driver.get(f"{api.url}/ui/events/{ids[0]}")
        wait(ec.presence_of_element_located((By.ID, "trace-link"))).click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Trace trace-browser-1"))
        # the three leads (and the hub's own events about their deliveries, in the same trace)
        events = driver.find_elements(By.CSS_SELECTOR, "ol.trace li.kind-event")
        assert {i for i in ids for e in events if f"lead.created {i}" in e.text} == set(ids)
        assert len(driver.find_elements(By.CSS_SELECTOR, "ol.trace li.kind-delivery")) >= 3
        attempt = driver.find_element(By.CSS_SELECTOR, "ol.trace li.kind-attempt")
        assert "attempt 1" in attempt.text and "ok" in attempt.text and "HTTP 200" in attempt.text
        delivery = driver.find_element(By.CSS_SELECTOR, "ol.trace li.kind-delivery")
        assert "to crm" in delivery.text and "succeeded" in delivery.text
        delivery.find_element(By.PARTIAL_LINK_TEXT, "to crm").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Delivery"))
        assert driver.find_element(By.ID, "delivery-status").text == "succeeded"
        row = driver.find_element(By.CSS_SELECTOR, "table.attempts tbody tr")
        assert "ok" in row.text and "200" in row.text

    await asyncio.to_thread(open_a_trace_and_its_delivery)

    def filter_the_deliveries() -> None:
        from selenium.webdriver.support.ui import Select

        driver.find_element(By.LINK_TEXT, "Deliveries").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Deliveries"))
        Select(driver.find_element(By.ID, "status")).select_by_value("succeeded")
        driver.find_element(By.CSS_SELECTOR, "form.search button").click()
        wait(ec.url_contains("status=succeeded"))
        rows = driver.find_elements(By.CSS_SELECTOR, "table.deliveries tbody tr")
        assert len(rows) == 3 and all("succeeded" in r.text for r in rows)
        Select(driver.find_element(By.ID, "status")).select_by_value("dead")
        driver.find_element(By.CSS_SELECTOR, "form.search button").click()
        wait(ec.url_contains("status=dead"))
        (row,) = driver.find_elements(By.CSS_SELECTOR, "table.deliveries tbody tr")
        assert row.text == "No deliveries match these filters."
        driver.find_element(By.LINK_TEXT, "Clear").click()
        wait(ec.presence_of_element_located((By.CSS_SELECTOR, "table.deliveries td a code")))
        driver.find_element(By.CSS_SELECTOR, "table.deliveries td:last-child a").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Delivery"))
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.attempts tbody tr")) == 1

    await asyncio.to_thread(filter_the_deliveries)

    def see_the_sources_request_log() -> None:
        driver.find_element(By.LINK_TEXT, "Sources").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Sources"))
        driver.find_element(By.LINK_TEXT, "forms").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Source forms"))
        (row,) = driver.find_elements(By.CSS_SELECTOR, "table.requests tbody tr")
        assert "yes" in row.text  # verified (preset none)
        row.find_element(By.CSS_SELECTOR, "td:last-child a").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Request"))
        assert '"order": "A-77"' in driver.find_element(By.CSS_SELECTOR, "pre.json").text
        # another tenant's trace answers not found
        driver.get(f"{api.url}/ui/traces/trace-secret")
        assert heading(driver) == "Not found"
        assert "secret-1" not in driver.page_source

    await asyncio.to_thread(see_the_sources_request_log)


async def test_a_replay_is_dry_run_then_run_from_the_dashboard(
    api: Api,
    receivers: Any,
    clean_browser: Any,
) -> None:
    receiver: Receiver = await receivers(default=200)
    key, ids = await setup_tenant(api, receiver)

    async def delivered(n: int) -> bool:
        return sum(1 for r in receiver.received if r["json"] and r["json"]["id"] in ids) >= n

    await until(lambda: delivered(3), "the first three deliveries")
    driver = clean_browser
    wait = waiter(driver)

    def dry_run_then_run() -> None:
        sign_in(driver, api.url, key)
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        driver.find_element(By.LINK_TEXT, "Replay").click()
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Replay"))
        driver.find_element(By.ID, "types").send_keys("lead.*")
        driver.find_element(By.ID, "dry-run").click()
        summary = wait(ec.presence_of_element_located((By.ID, "plan-summary")))
        assert summary.text == "3 events would make 3 deliveries."
        assert driver.find_element(By.ID, "types").get_attribute("value") == "lead.*"
        driver.find_element(By.ID, "run").click()
        wait(ec.url_contains("/ui/replays/rpl_"))
        # the page reloads itself while the replay runs
        wait(ec.text_to_be_present_in_element((By.ID, "replay-status"), "done"))
        assert driver.find_element(By.ID, "replay-deliveries").text == "3"

    await asyncio.to_thread(dry_run_then_run)
    await until(lambda: delivered(6), "the replayed deliveries at the receiver")


async def test_a_bad_replay_form_names_the_field(sqlite_api: Api, clean_browser: Any) -> None:
    _, key = await sqlite_api.tenant()
    driver = clean_browser
    wait = waiter(driver)

    def bad_time() -> None:
        sign_in(driver, sqlite_api.url, key)
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        driver.get(sqlite_api.url + "/ui/replays")
        driver.find_element(By.ID, "from").send_keys("yesterday")
        driver.find_element(By.ID, "dry-run").click()
        error = wait(ec.presence_of_element_located((By.ID, "replay-error")))
        assert error.text.startswith("invalid replay: from:")
        assert driver.find_element(By.ID, "from").get_attribute("value") == "yesterday"

    await asyncio.to_thread(bad_time)


async def test_events_sent_through_the_api_arrive_in_the_live_tail(
    api: Api, clean_browser: Any
) -> None:
    _, key = await api.tenant()
    _, other = await api.tenant()
    driver = clean_browser
    wait = waiter(driver)

    def open_live_tail() -> None:
        sign_in(driver, api.url, key)
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        driver.find_element(By.LINK_TEXT, "Live").click()
        wait(ec.text_to_be_present_in_element((By.ID, "live-state"), "Live:"))

    await asyncio.to_thread(open_live_tail)
    markup = "<img src=x onerror=alert(1)>"
    for k, eid in ((other, "not-mine"), (key, "live-1"), (key, "live-2")):
        event = {"id": eid, "type": "visit.booked", "subject": markup, "data": {}}
        status, _, _ = await api.call("POST", "/v1/events", k, json=event)
        assert status == 202

    def see_them_arrive() -> None:
        wait(ec.presence_of_element_located((By.CSS_SELECTOR, "#live-rows tr[data-id='live-2']")))
        rows = driver.find_elements(By.CSS_SELECTOR, "#live-rows tr")
        assert [r.get_attribute("data-id") for r in rows] == ["live-2", "live-1"]
        assert markup in rows[0].text  # shown as text, never as markup
        assert not driver.find_elements(By.CSS_SELECTOR, "#live-rows img")

    await asyncio.to_thread(see_them_arrive)


async def test_sign_in_and_moving_around_work_from_the_keyboard(
    sqlite_api: Api, clean_browser: Any
) -> None:
    from selenium.webdriver.common.keys import Keys

    _, key = await sqlite_api.tenant()
    driver = clean_browser
    wait = waiter(driver)

    def keyboard_only() -> None:
        driver.get(sqlite_api.url + "/ui")
        wait(ec.presence_of_element_located((By.ID, "key")))
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        assert driver.switch_to.active_element.text == "Skip to content"
        active = driver.switch_to.active_element
        active.send_keys(Keys.TAB)  # past the skip link, the first field is the key's
        active = driver.switch_to.active_element
        assert active.get_attribute("id") == "key"
        active.send_keys(key, Keys.ENTER)
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        for path in (
            "/ui",
            "/ui/events",
            "/ui/deliveries",
            "/ui/dlq",
            "/ui/destinations",
            "/ui/sources",
            "/ui/automations",
            "/ui/replays",
        ):
            driver.get(sqlite_api.url + path)
            wait(ec.presence_of_element_located((By.TAG_NAME, "h1")))
            assert len(driver.find_elements(By.TAG_NAME, "h1")) == 1, path
            for field in driver.find_elements(By.CSS_SELECTOR, "main input:not([type=hidden])"):
                fid = field.get_attribute("id")
                labelled = fid and driver.find_elements(By.CSS_SELECTOR, f"label[for='{fid}']")
                assert labelled or field.get_attribute("aria-label"), (path, fid)
            for svg in driver.find_elements(By.CSS_SELECTOR, "svg[role=img]"):
                assert svg.get_attribute("aria-labelledby"), path

    await asyncio.to_thread(keyboard_only)


@pytest.mark.security
async def test_a_key_without_pii_sees_masked_values_in_the_pages_and_the_live_tail(
    sqlite_api: Api, clean_browser: Any
) -> None:
    from tests.integration.test_privacy_masking import EMAIL, LEAD, LEAD_TYPE, NAME, PHONE, RAW

    api = sqlite_api
    tenant, manage = await api.tenant(scopes=("ingest", "read", "manage"))
    _, read = await api.tenant(tenant, scopes=("read",))
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", manage, LEAD_TYPE)
    assert status in (200, 201), body
    lead = {"id": "lead-pii-1", "type": "lead.created", "subject": EMAIL, "data": LEAD}
    assert (await api.call("POST", "/v1/events", manage, json=lead))[0] == 202
    driver = clean_browser
    wait = waiter(driver)

    def open_the_event_then_the_live_tail() -> None:
        sign_in(driver, api.url, read)
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        driver.get(api.url + "/ui/events/lead-pii-1")
        wait(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "lead-pii-1"))
        text = driver.find_element(By.TAG_NAME, "main").text
        assert "J. P." in text and "+55 31 9****-5432" in text and "j***@e***.com.br" in text
        assert [v for v in RAW if v in driver.page_source] == []
        driver.find_element(By.LINK_TEXT, "Live").click()
        wait(ec.text_to_be_present_in_element((By.ID, "live-state"), "Live:"))

    await asyncio.to_thread(open_the_event_then_the_live_tail)
    later = {**lead, "id": "lead-pii-2", "subject": PHONE}
    assert (await api.call("POST", "/v1/events", manage, json=later))[0] == 202

    def see_it_arrive_masked() -> None:
        row = wait(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#live-rows tr[data-id='lead-pii-2']"))
        )
        assert "+55 31 9****-5432" in row.text
        assert PHONE not in driver.page_source and NAME not in driver.page_source

    await asyncio.to_thread(see_it_arrive_masked)
