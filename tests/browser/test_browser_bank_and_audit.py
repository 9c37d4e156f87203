"""A bank watches its collateral in a real browser: an alarm raised by telemetry appears on the alarms
page without a reload (server-sent events) and is acknowledged there; an auditor checks an inclusion
proof in the browser, and sees a tampered one fail; and checks the newest checkpoint's log signature and
witnesses' cosignatures in the browser, and sees a tampered cosignature fail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_harness import PASSWORD, chromium, chromium_paths, live_server, screenshot, sign_in

from conftest import make_settings, onboard  # onboarding writes the auditor's log entries
from creditflow.bootstrap import App, build
from creditflow.collateral.model import make_message
from creditflow.ledger.signing import Signer
from proof_world import publish, witness

PATHS = chromium_paths()
WITNESSES = [witness("witness-a.example"), witness("witness-b.example")]
pytestmark = pytest.mark.skipif(PATHS is None, reason="needs the Debian chromium and chromium-driver packages")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, App]]:
    db = Path(tmp_path_factory.mktemp("browser")) / "site.db"
    policy = [{"name": w.name, "vkey": w.verifier.encode(), "url": "http://127.0.0.1:9/"} for w in WITNESSES]
    with build(make_settings(f"sqlite:///{db}", witnesses=policy, witness_quorum=2)) as app:
        onboard(app)
        publish(app, WITNESSES)  # the newest checkpoint, cosigned by both witnesses of the policy
        for org, user in (("bank", "li.wei"), ("auditor", "sun.li")):
            app.people.add(org, user, user.replace(".", " ").title(), ["maker", "approver"])
            app.sessions.set_password(user, PASSWORD)
        with live_server(app) as url:
            yield url, app


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert PATHS is not None
    with chromium(*PATHS) as driver:
        yield driver


def _key(app: App, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org, 'browser test')}"}


def _pledged_lot(url: str, app: App) -> tuple[bytes, int]:
    """Over the real HTTP API: the bank proposes a loan and the pledge of steel's warehouse lot (weighed by a
    scale); steel accepts both."""
    steel, bank = _key(app, "steel"), _key(app, "bank")
    with httpx.Client(base_url=url, timeout=10) as http:
        lot = {"asset_id": "lot-7", "kind": "warehouse_lot", "name": "rebar", "commodity": "steel"}
        lot |= {"quantity_kg": 50_000, "receipt_no": "WR-7"}
        assert http.post("/v1/iot/assets", headers=steel, json=lot).status_code == 201
        device = http.post(
            "/v1/iot/devices", headers=steel, json={"device_id": "scale-7", "asset_id": "lot-7", "kind": "scale"}
        )
        assert device.status_code == 201, device.text
        price = {"commodity": "steel", "price_minor_per_kg": 380}
        assert http.post("/v1/iot/prices", headers=bank, json=price).status_code == 200
        loan = {"loan_id": "loan-7", "borrower": "steel", "outstanding_minor": 10_000_000}
        assert http.post("/v1/iot/loans", headers=bank, json=loan).status_code == 201
        assert http.post("/v1/iot/loans/loan-7/accept", headers=steel).status_code == 200  # the borrower consents
        pledge = http.post(
            "/v1/iot/loans/loan-7/pledges", headers=bank, json={"asset_id": "lot-7", "haircut_bps": 1000}
        )
        assert pledge.status_code == 200, pledge.text
        accepted = http.post("/v1/iot/loans/loan-7/pledges/lot-7/accept", headers=steel)
        assert accepted.status_code == 200 and accepted.json()["assets"] == ["lot-7"], accepted.text
    return bytes.fromhex(device.json()["secret"]), app.clock.now_ms()


def test_an_alarm_appears_live_and_is_acknowledged(site: tuple[str, App], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = site
    secret, now = _pledged_lot(url, app)
    sign_in(browser, url, "li.wei")
    browser.get(f"{url}/ui/bank/alarms")
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") == "live"
    )
    assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-alarm]")
    screenshot(browser, "10-bank-alarms-quiet")

    # 5 t of steel leave the warehouse with no release authorised: the scale reports it.
    messages = [
        json.loads(make_message(secret, "scale-7", now, 1, {"weight_kg": 50_000.0})),
        json.loads(make_message(secret, "scale-7", now + 1_000, 2, {"weight_kg": 45_000.0})),
    ]
    with httpx.Client(base_url=url, timeout=10) as http:
        sent = http.post("/v1/iot/telemetry", json={"messages": messages})
    assert sent.status_code == 200 and sent.json()["accepted"] == 2, sent.text

    row = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-alarm]"))
    assert "unauthorised_outbound" in row.text and row.get_attribute("data-acknowledged") == "no"
    screenshot(browser, "11-bank-alarm-arrived-live")
    alarm_id = row.get_attribute("data-alarm")
    browser.find_element(By.ID, f"ack-{alarm_id}").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, f"alarm-{alarm_id}").get_attribute("data-acknowledged") == "yes"
    )
    screenshot(browser, "12-bank-alarm-acknowledged")

    # Checked on site: the bank clears it by hand, saying why.
    browser.find_element(By.ID, f"clear-{alarm_id}").click()
    prompt = WebDriverWait(browser, 10).until(lambda d: d.switch_to.alert)
    prompt.send_keys("counted on site: 45 t, the 5 t left on an authorised release")
    prompt.accept()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, f"alarm-{alarm_id}").get_attribute("data-status") == "cleared"
    )
    screenshot(browser, "13-bank-alarm-cleared")
    with httpx.Client(base_url=url, timeout=10) as http:
        listed = http.get("/v1/iot/alarms", headers=_key(app, "bank")).json()["items"]
    mine = next(a for a in listed if a["alarm_id"] == alarm_id)
    assert mine["ack_by"] is not None and "li.wei" in mine["ack_by"], mine
    assert mine["status"] == "cleared" and mine["details"]["cleared_by"] == "bank:li.wei", mine
    assert mine["details"]["clear_note"].startswith("counted on site")


def test_an_inclusion_proof_is_checked_in_the_browser(site: tuple[str, App], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = site
    sign_in(browser, url, "sun.li")
    browser.get(f"{url}/ui/audit")
    size = int(browser.find_element(By.ID, "sth-size").text.replace(",", ""))
    assert size >= 3

    def check(tamper: bool) -> str:
        tamper_box = browser.find_element(By.ID, "proof-tamper")
        if tamper_box.is_selected() != tamper:
            tamper_box.click()
        for field, value in (("proof-leaf-index", "1"), ("proof-tree-size", str(size))):
            element = browser.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        browser.find_element(By.ID, "check-inclusion").click()
        result = browser.find_element(By.ID, "proof-result")
        WebDriverWait(browser, 10).until(
            lambda d: result.get_attribute("data-status") in ("verified", "failed", "error")
        )
        return str(result.get_attribute("data-status"))

    assert check(tamper=False) == "verified"
    assert (
        browser.find_element(By.ID, "proof-recomputed-root").text
        == browser.find_element(By.ID, "proof-expected-root").text
    )
    screenshot(browser, "20-audit-proof-verified")
    assert check(tamper=True) == "failed"
    assert browser.find_element(By.ID, "proof-status").text == "FAILED"
    screenshot(browser, "21-audit-proof-tampered")

    # The signed tree head's Ed25519 signature, checked by Chromium's Web Crypto under the pinned log key;
    # then under another key, which must fail both the head and a correct proof.
    def check_head() -> str:
        browser.find_element(By.ID, "check-sth-signature").click()
        box = browser.find_element(By.ID, "sth-browser-check")
        WebDriverWait(browser, 10).until(lambda d: box.get_attribute("data-status") in ("verified", "failed", "error"))
        return str(box.get_attribute("data-status"))

    assert check_head() == "verified", browser.find_element(By.ID, "sth-browser-check").text
    pinned = browser.find_element(By.ID, "sth-pinned-key")
    real_key = pinned.get_attribute("value")
    pinned.clear()
    pinned.send_keys(Signer.generate("other").public_key.hex())
    assert check_head() == "failed"
    assert check(tamper=False) == "failed"
    assert browser.find_element(By.ID, "proof-signature").text == f"tree head {size}: INVALID"
    screenshot(browser, "22-audit-signature-under-another-key")
    pinned.clear()
    pinned.send_keys(str(real_key))
    assert check(tamper=False) == "verified"
    assert browser.find_element(By.ID, "proof-signature").text == f"tree head {size}: valid"


def test_the_checkpoint_and_its_cosignatures_are_checked_in_the_browser(site: tuple[str, App], browser: Any) -> None:
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = site
    sign_in(browser, url, "sun.li")
    browser.get(f"{url}/ui/audit")
    note = browser.find_element(By.ID, "checkpoint-note")
    honest = str(browser.execute_script("return arguments[0].value", note))
    assert honest == app.proofs.latest_checkpoint()[1]

    def check(text: str) -> tuple[str, str, list[str]]:
        browser.execute_script("arguments[0].value = arguments[1]", note, text)
        box = browser.find_element(By.ID, "checkpoint-browser-check")
        browser.execute_script("arguments[0].dataset.status = 'idle'", box)
        browser.find_element(By.ID, "check-checkpoint").click()
        WebDriverWait(browser, 10).until(lambda d: box.get_attribute("data-status") not in ("idle", "checking"))
        cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#checkpoint-signatures td.sig-check")]
        return str(box.get_attribute("data-status")), box.text, cells

    status, text, cells = check(honest)
    assert status == "verified" and text.startswith("valid: the log signed it and 2 of the 2 trusted witnesses"), text
    assert cells == ["valid", "valid", "valid"]
    assert browser.find_element(By.ID, "checkpoint-quorum").get_attribute("data-status") == "met"
    screenshot(browser, "23-audit-checkpoint-valid")

    lines = honest.split("\n")
    i = next(n for n, line in enumerate(lines) if line.startswith("\u2014 witness-b.example "))
    raw = bytearray(base64.b64decode(lines[i].split(" ")[2]))
    raw[-1] ^= 1
    lines[i] = f"\u2014 witness-b.example {base64.b64encode(raw).decode()}"
    status, text, cells = check("\n".join(lines))
    assert status == "failed" and text.startswith("INVALID: 1 signature(s) of trusted witnesses do not verify"), text
    assert cells == ["valid", "valid", "INVALID"]
    assert browser.find_element(By.ID, "checkpoint-quorum").text.startswith("Quorum NOT met: 1 of the 2")
    screenshot(browser, "24-audit-checkpoint-tampered-cosignature")
