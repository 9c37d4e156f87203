"""Collateral over HTTP (TestClient): the telemetry batch endpoint feeds the same pipeline as MQTT."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import onboard
from creditflow.bootstrap import App
from creditflow.collateral.model import make_message
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.http.api import collateral as routes_iot
from creditflow.http.app import create_app
from creditflow.kernel.uscc import make_uscc

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture
def client(sqlite_app: App) -> Iterator[tuple[TestClient, App]]:
    onboard(sqlite_app, "steel", "bank", "operator")
    sqlite_app.iot.close()  # the wired one, replaced by one without the offline sweep (the clock is manual)
    sqlite_app.iot = IotSystem(
        sqlite_app.engine, IotSettings(), sqlite_app.clock, custody=sqlite_app.custody, sweep_offline=False
    )
    with TestClient(create_app(sqlite_app)) as test_client:
        yield test_client, sqlite_app


def auth(app: App, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org, 'test')}"}


def test_collateral_story_over_http(client: tuple[TestClient, App]) -> None:
    http, app = client
    steel, bank = auth(app, "steel"), auth(app, "bank")
    r = http.post(
        "/v1/iot/assets",
        headers=steel,
        json={
            "asset_id": "lot",
            "kind": "warehouse_lot",
            "name": "rebar",
            "commodity": "steel",
            "quantity_kg": 50_000,
            "receipt_no": "WR-9",
        },
    )
    assert r.status_code == 201, r.text
    r = http.post("/v1/iot/devices", headers=steel, json={"device_id": "sc", "asset_id": "lot", "kind": "scale"})
    secret = bytes.fromhex(r.json()["secret"])
    assert (
        http.post("/v1/iot/prices", headers=steel, json={"commodity": "steel", "price_minor_per_kg": 380}).status_code
        == 403
    )
    assert (
        http.post("/v1/iot/prices", headers=bank, json={"commodity": "steel", "price_minor_per_kg": 380}).status_code
        == 200
    )
    r = http.post(
        "/v1/iot/loans", headers=bank, json={"loan_id": "L", "borrower": "steel", "outstanding_minor": 10_000_000}
    )
    assert r.status_code == 201 and r.json()["status"] == "proposed"
    assert http.post("/v1/iot/loans/L/accept", headers=steel).json()["status"] == "accepted"
    r = http.post("/v1/iot/loans/L/pledges", headers=bank, json={"asset_id": "lot", "haircut_bps": 1000})
    assert r.json()["assets"] == [] and r.json()["pledge_proposals"][0]["status"] == "proposed"
    assert http.post("/v1/iot/loans/L/pledges/lot/accept", headers=steel).json()["ltv_bps"] == 5848
    now = app.clock.now_ms()
    messages: list[Any] = [
        json.loads(make_message(secret, "sc", now, 1, {"weight_kg": 50_000.0})),
        json.loads(make_message(secret, "sc", now + 1000, 2, {"weight_kg": 45_000.0})),
        {"device_id": "sc", "ts": now, "seq": 3, "values": {"weight_kg": 1.0}, "sig": "0" * 64},
    ]
    r = http.post("/v1/iot/telemetry", json={"messages": messages})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 1) and body["results"][2]["reason"] == "bad_signature"
    alarms = http.get("/v1/iot/alarms?active=true", headers=bank).json()["items"]
    assert [a["alarm_type"] for a in alarms] == ["unauthorised_outbound"]
    r = http.post(f"/v1/iot/alarms/{alarms[0]['alarm_id']}/ack", headers=bank, json={"user": "li.wei"})
    assert r.json()["ack_by"] == "bank:li.wei"
    assert http.get("/v1/iot/loans/L", headers=auth(app, "operator")).json()["band"] == "WARNING"
    metrics = http.get("/v1/iot/metrics").text
    assert "creditflow_iot_accepted_total 2" in metrics and 'reason="bad_signature"} 1' in metrics
    r = http.post("/v1/iot/assets/lot/releases", headers=bank, json={"quantity_kg": 999_999})
    assert r.status_code == 422 and r.json()["code"] == "release_exceeds_quantity"


def _asset(asset_id: str, receipt: str) -> dict[str, Any]:
    return {
        "asset_id": asset_id,
        "kind": "warehouse_lot",
        "name": "rebar",
        "commodity": "steel",
        "quantity_kg": 50_000,
        "receipt_no": receipt,
    }


def test_reads_are_scoped_to_the_organisations_concerned(client: tuple[TestClient, App]) -> None:
    """steel's lot is pledged to bank's loan; other's lot is pledged to nobody. Each organisation sees its own
    assets, devices, loans and alarms (a bank: what is pledged to it); operator and auditor see everything;
    anything else answers 404 exactly like an object that does not exist."""
    http, app = client
    onboard(app, "other", "auditor")
    app.ledger.register_organisation("bank2", "Bank Two", "bank", make_uscc("91320300134789999"))
    h = {org: auth(app, org) for org in ("steel", "other", "bank", "bank2", "operator", "auditor")}
    secrets = {}
    for org, lot in (("steel", "lot-s"), ("other", "lot-o")):
        assert http.post("/v1/iot/assets", headers=h[org], json=_asset(lot, f"WR-{lot}")).status_code == 201
        r = http.post(
            "/v1/iot/devices", headers=h[org], json={"device_id": f"sc-{lot}", "asset_id": lot, "kind": "scale"}
        )
        secrets[lot] = bytes.fromhex(r.json()["secret"])
    assert http.post(
        "/v1/iot/prices", headers=h["bank"], json={"commodity": "steel", "price_minor_per_kg": 380}
    ).is_success
    loan = {"loan_id": "L", "borrower": "steel", "outstanding_minor": 10_000_000}
    assert http.post("/v1/iot/loans", headers=h["bank"], json=loan).status_code == 201
    assert http.post("/v1/iot/loans/L/accept", headers=h["steel"]).status_code == 200
    # a bank proposes; only the borrower's own goods become a pledge, when the borrower accepts: another's lot
    # is proposed like any id (the answer says nothing of it) and the borrower cannot accept it
    r = http.post("/v1/iot/loans/L/pledges", headers=h["bank"], json={"asset_id": "lot-o", "haircut_bps": 1000})
    assert r.status_code == 200 and r.json()["assets"] == []
    r = http.post("/v1/iot/loans/L/pledges/lot-o/accept", headers=h["steel"])
    assert (r.status_code, r.json()["code"]) == (404, "asset_not_found")
    r = http.post("/v1/iot/loans/L/pledges", headers=h["bank"], json={"asset_id": "lot-s", "haircut_bps": 1000})
    assert r.status_code == 200 and r.json()["assets"] == []
    r = http.post("/v1/iot/loans/L/pledges/lot-s/accept", headers=h["steel"])
    assert r.status_code == 200 and r.json()["assets"] == ["lot-s"]
    now = app.clock.now_ms()
    batch = [
        json.loads(make_message(secrets[lot], f"sc-{lot}", now + i, i + 1, {"weight_kg": kg}))
        for lot in secrets
        for i, kg in enumerate((50_000.0, 40_000.0))
    ]
    assert http.post("/v1/iot/telemetry", json={"messages": batch}).json()["accepted"] == 4
    alarm_of = {a["asset_id"]: a["alarm_id"] for a in app.iot.collateral.alarms()}
    assert set(alarm_of) == {"lot-s", "lot-o"}

    def ids(org: str, path: str, key: str) -> list[str]:
        r = http.get(path, headers=h[org])
        assert r.status_code == 200, r.text
        assert r.json()["next_cursor"] is None
        return [item[key] for item in r.json()["items"]]

    seen = {
        "steel": (["lot-s"], ["sc-lot-s"], ["L"]),
        "other": (["lot-o"], ["sc-lot-o"], []),
        "bank": (["lot-s"], ["sc-lot-s"], ["L"]),
        "bank2": ([], [], []),
        "operator": (["lot-o", "lot-s"], ["sc-lot-o", "sc-lot-s"], ["L"]),
        "auditor": (["lot-o", "lot-s"], ["sc-lot-o", "sc-lot-s"], ["L"]),
    }
    for org, (assets, devices, loans) in seen.items():
        assert ids(org, "/v1/iot/assets", "asset_id") == assets, org
        assert ids(org, "/v1/iot/devices", "device_id") == devices, org
        assert ids(org, "/v1/iot/loans", "loan_id") == loans, org
        assert sorted(ids(org, "/v1/iot/alarms", "asset_id")) == assets, org
        for lot in ("lot-s", "lot-o"):
            for path in (f"/v1/iot/assets/{lot}", f"/v1/iot/devices/sc-{lot}"):
                r = http.get(path, headers=h[org])
                assert r.status_code == (200 if lot in assets else 404), (org, path)
        assert http.get("/v1/iot/loans/L", headers=h[org]).status_code == (200 if loans else 404), org

    # hidden and missing look the same
    hidden, missing = (
        http.get("/v1/iot/assets/lot-o", headers=h["bank"]),
        http.get("/v1/iot/assets/nope", headers=h["bank"]),
    )
    assert (hidden.json()["code"], missing.json()["code"]) == ("asset_not_found", "asset_not_found")
    assert hidden.json()["detail"].replace("lot-o", "X") == missing.json()["detail"].replace("nope", "X")

    # acting: an object one cannot see is 404; one seen but not one's to act on is 403
    def status(org: str, path: str, body: Any = None) -> int:
        return http.post(path, headers=h[org], json=body).status_code

    ack = {"user": "li.wei"}
    assert status("bank2", f"/v1/iot/alarms/{alarm_of['lot-s']}/ack", ack) == 404
    assert status("bank", f"/v1/iot/alarms/{alarm_of['lot-o']}/ack", ack) == 404
    assert status("steel", f"/v1/iot/alarms/{alarm_of['lot-s']}/ack", ack) == 403  # owner: the bank acknowledges
    assert status("auditor", f"/v1/iot/alarms/{alarm_of['lot-s']}/ack", ack) == 403
    assert status("bank", f"/v1/iot/alarms/{alarm_of['lot-s']}/ack", ack) == 200
    assert status("operator", f"/v1/iot/alarms/{alarm_of['lot-o']}/ack", ack) == 200
    assert status("bank2", "/v1/iot/loans/L/repayments", {"amount_minor": 1}) == 404
    assert status("steel", "/v1/iot/loans/L/repayments", {"amount_minor": 1}) == 403
    assert status("bank", "/v1/iot/loans/L/repayments", {"amount_minor": 1}) == 200
    assert status("bank2", "/v1/iot/assets/lot-s/releases", {"quantity_kg": 1}) == 404
    assert status("steel", "/v1/iot/assets/lot-s/releases", {"quantity_kg": 1}) == 403
    assert status("bank", "/v1/iot/assets/lot-s/releases", {"quantity_kg": 1}) == 200
    assert status("other", "/v1/iot/devices/sc-lot-s/rotate") == 404
    assert status("bank", "/v1/iot/devices/sc-lot-s/rotate") == 403  # the lender sees the device, owns nothing
    assert status("steel", "/v1/iot/devices/sc-lot-s/rotate") == 200
    assert status("bank", "/v1/iot/devices", {"device_id": "cam", "asset_id": "lot-s", "kind": "camera"}) == 403
    assert status("other", "/v1/iot/devices", {"device_id": "cam", "asset_id": "lot-s", "kind": "camera"}) == 404
    assert status("bank2", "/v1/iot/loans/L/pledges", {"asset_id": "lot-s", "haircut_bps": 0}) == 404
    assert status("steel", "/v1/iot/loans/L/pledges", {"asset_id": "lot-s", "haircut_bps": 0}) == 403
    assert status("other", "/v1/iot/devices/sc-lot-s/retire") == 404
    assert status("steel", "/v1/iot/devices/sc-lot-s/retire") == 204


def test_every_list_is_paginated(client: tuple[TestClient, App]) -> None:
    http, app = client
    steel, operator = auth(app, "steel"), auth(app, "operator")
    for i in range(5):
        assert http.post("/v1/iot/assets", headers=steel, json=_asset(f"lot-{i}", f"WR-{i}")).status_code == 201
        body = {"device_id": f"sc-{i}", "asset_id": f"lot-{i}", "kind": "scale"}
        assert http.post("/v1/iot/devices", headers=steel, json=body).status_code == 201
        loan = {"loan_id": f"L{i}", "borrower": "steel", "outstanding_minor": 1_000_000}
        assert http.post("/v1/iot/loans", headers=auth(app, "bank"), json=loan).status_code == 201
    secrets = {d["device_id"]: None for d in app.iot.collateral.devices()}
    assert len(secrets) == 5
    now = app.clock.now_ms()
    for i in range(5):  # one alarm per lot, at distinct times (newest first in the list)
        key = bytes.fromhex(http.post(f"/v1/iot/devices/sc-{i}/rotate", headers=steel).json()["secret"])
        msgs = [
            json.loads(make_message(key, f"sc-{i}", now + 10 * i + k, k + 1, {"weight_kg": kg}))
            for k, kg in enumerate((50_000.0, 1.0))
        ]
        assert http.post("/v1/iot/telemetry", json={"messages": msgs}).json()["accepted"] == 2

    def walk(path: str, key: str, limit: int) -> list[str]:
        out: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            r = http.get(path, headers=operator, params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= limit and set(page) == {"items", "next_cursor"}
            out += [item[key] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return out

    for limit in (1, 2, 5):
        assert walk("/v1/iot/assets", "asset_id", limit) == [f"lot-{i}" for i in range(5)]
        assert walk("/v1/iot/devices", "device_id", limit) == [f"sc-{i}" for i in range(5)]
        assert walk("/v1/iot/loans", "loan_id", limit) == [f"L{i}" for i in range(5)]
        assert walk("/v1/iot/alarms", "asset_id", limit) == [f"lot-{i}" for i in reversed(range(5))]
    for path in ("/v1/iot/assets", "/v1/iot/devices", "/v1/iot/loans", "/v1/iot/alarms"):
        r = http.get(path, headers=operator, params={"cursor": "not-a-cursor"})
        assert (r.status_code, r.json()["field"]) == (422, "cursor"), path
        assert http.get(path, headers=operator, params={"limit": 0}).status_code == 422, path


def test_request_models_carry_openapi_examples(client: tuple[TestClient, App]) -> None:
    http, _app = client
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    for name in (
        "TelemetryBatchIn",
        "AssetIn",
        "DeviceIn",
        "PriceIn",
        "LoanIn",
        "PledgeIn",
        "RepayIn",
        "ReleaseIn",
        "AckIn",
    ):
        examples = schemas[name].get("examples")
        assert examples, name
        model = getattr(routes_iot, name)
        for example in examples:
            model.model_validate(example)  # every example is a valid request


def test_the_lending_bank_clears_an_alarm_by_hand_saying_why(client: tuple[TestClient, App]) -> None:
    http, app = client
    steel, bank = auth(app, "steel"), auth(app, "bank")
    lot = {"asset_id": "lot", "kind": "warehouse_lot", "name": "rebar", "commodity": "steel"}
    assert http.post(
        "/v1/iot/assets", headers=steel, json=lot | {"quantity_kg": 50_000, "receipt_no": "WR-1"}
    ).is_success
    device = http.post("/v1/iot/devices", headers=steel, json={"device_id": "sc", "asset_id": "lot", "kind": "scale"})
    secret = bytes.fromhex(device.json()["secret"])
    assert http.post("/v1/iot/prices", headers=bank, json={"commodity": "steel", "price_minor_per_kg": 380}).is_success
    loan = {"loan_id": "L", "borrower": "steel", "outstanding_minor": 10_000_000}
    assert http.post("/v1/iot/loans", headers=bank, json=loan).is_success
    assert http.post("/v1/iot/loans/L/accept", headers=steel).is_success
    assert http.post("/v1/iot/loans/L/pledges", headers=bank, json={"asset_id": "lot", "haircut_bps": 1000}).is_success
    assert http.post("/v1/iot/loans/L/pledges/lot/accept", headers=steel).is_success
    now = app.clock.now_ms()
    readings = [(now, 1, 50_000.0), (now + 1000, 2, 45_000.0)]
    messages = [json.loads(make_message(secret, "sc", ts, seq, {"weight_kg": kg})) for ts, seq, kg in readings]
    assert http.post("/v1/iot/telemetry", json={"messages": messages}).json()["accepted"] == 2
    alarm_id = http.get("/v1/iot/alarms?active=true", headers=bank).json()["items"][0]["alarm_id"]
    path = f"/v1/iot/alarms/{alarm_id}/clear"

    assert http.post(path, headers=bank, json={"user": "li.wei", "note": "   "}).json()["code"] == "invalid_note"
    assert (
        http.post(path, headers=steel, json={"user": "wu", "note": "mine"}).status_code == 403
    )  # the borrower may not
    cleared = http.post(path, headers=bank, json={"user": "li.wei", "note": "recounted: 45 t, release was agreed"})
    assert cleared.status_code == 200, cleared.text
    body = cleared.json()
    assert body["status"] == "cleared" and body["acknowledged"] and body["ack_by"] == "bank:li.wei"
    assert body["details"]["cleared_by"] == "bank:li.wei" and body["details"]["clear_note"].startswith("recounted")
    again = http.post(path, headers=bank, json={"user": "li.wei", "note": "twice"})
    assert again.status_code == 409 and again.json()["code"] == "alarm_already_cleared"
    assert http.get("/v1/iot/alarms?active=true", headers=bank).json()["items"] == []
