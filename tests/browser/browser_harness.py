"""A real server and a real browser for the end-to-end page tests.

`live_server` runs ``creditflow serve``'s application under uvicorn on a free port in a thread;
`chromium` drives the Debian ``chromium`` package headless through its matching ``chromedriver`` (Selenium;
never a downloaded browser). Screenshots of every step land in ``artifacts/screenshots/`` (CI keeps
them as test artefacts).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from creditflow.bootstrap import App
from creditflow.http.app import create_app

PASSWORD = "correct horse battery 9"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) if both are installed; ``CREDITFLOW_TEST_CHROMIUM`` names the browser."""
    browser = os.environ.get("CREDITFLOW_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if Path(browser).exists() and Path(driver).exists():
        return browser, driver
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: App) -> Iterator[str]:
    """Serve ``app`` over real HTTP; yield its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(app), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def chromium(browser: str, driver_path: str) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1366,900", "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path


def sign_in(driver: Any, url: str, user_id: str, password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{url}/ui/sign-in")
    driver.find_element(By.ID, "f-user_id").send_keys(user_id)
    driver.find_element(By.ID, "f-password").send_keys(password)
    form = driver.find_element(By.ID, "sign-in")
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait_for_new_page(driver, form)


def wait_for_new_page(driver: Any, old_element: Any, timeout: float = 10) -> None:
    """After a click that submits a form: wait until the old page is gone and the new one is loaded."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(expected_conditions.staleness_of(old_element))
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.readyState") == "complete")
