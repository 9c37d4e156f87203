"""A burst of 10x the nominal rate through the real broker loses nothing and keeps memory bounded.

The issue's soak (10x for 60 s) is `slow`: it runs in `make bench`, not in CI. CI runs the same burst for a
few seconds."""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass

import pytest

from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, DeviceKind
from creditflow.collateral.mqtt import MqttIngest
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.tools.bench.iot import _run_publisher

MQTT_URL = os.environ.get("CREDITFLOW_TEST_MQTT_URL")
NORMAL_RATE = 100  # msg/s: a site of a few hundred devices reporting every few seconds
BURST_RATE = 10 * NORMAL_RATE
pytestmark = pytest.mark.skipif(not MQTT_URL, reason="needs the MQTT broker: set CREDITFLOW_TEST_MQTT_URL")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Burst:
    sent: int
    accepted: int
    rejected: dict[str, int]
    rss_mb: list[float]  # resident memory, sampled every 0.5 s from the start of the burst to the last commit
    max_queue_depth: int


def _burst(app: App, seconds: int) -> Burst:
    assert MQTT_URL is not None
    settings = IotSettings()
    iot = IotSystem(app.engine, settings, app.clock, custody=app.custody, sweep_offline=False)
    c = iot.collateral
    c.set_price("steel", 380)
    devices = []
    for lot in range(20):
        spec = AssetSpec(
            f"lot{lot}",
            "co",
            AssetKind.WAREHOUSE_LOT,
            "rebar",
            commodity="steel",
            quantity_kg=200_000,
            receipt_no=f"WR-{lot}",
        )
        c.register_asset(spec)
        for s in range(4):
            devices.append((f"sc{lot}-{s}", c.register_device(f"sc{lot}-{s}", f"lot{lot}", DeviceKind.SCALE), 50_000))
    prefix = f"test/{uuid.uuid4().hex[:10]}"
    ingest = MqttIngest(
        MQTT_URL,
        iot.pipeline.offer,
        prefix=prefix,
        group=f"g{uuid.uuid4().hex[:6]}",
        receive_max=settings.mqtt_receive_max,
        connections=4,
    )
    ingest.start()
    samples: list[float] = []
    depth = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(_rss_mb())
            depth[0] = max(depth[0], iot.pipeline.queue_depth)

    sampler = threading.Thread(target=sample, daemon=True)
    count = BURST_RATE * seconds
    try:
        samples.append(_rss_mb())
        sampler.start()
        proc, go, recv, _ = _run_publisher(MQTT_URL, prefix, devices, count, float(BURST_RATE), 0)
        go.set()
        _start, _end, sent = recv.recv()
        proc.join(60)
        deadline = time.monotonic() + 30
        while iot.pipeline.metrics.accepted < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        iot.pipeline.drain()
    finally:
        done.set()
        sampler.join()
        ingest.stop()
        iot.close()
    m = iot.pipeline.metrics
    return Burst(sent, m.accepted, dict(m.rejected), samples, depth[0])


def test_a_short_ten_times_burst_loses_nothing(sqlite_app: App) -> None:
    burst = _burst(sqlite_app, seconds=3)
    assert burst.sent == 3 * BURST_RATE
    assert (burst.accepted, burst.rejected) == (burst.sent, {})
    assert burst.max_queue_depth <= IotSettings().queue_max
    assert max(burst.rss_mb) - burst.rss_mb[0] < 150, burst.rss_mb


@pytest.mark.slow
def test_ten_times_burst_for_a_minute_loses_nothing_and_memory_levels_off(sqlite_app: App) -> None:
    burst = _burst(sqlite_app, seconds=60)
    assert burst.sent == 60 * BURST_RATE
    assert (burst.accepted, burst.rejected) == (burst.sent, {})
    # bounded: after the first 10 s (caches and the queue warmed up) resident memory grows no further than
    # noise, not with the 60 000 messages stored
    settled = burst.rss_mb[20:]
    assert settled and max(settled) - settled[0] < 50, burst.rss_mb
    assert max(burst.rss_mb) - burst.rss_mb[0] < 200, burst.rss_mb
