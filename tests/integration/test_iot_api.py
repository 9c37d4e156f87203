"""Collateral over HTTP (TestClient): the telemetry batch endpoint feeds the same pipeline as MQTT."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import onboard
from creditflow.api import routes_iot
from creditflow.api.app import create_app
from creditflow.bootstrap import App
from creditflow.domain.collateral import make_message
from creditflow.services.iot_settings import IotSettings
from creditflow.services.iot_system import IotSystem

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture
def client(sqlite_app: App) -> Iterator[tuple[TestClient, App]]:
    onboard(sqlite_app, "steel", "bank", "operator")
    iot = IotSystem(sqlite_app.engine, IotSettings(), sqlite_app.clock, sweep_offline=False)
    sqlite_app.iot = iot  # type: ignore[attr-defined]  # what bootstrap will wire
    api = create_app(sqlite_app)
    api.include_router(routes_iot.router)
    with TestClient(api) as test_client:
        yield test_client, sqlite_app
    iot.close()


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
    assert r.status_code == 201
    assert (
        http.post("/v1/iot/loans/L/pledges", headers=bank, json={"asset_id": "lot", "haircut_bps": 1000}).json()[
            "ltv_bps"
        ]
        == 5848
    )
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
