"""Headless Chromium from Debian's packages (`make browser` installs them), driven by Selenium
through Debian's chromedriver: nothing is downloaded at test time. Without them the browser
tests skip, or fail in CI (SWITCHBOARD_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.conftest import receivers  # noqa: F401  (webhook receivers, shared)

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SWITCHBOARD_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 60.0  # seconds an element may take to appear: the machine is shared and loaded


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (run `make browser`)"
    if os.environ.get("SWITCHBOARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and SWITCHBOARD_REQUIRE_SERVICES=1 makes it required")
    pytest.skip(reason)


def start_browser(width: int = 1280, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root in CI, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    return driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def clean_browser(browser: Any) -> Iterator[Any]:
    """The module's browser without cookies: each test's hub listens on its own port, and
    cookies are kept per host, not per port. Afterwards it leaves the page, so no live-tail
    stream holds the test's hub open while it stops."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    yield browser
    browser.get("about:blank")


def waiter(driver: Any) -> Callable[[Callable[[Any], Any]], Any]:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a page that navigates (a form posting, a redirect) can hand back an element of the page
    # it is leaving; asking again finds the new one
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, WAIT, ignored_exceptions=ignored).until
