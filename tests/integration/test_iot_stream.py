"""The live alarm stream (server-sent events) through a real HTTP server: an alarm raised after a dashboard
connects arrives on its stream, and only on the streams of the organisations it concerns."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from conftest import onboard
from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.http.app import create_app


@pytest.fixture
def server(sqlite_app: App) -> Iterator[tuple[str, App]]:
    onboard(sqlite_app, "steel", "other")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(sqlite_app),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", sqlite_app
    finally:
        uv.should_exit = True
        thread.join(5)


def _lot_with_scale(app: App, owner: str, lot: str) -> bytes:
    c = app.iot.collateral
    spec = AssetSpec(
        lot, owner, AssetKind.WAREHOUSE_LOT, "rebar", commodity="steel", quantity_kg=50_000, receipt_no=lot
    )
    c.register_asset(spec)
    return bytes.fromhex(c.register_device(f"sc-{lot}", lot, DeviceKind.SCALE))


def _steal(app: App, lot: str, secret: bytes) -> None:
    """Full, then 10 t short: the outbound rule raises an alarm on the lot."""
    t = app.clock.now_ms()
    for seq, kg in ((1, 50_000.0), (2, 40_000.0)):
        raw = make_message(secret, f"sc-{lot}", t + seq, seq, {"weight_kg": kg})
        assert app.iot.pipeline.submit(raw).result(5).accepted


def _next_event(lines: Iterator[str]) -> dict[str, Any]:
    """The next ``data:`` of an event stream (comments and keep-alives skipped)."""
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            event: dict[str, Any] = json.loads(line.removeprefix("data: "))
            assert event.get("event") == kind
            return event
    raise AssertionError("the stream ended")


def test_an_alarm_raised_after_connecting_arrives_on_the_stream(server: tuple[str, App]) -> None:
    base, app = server
    secrets = {org: _lot_with_scale(app, org, f"lot-{org}") for org in ("steel", "other")}
    keys = {org: app.access.create_key(org, "dashboard") for org in ("steel", "other")}
    started = time.monotonic()
    with (
        httpx.Client(base_url=base, timeout=httpx.Timeout(5.0)) as http,
        http.stream("GET", "/v1/iot/stream", headers={"Authorization": f"Bearer {keys['steel']}"}) as steel,
        http.stream("GET", "/v1/iot/stream", headers={"Authorization": f"Bearer {keys['other']}"}) as other,
    ):
        assert steel.status_code == other.status_code == 200
        assert steel.headers["content-type"].startswith("text/event-stream")
        steel_lines, other_lines = steel.iter_lines(), other.iter_lines()
        assert next(steel_lines) == next(other_lines) == ": connected"  # subscribed: later events are ours

        _steal(app, "lot-steel", secrets["steel"])
        event = _next_event(steel_lines)
        assert (event["action"], event["alarm_type"], event["asset_id"]) == (
            "raise",
            "unauthorised_outbound",
            "lot-steel",
        )
        assert event["severity"] == "CRITICAL" and "steel" in event["orgs"]
        stored = app.iot.collateral.alarms(asset_id="lot-steel")
        assert [a["alarm_id"] for a in stored] == [event["alarm_id"]]

        # other's stream did not get steel's alarm: the first event it sees is its own
        _steal(app, "lot-other", secrets["other"])
        assert _next_event(other_lines)["asset_id"] == "lot-other"
    assert time.monotonic() - started < 5


def test_the_stream_needs_a_key(server: tuple[str, App]) -> None:
    base, _app = server
    assert httpx.get(f"{base}/v1/iot/stream", timeout=5).status_code == 401
