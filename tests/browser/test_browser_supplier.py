"""A supplier in a real browser (headless Debian Chromium): signs in, accepts the piece its customer
sent, pays part of it on to its own supplier, and turns the rest into cash at a bank; every step is
checked on the ledger too, and screenshotted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import PASSWORD, chromium, chromium_paths, live_server, screenshot, sign_in, wait_for_new_page

from conftest import make_settings, onboard
from creditflow.bootstrap import App, build

PATHS = chromium_paths()
pytestmark = pytest.mark.skipif(PATHS is None, reason="needs the Debian chromium and chromium-driver packages")
YUAN = 100


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, App, str]]:
    """xcmg issued 1,000,000 to factory, which sent 600,000 of it on to steel (pending steel's accept)."""
    db = Path(tmp_path_factory.mktemp("browser")) / "site.db"
    with build(make_settings(f"sqlite:///{db}")) as app:
        onboard(app)
        app.people.add("steel", "chen.jing", "Chen Jing", ["maker", "approver"])
        app.sessions.set_password("chen.jing", PASSWORD)
        today = dt.datetime.fromtimestamp(app.clock.now_ms() / 1000, dt.UTC).date()
        payable = app.payables.create_payable("xcmg", "factory", 1_000_000 * YUAN, "PO-BROWSER-1")
        root = str(
            app.ledger.issue("xcmg", payable.id, 1_000_000 * YUAN, today + dt.timedelta(days=120)).result["piece_id"]
        )
        app.ledger.accept("factory", root)
        sent = app.ledger.transfer("factory", root, "steel", 600_000 * YUAN)
        pending = next(p for p in app.queries.pieces_by_holder("steel").items if p.state.value == "pending")
        assert pending.amount_minor == 600_000 * YUAN and sent.seq > 0
        app.financing.set_rating("xcmg", "AAA")
        app.financing.set_limit("bank", "xcmg", 5_000_000 * YUAN)
        app.financing.create_product(
            "bank",
            "e-certificate discounting",
            {"AAA": {180: 450, 365: 480}},
            fee_bps=10,
            fee_fixed_minor=500,
            product_id="prd-1",
        )
        with live_server(app) as url:
            yield url, app, pending.id


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert PATHS is not None
    with chromium(*PATHS) as driver:
        yield driver


def test_accept_transfer_part_and_finance_the_rest(site: tuple[str, App, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, app, piece_id = site
    sign_in(browser, url, "chen.jing")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-piece="{piece_id}"]')
    assert row.get_attribute("data-state") == "pending" and "600,000.00" in row.text
    screenshot(browser, "30-supplier-pending-piece")

    # Accept.
    browser.find_element(By.ID, f"accept-{piece_id}").click()
    wait_for_new_page(browser, row)
    assert "Accepted piece" in browser.find_element(By.CSS_SELECTOR, "p.notice").text
    assert app.queries.piece(piece_id).state.value == "active"
    screenshot(browser, "31-supplier-accepted")

    # Transfer part of it; a bad amount first: the form says what is wrong and nothing moves.
    browser.get(f"{url}/ui/supplier/pieces/{piece_id}")
    Select(browser.find_element(By.ID, "f-to")).select_by_value("ore")
    amount = browser.find_element(By.ID, "f-amount")
    amount.send_keys("200,000.005")
    form = browser.find_element(By.ID, "transfer-form")
    browser.find_element(By.ID, "transfer-submit").click()
    wait_for_new_page(browser, form)
    error = browser.find_element(By.ID, "e-amount")
    assert error.is_displayed() and error.text
    assert browser.find_element(By.ID, "f-amount").get_attribute("aria-invalid") == "true"
    assert app.queries.piece(piece_id).state.value == "active"
    screenshot(browser, "32-supplier-transfer-refused")
    Select(browser.find_element(By.ID, "f-to")).select_by_value("ore")
    amount = browser.find_element(By.ID, "f-amount")
    amount.clear()
    amount.send_keys("200,000.00")
    form = browser.find_element(By.ID, "transfer-form")
    browser.find_element(By.ID, "transfer-submit").click()
    wait_for_new_page(browser, form)
    assert app.queries.piece(piece_id).state.value not in ("active", "pending")  # consumed
    ore = [p for p in app.queries.pieces_by_holder("ore").items if p.state.value == "pending"]
    assert [p.amount_minor for p in ore] == [200_000 * YUAN]
    change = next(p for p in app.queries.pieces_by_holder("steel").items if p.state.value == "active")
    assert change.amount_minor == 400_000 * YUAN
    screenshot(browser, "33-supplier-transferred")

    # Finance the change at the bank: see the offer first (nothing signed yet), then accept it.
    browser.get(f"{url}/ui/supplier/pieces/{change.id}")
    Select(browser.find_element(By.ID, "f-product_id")).select_by_value("prd-1")
    form = browser.find_element(By.ID, "finance-form")
    browser.find_element(By.ID, "finance-quote").click()
    wait_for_new_page(browser, form)
    offered = browser.find_element(By.ID, "offer-cash").text
    assert offered.endswith("CNY") and offered != "400,000.00 CNY"  # discounted: interest and fees come off
    assert app.queries.pieces_by_holder("bank").items == []
    screenshot(browser, "34-supplier-offer")
    offer_form = browser.find_element(By.ID, "offer-form")
    browser.find_element(By.ID, "finance-accept").click()
    wait_for_new_page(browser, offer_form)
    verdict = browser.find_element(By.ID, "financing-request")
    assert verdict.get_attribute("data-status") == "approved", browser.find_element(By.TAG_NAME, "main").text
    cash = browser.find_element(By.ID, "quote-cash").text
    assert cash == offered  # financed at exactly the terms offered
    bank_pieces = app.queries.pieces_by_holder("bank").items
    assert [p.amount_minor for p in bank_pieces] == [400_000 * YUAN]
    screenshot(browser, "35-supplier-financed")
