"""The page a recipient reaches from an email's unsubscribe link, in a real browser: styled
(its own style passes its CSP, nothing else loads), naming who sends and what stops, and its
button opts the recipient out."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from switchboard import unsubscribe
from tests.browser.conftest import waiter
from tests.conftest import Api

SECRET = "u" * 40


async def test_the_unsubscribe_page_is_styled_and_its_button_opts_out(
    sqlite_api: Api, clean_browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    api, driver = sqlite_api, clean_browser
    api.hub.settings = dataclasses.replace(api.hub.settings, unsubscribe_secret=SECRET)
    status, _, _ = await api.call(
        "POST", "/v1/tenants", api.admin_key, {"id": "bella", "name": "Clínica Bella <b>"}
    )
    assert status == 201
    _, key = await api.tenant("bella")
    token = unsubscribe.token(SECRET, "bella", "ana/7", "campanhas", "whatsapp")

    def visit() -> tuple[str, str, str, str, list[Any]]:
        driver.get(f"{api.url}/v1/unsubscribe/{token}")
        button = waiter(driver)(lambda d: d.find_element(By.TAG_NAME, "button"))
        card = driver.find_element(By.TAG_NAME, "main")
        return (
            button.value_of_css_property("background-color"),
            card.value_of_css_property("border-radius"),
            driver.find_element(By.CLASS_NAME, "from").text,
            card.text,
            driver.get_log("browser"),
        )

    color, radius, sender, text, log = await asyncio.to_thread(visit)
    # the style applied: a CSP refusing it would leave the browser's grey button and a log line
    assert color == "rgba(185, 28, 28, 1)" and radius == "12px", (color, radius)
    assert not [entry for entry in log if "Content Security Policy" in entry["message"]], log
    assert sender == "Clínica Bella <b>"  # the tenant's name, as text
    assert "as mensagens de “campanhas” por WhatsApp" in text
    # following the link changed nothing
    _, prefs, _ = await api.call("GET", "/v1/recipients/ana%2F7/preferences", key)
    assert prefs["preferences"] == []

    def click() -> str:
        driver.find_element(By.TAG_NAME, "button").click()
        return str(waiter(driver)(lambda d: "Pronto" in d.find_element(By.TAG_NAME, "h1").text))

    await asyncio.to_thread(click)
    _, prefs, _ = await api.call("GET", "/v1/recipients/ana%2F7/preferences", key)
    assert prefs["preferences"] == [{"topic": "campanhas", "channel": "whatsapp", "enabled": False}]
