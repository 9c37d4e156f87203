"""Through the real Mosquitto broker (CREDITFLOW_TEST_MQTT_URL, e.g. mqtt://127.0.0.1:1883): signed QoS 1
telemetry into the ingest, and two worker processes on one shared subscription."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import CLI_SECRETS_ENV
from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.collateral.mqtt import MqttIngest, MqttPublisher, telemetry_topic
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.collateral.tables import iot_alarms, iot_readings
from creditflow.kernel.clock import ManualClock

MQTT_URL = os.environ.get("CREDITFLOW_TEST_MQTT_URL")
pytestmark = pytest.mark.skipif(not MQTT_URL, reason="needs the MQTT broker: set CREDITFLOW_TEST_MQTT_URL (CI does)")
SITE = [[34.26, 117.18], [34.26, 117.19], [34.27, 117.19], [34.27, 117.18]]


@pytest.fixture
def iot(app: App, clock: ManualClock) -> Iterator[IotSystem]:
    system = IotSystem(app.engine, IotSettings(), clock, custody=app.custody, sweep_offline=False)
    yield system
    system.close()


def test_signed_telemetry_through_the_broker_raises_the_alarm(app: App, iot: IotSystem, clock: ManualClock) -> None:
    assert MQTT_URL is not None
    prefix = f"test/{uuid.uuid4().hex[:10]}"
    c = iot.collateral
    c.register_asset(
        AssetSpec(
            "dig", "co", AssetKind.EQUIPMENT, "excavator", serial_no="XE-1", geofence=SITE, appraised_minor=80_000_000
        )
    )
    secret = bytes.fromhex(c.register_device("gps", "dig", DeviceKind.TRACKER))
    ingest = MqttIngest(MQTT_URL, iot.pipeline.offer, prefix=prefix, group=f"g{uuid.uuid4().hex[:6]}")
    ingest.start()
    publisher = MqttPublisher(MQTT_URL)
    try:
        t = clock.now_ms()
        positions = [(34.265, 117.185), (34.266, 117.185), (34.30, 117.185)]  # the last is off site
        for seq, (lat, lon) in enumerate(positions, start=1):
            publisher.publish(
                telemetry_topic(prefix, "gps"),
                make_message(secret, "gps", t + seq * 1000, seq, {"lat": lat, "lon": lon}),
            )
        publisher.publish(telemetry_topic(prefix, "gps"), b"not json at all")
        publisher.publish(telemetry_topic(prefix, "other"), make_message(secret, "gps", t, 9, {"lat": 1.0, "lon": 1.0}))
        publisher.flush()
        deadline = time.monotonic() + 10
        while ingest.received < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        iot.pipeline.drain()
    finally:
        publisher.close()
        ingest.stop()
    assert ingest.received == 5
    alarms = iot.collateral.alarms(asset_id="dig")
    assert [(a["alarm_type"], a["severity"]) for a in alarms] == [("geofence_breach", "CRITICAL")]
    assert iot.pipeline.metrics.accepted == 3 and iot.pipeline.metrics.rejected == {"malformed": 2}


def _worker(db_url: str, prefix: str, group: str, seconds: float) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CREDITFLOW_KDF_OPSLIMIT": "1",
        "CREDITFLOW_KDF_MEMLIMIT_BYTES": str(8 * 1024 * 1024),
        **CLI_SECRETS_ENV,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "creditflow.cli.collateral",
            "ingest",
            "--db",
            db_url,
            "--mqtt",
            str(MQTT_URL),
            "--prefix",
            prefix,
            "--group",
            group,
            "--connections",
            "1",
            "--seconds",
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).parent,
    )


def test_two_worker_processes_share_the_stream_without_duplicates_or_lost_alarms(app: App, iot: IotSystem) -> None:
    """Every device reports on several assets; two `creditflow iot ingest` processes split the stream
    (MQTT shared subscription). Each asset leaves its geofence once: exactly one alarm each, every reading
    stored exactly once."""
    assert MQTT_URL is not None
    prefix, group = f"test/{uuid.uuid4().hex[:10]}", f"g{uuid.uuid4().hex[:6]}"
    c = iot.collateral
    secrets: dict[str, bytes] = {}
    for a in range(6):
        c.register_asset(
            AssetSpec(
                f"dig{a}",
                "co",
                AssetKind.EQUIPMENT,
                "excavator",
                serial_no=f"XE-{a}",
                geofence=SITE,
                appraised_minor=80_000_000,
            )
        )
        for d in range(2):
            secrets[f"gps{a}-{d}"] = bytes.fromhex(c.register_device(f"gps{a}-{d}", f"dig{a}", DeviceKind.TRACKER))
    workers = [_worker(str(app.engine.url.render_as_string(hide_password=False)), prefix, group, 25) for _ in range(2)]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        publisher = MqttPublisher(MQTT_URL)
        now = int(time.time() * 1000)
        sent = 0
        for seq in range(1, 41):
            for device, secret in secrets.items():
                lat = 34.265 if seq < 20 else 34.30  # every device leaves the site from seq 20 on
                publisher.publish(
                    telemetry_topic(prefix, device),
                    make_message(secret, device, now + seq, seq, {"lat": lat, "lon": 117.185}),
                )
                sent += 1
        publisher.flush()
        publisher.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with app.engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(iot_readings)).scalar_one() >= sent:
                    break
            time.sleep(0.1)
    finally:
        for w in workers:
            w.terminate()
        outputs = [w.communicate(timeout=30)[0] for w in workers]
    stats = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert all(s["accepted"] > 0 for s in stats), stats  # both workers took part
    assert sum(s["accepted"] for s in stats) == sent and all(not s["rejected"] for s in stats)
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(iot_readings)).scalar_one() == sent
        rows = conn.execute(select(iot_alarms.c.asset_id, iot_alarms.c.alarm_type, iot_alarms.c.status)).all()
    keys = [(r.asset_id, r.alarm_type) for r in rows]
    assert len(keys) == len(set(keys))  # no alarm twice (the workers' wall clock may add night-time movement)
    geofence = sorted((r.asset_id, r.status) for r in rows if r.alarm_type == "geofence_breach")
    assert geofence == [(f"dig{a}", "active") for a in range(6)]
