"""Soak: a 10x burst through the real broker for 60 s with no loss and bounded memory (`make bench`)."""

from __future__ import annotations

import os
import resource
import time
import uuid

import pytest

from creditflow.adapters.mqtt import MqttIngest
from creditflow.benchmarks.iot import _run_publisher
from creditflow.bootstrap import App
from creditflow.domain.collateral import AssetKind, DeviceKind
from creditflow.services.iot_registry import AssetSpec
from creditflow.services.iot_settings import IotSettings
from creditflow.services.iot_system import IotSystem

MQTT_URL = os.environ.get("CREDITFLOW_TEST_MQTT_URL")
NORMAL_RATE = 100  # msg/s: a site of a few hundred devices reporting every few seconds
BURST_S = 60


@pytest.mark.slow
@pytest.mark.skipif(not MQTT_URL, reason="needs the MQTT broker: set CREDITFLOW_TEST_MQTT_URL")
def test_ten_times_burst_for_a_minute_loses_nothing(sqlite_app: App) -> None:
    assert MQTT_URL is not None
    iot = IotSystem(sqlite_app.engine, IotSettings(), sqlite_app.clock, sweep_offline=False)
    c = iot.collateral
    c.set_price("steel", 380)
    devices = []
    for lot in range(20):
        c.register_asset(
            AssetSpec(
                f"lot{lot}",
                "co",
                AssetKind.WAREHOUSE_LOT,
                "rebar",
                commodity="steel",
                quantity_kg=200_000,
                receipt_no=f"WR-{lot}",
            )
        )
        for s in range(4):
            devices.append((f"sc{lot}-{s}", c.register_device(f"sc{lot}-{s}", f"lot{lot}", DeviceKind.SCALE), 50_000))
    prefix = f"test/{uuid.uuid4().hex[:10]}"
    ingest = MqttIngest(MQTT_URL, iot.pipeline.submit, prefix=prefix, group=f"g{uuid.uuid4().hex[:6]}", connections=4)
    ingest.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = 10 * NORMAL_RATE * BURST_S
    try:
        proc, go, recv, _ = _run_publisher(MQTT_URL, prefix, devices, count, float(10 * NORMAL_RATE), 0)
        go.set()
        _start, _end, sent = recv.recv()
        proc.join(60)
        deadline = time.monotonic() + 30
        while iot.pipeline.metrics.accepted < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        iot.pipeline.drain()
    finally:
        ingest.stop()
        iot.close()
    assert sent == count and iot.pipeline.metrics.accepted == count and not iot.pipeline.metrics.rejected
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"memory grew by {grown_mb:.0f} MB"
