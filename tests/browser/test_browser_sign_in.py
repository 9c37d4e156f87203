"""Signing in with a real browser (headless Debian Chromium): the form, the role's home page, the
security headers the browser enforces (no inline script runs), signing out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import PASSWORD, chromium, chromium_paths, live_server, screenshot, sign_in, wait_for_new_page

from conftest import make_settings, onboard
from creditflow.bootstrap import App, build

PATHS = chromium_paths()
pytestmark = pytest.mark.skipif(PATHS is None, reason="needs the Debian chromium and chromium-driver packages")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, App]]:
    db = Path(tmp_path_factory.mktemp("browser")) / "site.db"
    with build(make_settings(f"sqlite:///{db}")) as app:
        onboard(app)
        for org, user in (("factory", "wang.fang"), ("bank", "zhao.lei")):
            app.people.add(org, user, user.replace(".", " ").title(), ["maker", "approver"])
            app.sessions.set_password(user, PASSWORD)
        with live_server(app) as url:
            yield url, app


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert PATHS is not None
    with chromium(*PATHS) as driver:
        yield driver


def test_sign_in_and_out(site: tuple[str, App], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, _ = site
    sign_in(browser, url, "wang.fang", "not the password")
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]")
    assert "wrong" in alert.text
    screenshot(browser, "01-sign-in-refused")
    sign_in(browser, url, "wang.fang")
    assert browser.current_url.endswith("/ui/supplier/pieces")
    assert browser.find_element(By.TAG_NAME, "h1").text == "My pieces"
    screenshot(browser, "02-supplier-home")
    cookie = browser.get_cookie("cf_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie").find("cf_session") == -1  # scripts cannot read it
    heading = browser.find_element(By.TAG_NAME, "h1")
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/sign-out'] button").click()
    wait_for_new_page(browser, heading)
    assert "/ui/sign-in" in browser.current_url
    browser.get(f"{url}/ui/supplier/pieces")
    assert "/ui/sign-in" in browser.current_url


def test_inline_script_is_blocked_by_the_content_security_policy(site: tuple[str, App], browser: Any) -> None:
    """The CSP is real in a real browser: a script injected into the page does not run."""
    url, _ = site
    sign_in(browser, url, "zhao.lei")
    ran = browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__injected = 1';"
        "document.body.appendChild(s); return window.__injected === 1;"
    )
    assert ran is False
    assert browser.execute_script("return typeof window.creditflow.api") == "function"  # our own script ran
