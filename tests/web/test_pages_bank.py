"""The bank's pages: financing requests and decisions, portfolio, collateral site plans with device status
and LTV gauges, margin calls, the alarm console (acknowledged through the JSON API with the session
cookie and the CSRF header) and credit decisions. A bank sees only its own requests, loans and alarms."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from web_helpers import add_user, sign_in

from conftest import issue_accepted
from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.http.pages.bank import parse_yuan
from creditflow.kernel.uscc import make_uscc
from creditflow.tools.simulate.iot import consented_loan

RATES = {"AAA": {30: 300, 90: 350, 180: 400, 365: 450}}
FENCE = [[34.20, 117.10], [34.20, 117.12], [34.22, 117.12], [34.22, 117.10]]
BANK_PAGES = ["/ui/bank", "/ui/bank/portfolio", "/ui/bank/collateral", "/ui/bank/alarms", "/ui/bank/credit"]


@dataclass
class Scene:
    approved: str  # financing request ids
    declined: str
    rival_request: str  # bank2's
    alarms: dict[str, str]  # alarm type -> id, on the bank's collateral
    rival_alarm: str  # on bank2's collateral
    camera_secret: bytes


def _device(app: App, asset_id: str, device_id: str, kind: DeviceKind) -> bytes:
    return bytes.fromhex(app.iot.collateral.register_device(device_id, asset_id, kind))


def _send(app: App, secret: bytes, device_id: str, seq: int, values: dict[str, float]) -> None:
    raw = make_message(secret, device_id, app.clock.now_ms(), seq, values)
    outcome = app.iot.pipeline.submit(raw, topic_device_id=device_id).result(10)
    assert outcome.accepted, outcome


def _equipment(app: App, asset_id: str, owner: str, appraised_minor: int) -> None:
    spec = AssetSpec(
        asset_id=asset_id,
        owner=owner,
        kind=AssetKind.EQUIPMENT,
        name=f"excavator {asset_id}",
        serial_no=f"SN-{asset_id}",
        geofence=FENCE,
        appraised_minor=appraised_minor,
    )
    app.iot.collateral.register_asset(spec)


@pytest.fixture
def scene(world: App) -> Scene:
    # Financing: one approved and one declined request to "bank", one approved request to a second bank.
    world.ledger.register_organisation("bank2", "Second Bank", "bank", make_uscc("91320300134780042"))
    world.financing.set_rating("xcmg", "AAA")
    for bank in ("bank", "bank2"):
        world.financing.set_limit(bank, "xcmg", 500_000_000)
        world.financing.create_product(bank, "discounting", RATES, max_minor=60_000_000, product_id=f"prd-{bank}")
    approved = world.financing.request("factory", issue_accepted(world), "bank", "prd-bank", 40_000_000)
    declined = world.financing.request("factory", issue_accepted(world), "bank", "prd-bank", 90_000_000)
    rival = world.financing.request("steel", issue_accepted(world, holder="steel"), "bank2", "prd-bank2", 30_000_000)
    assert approved.approved and not declined.approved and rival.approved
    # Collateral: the bank lends against an excavator (WARNING band) and a crane (MARGIN_CALL band).
    _equipment(world, "excavator-1", "steel", 80_000_000)
    gps = _device(world, "excavator-1", "gps-1", DeviceKind.TRACKER)
    cam = _device(world, "excavator-1", "cam-1", DeviceKind.CAMERA)
    # value 64,000,000 fen: LTV 62.50 % (each loan and pledge proposed by the bank, accepted by the borrower)
    consented_loan(world.iot, "loan-1", "steel", "bank", 40_000_000, "default", "excavator-1", 2_000)
    _equipment(world, "crane-1", "ore", 10_000_000)
    consented_loan(world.iot, "loan-2", "ore", "bank", 7_500_000, "default", "crane-1", 0)  # LTV 75.00 %: margin call
    _send(world, gps, "gps-1", 1, {"lat": 34.30, "lon": 117.11})  # outside the geofence
    _send(world, cam, "cam-1", 1, {"tamper": 1.0})
    # bank2 lends against a truck that leaves its geofence too.
    _equipment(world, "truck-9", "other", 20_000_000)
    truck = _device(world, "truck-9", "gps-9", DeviceKind.TRACKER)
    consented_loan(world.iot, "loan-9", "other", "bank2", 1_000_000, "default", "truck-9", 0)
    _send(world, truck, "gps-9", 1, {"lat": 35.0, "lon": 118.0})
    ours = {a["alarm_type"]: a["alarm_id"] for a in world.iot.collateral.alarms(asset_id="excavator-1")}
    assert {"geofence_breach", "camera_tamper"} <= set(ours)
    (rival_alarm,) = [a["alarm_id"] for a in world.iot.collateral.alarms(asset_id="truck-9")]
    return Scene(approved.request_id, declined.request_id, rival.request_id, ours, rival_alarm, cam)


def authorise(world: App, org_id: str, bank_id: str, scope: str = "decision") -> str:
    """``org_id``'s admin authorises ``bank_id`` to look up its credit (issue 13)."""
    from creditflow.identity.roles import UserRole

    world.people.add(org_id, f"{org_id}.admin", "Admin", roles=(UserRole.ADMIN,))
    admin = world.access.authenticate(world.access.create_key(org_id, "admin", user_id=f"{org_id}.admin"))
    body = {"purpose_code": "loan_application", "purpose": "loan", "scope": scope, "valid_days": 30}
    return str(world.credit.grant_authorisation(admin, bank_id=bank_id, **body)["authorisation_id"])


def bank_user(web: TestClient, world: App) -> str:
    add_user(world, "bank", "li.wei")
    return sign_in(web, "li.wei")


def page_data(text: str, element_id: str) -> object:
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', text)
    assert found, element_id
    return json.loads(found.group(1))


def test_every_bank_page_renders_for_the_bank_and_is_refused_to_others(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    add_user(world, "auditor", "zhao.min")
    for user_id in ("wang.fang", "zhao.min"):
        sign_in(web, user_id)
        for path in BANK_PAGES:
            refused = web.get(path)
            assert refused.status_code == 403 and "these pages are for bank" in refused.text, path
    bank_user(web, world)
    assert web.get("/ui").url.path == "/ui/bank"
    for path in BANK_PAGES:
        page = web.get(path)
        assert page.status_code == 200, path
        assert "Content-Security-Policy" in page.headers and "<script>" not in page.text  # no inline script
        for href in BANK_PAGES:
            assert f'href="{href}"' in page.text  # the bank's menu


def test_signed_out_visitors_are_sent_to_sign_in(web: TestClient) -> None:
    response = web.get("/ui/bank/alarms", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/sign-in?next=")


def test_financing_and_portfolio_show_the_banks_own_requests_agreements_and_exposure(
    web: TestClient, world: App, scene: Scene
) -> None:
    bank_user(web, world)
    page = web.get("/ui/bank").text
    assert 'id="financing-requests"' in page
    rows = dict(re.findall(r'data-request="([^"]+)" data-status="(\w+)"', page))
    assert rows == {scene.approved: "approved", scene.declined: "declined"}
    assert scene.rival_request not in page
    declined_row = page[page.index(f'data-request="{scene.declined}"') :].split("</tr>")[0]
    (stored,) = [r for r in world.financing.requests("bank", as_bank=True) if r["id"] == scene.declined]
    assert stored["reasons"]
    for reason in stored["reasons"]:
        assert f'<code class="reason-code">{reason["code"]}</code> {html.escape(reason["message"])}' in declined_row
    assert "400,000.00" in page  # approved amount, exact fen
    assert 'id="approved-count">1<' in page and 'id="declined-count">1<' in page
    # The portfolio: the agreement of the approved request, and exposure of this bank only.
    page = web.get("/ui/bank/portfolio").text
    agreements = re.findall(r'data-agreement="([^"]+)"', page)
    assert agreements == [scene.approved]
    assert scene.rival_request not in page
    (exposure,) = [r for r in world.network.exposure() if r["bank"] == "bank"]
    assert exposure["exposure_minor"] == 40_000_000
    assert re.search(r'data-core="xcmg"><td><code>xcmg</code></td><td class="num">400,000.00</td>', page)
    assert 'id="exposure-total">400,000.00<' in page  # not bank2's 300,000.00 added in


def test_collateral_and_alarm_pages_show_the_banks_own_loans_sites_and_alarms(
    web: TestClient, world: App, scene: Scene
) -> None:
    bank_user(web, world)
    page = web.get("/ui/bank/collateral").text
    assert '<script src="/ui/vendor/plotly.min.js" defer></script>' in page
    assert '<script src="/ui/static/bank_ltv.js" defer></script>' in page
    gauges = {g["loan_id"]: g for g in page_data(page, "ltv-data")}  # type: ignore[union-attr]
    assert set(gauges) == {"loan-1", "loan-2"}  # not bank2's loan-9
    assert gauges["loan-1"]["ltv_bps"] == 6250 and gauges["loan-1"]["band"] == "WARNING"
    assert (gauges["loan-2"]["ltv_bps"], gauges["loan-2"]["band"]) == (7500, "MARGIN_CALL")
    assert (gauges["loan-1"]["warning_bps"], gauges["loan-1"]["margin_call_bps"]) == (6000, 7000)
    assert gauges["loan-1"]["liquidation_bps"] == 8000
    margin = page[page.index('id="margin-calls"') :].split("</table>")[0]
    assert 'data-loan="loan-2"' in margin and 'data-loan="loan-1"' not in margin
    site = page[page.index('id="site-excavator-1"') :].split("</svg>")[0]
    polygon = re.search(r'<polygon class="geofence" points="([^"]+)"/>', site)
    assert polygon and len(polygon.group(1).split()) == 4
    statuses = dict(re.findall(r'data-device="([^"]+)" data-status="(\w+)"', site))
    assert statuses == {"gps-1": "online", "cam-1": "tampered"}
    assert 'class="device device-tampered"' in site
    # The tracker is drawn at its last fix, north of (above) the fence.
    gps = re.search(r'data-device="gps-1".*?<circle cx="([\d.]+)" cy="([\d.-]+)"', site, re.S)
    fence_ys = [float(p.split(",")[1]) for p in polygon.group(1).split()]
    assert gps and float(gps.group(2)) < min(fence_ys)
    assert 'data-inside="no"' in page and "OUTSIDE the geofence" in page
    assert "truck-9" not in page and "loan-9" not in page and "gps-9" not in page
    # The alarm console: the alarms on the bank's collateral, not bank2's.
    page = web.get("/ui/bank/alarms").text
    assert '<script src="/ui/static/bank_alarms.js" defer></script>' in page
    listed = re.findall(r'<tr data-alarm="([^"]+)" id="alarm-\1"', page)
    assert set(listed) == set(scene.alarms.values())
    assert scene.rival_alarm not in page
    for alarm_id in scene.alarms.values():
        assert f'id="ack-{alarm_id}" data-ack="{alarm_id}"' in page
    assert page_data(page, "alarm-assets") == {"excavator-1": "loan-1", "crane-1": "loan-2"}


def test_acknowledging_through_the_api_needs_the_csrf_header_and_closes_cleared_alarms(
    web: TestClient, world: App, scene: Scene
) -> None:
    csrf = bank_user(web, world)
    alarm_id = scene.alarms["geofence_breach"]
    path = f"/v1/iot/alarms/{alarm_id}/ack"
    refused = web.post(path, json={"user": "li.wei"})  # the session cookie alone is not enough
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    wrong = web.post(path, json={"user": "li.wei"}, headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert wrong.status_code == 403
    assert world.iot.collateral.alarm(alarm_id)["acknowledged"] is False
    done = web.post(path, json={"user": "li.wei"}, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200 and done.json()["ack_by"] == "bank:li.wei"
    page = web.get("/ui/bank/alarms").text
    row = page[page.index(f'data-alarm="{alarm_id}"') :].split("</tr>")[0]
    assert 'data-acknowledged="yes"' in row and "bank:li.wei" in row and f'id="ack-{alarm_id}"' not in row
    again = web.post(path, json={"user": "li.wei"}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and again.json()["code"] == "alarm_already_acknowledged"
    # A cleared alarm stays on the open console until acknowledged, then only "show all" lists it.
    alarm_id = scene.alarms["camera_tamper"]
    cam_secret = scene.camera_secret
    _send(world, cam_secret, "cam-1", 2, {"tamper": 0.0})
    world.clock.advance(world.iot.settings.clear_holdoff_ms + 1)
    _send(world, cam_secret, "cam-1", 3, {"tamper": 0.0})
    assert world.iot.collateral.alarm(alarm_id)["status"] == "cleared"
    assert f'data-alarm="{alarm_id}"' in web.get("/ui/bank/alarms").text  # cleared, not yet acknowledged
    assert web.post(
        f"/v1/iot/alarms/{alarm_id}/ack", json={"user": "li.wei"}, headers={"X-CSRF-Token": csrf}
    ).is_success
    assert f'data-alarm="{alarm_id}"' not in web.get("/ui/bank/alarms").text
    assert (
        f'data-alarm="{alarm_id}" id="alarm-{alarm_id}" data-status="cleared"'
        in web.get("/ui/bank/alarms?show=all").text
    )


def test_credit_form_says_what_is_wrong_and_needs_its_csrf_token(web: TestClient, world: App) -> None:
    csrf = bank_user(web, world)
    form = {"csrf_token": csrf, "org_id": "factory", "requested": "12.345", "product": "pure_credit"}
    bad = web.post("/ui/bank/credit", data=form)
    assert bad.status_code == 422
    assert 'id="e-requested" data-code="invalid_amount"' in bad.text and 'aria-invalid="true"' in bad.text
    assert web.post("/ui/bank/credit", data={**form, "csrf_token": "forged", "requested": "100"}).status_code == 403
    # issue 13: without the business's authorisation the bank is refused, whether or not the business exists
    for org_id in ("nobody", "factory"):
        unknown = web.post("/ui/bank/credit", data={**form, "org_id": org_id, "requested": "100"})
        assert unknown.status_code == 403 and 'data-code="credit_authorisation_required"' in unknown.text


def test_credit_decision_shows_outcome_and_reason_codes(web: TestClient, world: App) -> None:
    from creditflow.credit.artefacts import build_artefact
    from creditflow.credit.scorer import matrix, world_vectors
    from creditflow.credit.simulate import simulate

    train = simulate(120, 5)
    world.credit.store_model(
        build_artefact(matrix(world_vectors(train)), train.bad.astype(int), params={"num_boost_round": 8}, seed=3)
    )
    world.credit.load_world(simulate(3, 9), [0], names={0: ("factory", "Factory")})
    authorise(world, "factory", "bank", "decision_and_features")
    csrf = bank_user(web, world)
    form = {"csrf_token": csrf, "org_id": "factory", "requested": "20,000.00", "product": "pure_credit"}
    response = web.post("/ui/bank/credit", data=form)
    assert response.status_code == 200 and "/ui/bank/credit/decisions/" in str(response.url)
    decision_id = str(response.url).rsplit("/", 1)[1].split("?")[0]
    stored = world.credit.decision(decision_id)
    assert stored["requested_minor"] == 2_000_000 and stored["org_id"] == "factory"
    page = response.text
    assert f'data-decision="{decision_id}" data-outcome="{stored["outcome"]}"' in page
    assert stored["reasons"]
    for reason in stored["reasons"]:
        assert f'<tr data-code="{reason["code"]}"><td><code>{reason["code"]}</code></td>' in page
    assert web.get("/ui/bank/credit/decisions/no-such-decision").status_code == 404


@pytest.mark.parametrize(
    ("text", "fen"), [("1", 100), ("1,234.5", 123_450), ("0.01", 1), ("150000.00", 15_000_000), (" 7.05 ", 705)]
)
def test_amounts_in_yuan_become_exact_fen(text: str, fen: int) -> None:
    assert parse_yuan(text, "requested") == fen


@pytest.mark.parametrize("text", ["", "0", "0.00", "1.234", "-5", "1e3", "abc", "1.2.3"])
def test_bad_amounts_are_refused(text: str) -> None:
    from creditflow.kernel.errors import InvalidInput

    with pytest.raises(InvalidInput):
        parse_yuan(text, "requested")
