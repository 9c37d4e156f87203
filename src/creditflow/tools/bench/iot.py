"""`creditflow bench iot`: telemetry through the real Mosquitto broker, QoS 1, rules and storage on.

Per store (SQLite file; PostgreSQL when a URL is given):

* ``sustained_msgs_per_s``: a publisher in its own process sends ``messages`` signed readings at a fixed
  rate (QoS 1), stepping the rate up (``ramp``); the ingest (`MqttIngest` with ``connections`` connections in
  one share group -> `IngestPipeline`, manual PUBACK after commit) stores every one and runs the rules. MQTT
  has no end-to-end back-pressure (the broker acknowledges the publisher, then queues at most
  ``max_queued_messages`` per subscriber beyond the subscriber's in-flight window, ``receive_max``, and drops
  the rest), so a rate is sustained only if its step lost nothing and the ingest kept up (finished within
  10 % of the publishing time). Reported: the highest such rate, committed / elapsed (publish start to last
  commit), and its ``lost`` (0); every step's ``lost`` and ``publish_s`` (the publisher's own time: above
  ``messages / rate`` the publisher, not the ingest, fell short) are in ``ramp``, their sum in ``lost_in_ramp``.
* ``alarm_latency_ms_p50/p99``: a paced run at ``latency_rate`` msg/s where 5 % of the messages are a weight
  drop on an alarm lot (hold-off 0, so every drop raises and every restore clears): wall time from the
  device's ``ts`` (stamped at publish) to the commit that stored the alarm; ``latency_run_lost`` counts what
  that run lost.
* ``offline_detected_ms``: after the runs every device falls silent; time from the last reading to the
  first ``device_offline`` alarm with a 1 s heartbeat and 3 missed heartbeats (target: ~3 000 ms).
* ``bound_msgs_per_s``: in the same run, the same publisher into a bare subscriber on the same broker, with
  as many connections in one share group as the ingest, that only counts (no parsing, no storage): what the
  broker and the client library allow at all.

The process is set up as `creditflow iot ingest` sets itself up (`settle_heap` once ready).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from creditflow.bootstrap import build, throwaway_secrets
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.ingest import settle_heap
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.config import Settings
from creditflow.kernel.clock import SystemClock
from creditflow.tools.simulate.iot import consented_loan, ensure_parties

FAST_KDF = {"kdf_opslimit": 1, "kdf_memlimit_bytes": 8 * 1024 * 1024}
LOTS = 50  # four scales each
ALARM_LOTS = 20  # one scale each, toggled between full and short
CONNECTIONS = 4  # MQTT connections of the ingest in its share group, and of the bare subscriber (the bound)


def _publisher(
    url: str,
    prefix: str,
    devices: list[tuple[str, str, int]],
    count: int,
    rate: float | None,
    alarm_every: int,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    """Child process: publish ``count`` messages round-robin over ``devices`` (id, secret hex, kg)."""
    from creditflow.collateral.mqtt import MqttPublisher, telemetry_topic

    pub = MqttPublisher(url, max_inflight=1000)
    secrets = [(d, bytes.fromhex(s), kg, telemetry_topic(prefix, d)) for d, s, kg in devices]
    alarm_devices = [x for x in secrets if x[2] == 0]
    normal = [x for x in secrets if x[2] != 0]
    seqs: dict[str, int] = {}
    toggles: dict[str, bool] = {}
    ready.set()
    go.wait()
    start = time.perf_counter()
    for i in range(count):
        if rate is not None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        if alarm_devices and alarm_every and i % alarm_every == 0:
            device, secret, _kg, topic = alarm_devices[(i // alarm_every) % len(alarm_devices)]
            drop = toggles[device] = not toggles.get(device, False)
            values = {"weight_kg": 9_000.0 if drop else 10_000.0}
        else:
            device, secret, kg, topic = normal[i % len(normal)]
            values = {"weight_kg": float(kg)}
        seq = seqs[device] = seqs.get(device, int(time.time() * 1000) * 10) + 1
        pub.publish(topic, make_message(secret, device, time.time_ns() // 1_000_000, seq, values))
    pub.flush(120)
    out.send((start, time.perf_counter(), pub.sent))
    pub.close()


def _run_publisher(
    url: str, prefix: str, devices: list[tuple[str, str, int]], count: int, rate: float | None, alarm_every: int
) -> tuple[Any, Any, Any, Any]:
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_publisher, args=(url, prefix, devices, count, rate, alarm_every, ready, go, send), daemon=True
    )
    proc.start()
    if not ready.wait(30):
        raise RuntimeError("the publisher process did not start")
    return proc, go, recv, send


def measure_bound(url: str, count: int, connections: int = CONNECTIONS) -> float:
    """A bare QoS 1 subscriber that only counts, with as many connections in one share group as the ingest
    has: messages per second from first to last arrival."""
    from creditflow.collateral.mqtt import BareCounter

    prefix = f"bench-bound-{uuid.uuid4().hex[:8]}"
    devices = [(f"d{i}", "00" * 32, 1_000) for i in range(100)]
    counter = BareCounter(url, f"{prefix}/devices/+/telemetry", connections=connections)
    try:
        proc, go, recv, _ = _run_publisher(url, prefix, devices, count, None, 0)
        go.set()
        recv.recv()
        proc.join(60)
        deadline = time.monotonic() + 30
        while counter.count < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counter.first_s is not None and counter.last_s is not None
        return counter.count / max(counter.last_s - counter.first_s, 1e-9)
    finally:
        counter.close()


def _bench_store(
    db_url: str, mqtt_url: str, messages: int, latency_rate: int, latency_seconds: int, ramp_rates: tuple[int, ...]
) -> dict[str, Any]:
    from creditflow.collateral.mqtt import MqttIngest

    app = build(Settings(db_url=db_url, **FAST_KDF, **throwaway_secrets()), clock=SystemClock())  # type: ignore[arg-type]
    iot_settings = IotSettings.from_settings(
        app.settings,
        clear_holdoff_ms=0,
        notify_min_interval_ms=0,
        heartbeat_ms=1_000,
        offline_missed_heartbeats=3,
        tick_interval_ms=100,
        clock_skew_max_ms=60_000,
    )
    ensure_parties(app, {"steel-co": "supplier", "bank": "bank"})
    iot = IotSystem(app.engine, iot_settings, app.clock, custody=app.custody)
    latencies: list[float] = []
    offline_at: list[float] = []
    lock = threading.Lock()

    def on_events(events: list[dict[str, Any]]) -> None:
        now_ms = time.time_ns() / 1e6
        with lock:
            for e in events:
                if e.get("event") == "alarm" and e.get("action") == "raise":
                    if e["alarm_type"] == "unauthorised_outbound":
                        latencies.append(now_ms - e["ts_ms"])
                    elif e["alarm_type"] == "device_offline":
                        offline_at.append(time.monotonic())
        iot.broadcaster.publish(events)

    iot.pipeline._on_events = on_events
    tag = uuid.uuid4().hex[:6]
    c = iot.collateral
    c.set_price("steel", 380)
    devices: list[tuple[str, str, int]] = []
    for lot in range(LOTS):
        asset = f"b{tag}-lot{lot}"
        c.register_asset(
            AssetSpec(
                asset,
                "steel-co",
                AssetKind.WAREHOUSE_LOT,
                asset,
                commodity="steel",
                quantity_kg=200_000,
                receipt_no=f"WR-{asset}",
            )
        )
        consented_loan(iot, f"L-{asset}", "steel-co", "bank", 40_000_000, "steel", asset, 1_000)
        for s in range(4):
            device = f"b{tag}-sc{lot}-{s}"
            devices.append((device, c.register_device(device, asset, DeviceKind.SCALE), 50_000))
    for lot in range(ALARM_LOTS):
        asset = f"b{tag}-alarm{lot}"
        c.register_asset(
            AssetSpec(
                asset,
                "steel-co",
                AssetKind.WAREHOUSE_LOT,
                asset,
                commodity="steel",
                quantity_kg=10_000,
                receipt_no=f"WR-{asset}",
            )
        )
        device = f"b{tag}-asc{lot}"
        devices.append((device, c.register_device(device, asset, DeviceKind.SCALE), 0))
    prefix = f"{iot_settings.mqtt_topic_prefix}/bench-{tag}"
    ingest = MqttIngest(
        mqtt_url,
        iot.pipeline.offer,
        prefix=prefix,
        group=f"bench-{tag}",
        receive_max=iot_settings.mqtt_receive_max,
        connections=CONNECTIONS,
    )
    ingest.start()
    settle_heap()  # as `creditflow iot ingest` does once it is set up
    metrics = iot.pipeline.metrics

    def committed() -> int:
        return metrics.accepted + sum(metrics.rejected.values())

    def run(count: int, rate: float | None, alarm_every: int) -> tuple[float, float, int, int]:
        """(publish start to last commit s, the publisher's own publishing time s, sent, committed)."""
        base = committed()
        proc, go, recv, _ = _run_publisher(mqtt_url, prefix, devices, count, rate, alarm_every)
        go.set()
        start, end, sent = recv.recv()
        proc.join(60)
        deadline = time.monotonic() + 10  # anything not committed by then the broker has dropped
        while committed() - base < sent and time.monotonic() < deadline:
            time.sleep(0.002)
        iot.pipeline.drain(60)
        done = time.perf_counter()
        return done - start, end - start, sent, committed() - base

    try:
        # Ramp: each step publishes `messages` at a fixed rate; "sustained" is the highest rate whose step
        # lost nothing and finished within 10 % of its publishing time (the ingest kept up).
        ramp: list[dict[str, Any]] = []
        sustained, lost_at_sustained = 0.0, 0
        for rate in ramp_rates:
            elapsed, publish_s, sent, got = run(messages, float(rate), 0)
            kept_up = sent == got and elapsed <= messages / rate * 1.1 + 0.2
            ramp.append(
                {
                    "rate": rate,
                    "elapsed_s": round(elapsed, 2),
                    "publish_s": round(publish_s, 2),  # > messages / rate: the publisher could not keep the rate
                    "sent": sent,
                    "committed": got,
                    "lost": sent - got,
                    "kept_up": kept_up,
                }
            )
            if not kept_up:
                break
            sustained, lost_at_sustained = got / elapsed, sent - got
        rejected_before = sum(metrics.rejected.values())
        lat_count = latency_rate * latency_seconds
        _lat_elapsed, _lat_publish, lat_sent, lat_got = run(lat_count, float(latency_rate), 20)
        quiet_from = time.monotonic()
        with lock:
            offline_at.clear()
        deadline = quiet_from + 10
        while not offline_at and time.monotonic() < deadline:
            time.sleep(0.01)
        lat = sorted(latencies)
        result = {
            "messages_per_step": messages,
            "sustained_msgs_per_s": round(sustained, 1),
            "lost": lost_at_sustained,
            "lost_in_ramp": sum(step["lost"] for step in ramp),  # including the step that did not keep up
            "ramp": ramp,
            "rejected": rejected_before,
            "alarm_latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
            "alarm_latency_ms_p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else None,
            "alarm_samples": len(lat),
            "latency_rate_msgs_per_s": latency_rate,
            "latency_run_lost": lat_sent - lat_got,
            "offline_detected_ms": round((offline_at[0] - quiet_from) * 1000 + 0, 0) if offline_at else None,
            "offline_heartbeat_ms": iot_settings.rule_params().heartbeat_ms,
            "batches": metrics.batches,
            "connections": CONNECTIONS,
            "receive_max": iot_settings.mqtt_receive_max,
            "batch_linger_ms": iot_settings.batch_linger_ms,
            "devices": len(devices),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        ingest.stop()
        iot.close()
        app.close()
    return result


def run_iot_bench(
    mqtt_url: str,
    *,
    pg_url: str | None = None,
    messages: int = 15_000,
    latency_rate: int = 1_000,
    latency_seconds: int = 5,
    ramp_rates: tuple[int, ...] = (1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000),
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "iot",
        "broker": mqtt_url,
        "qos": 1,
        "cpus": os.cpu_count(),
        "targets": {
            "sustained_msgs_per_s": 3000,
            "lost": 0,
            "alarm_latency_ms_p99_at_1000": 50,
            "offline_heartbeats": 3,
        },
    }
    bound = measure_bound(mqtt_url, messages)
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = _bench_store(
            f"sqlite:///{Path(tmp) / 'iot.db'}", mqtt_url, messages, latency_rate, latency_seconds, ramp_rates
        )
    result["sqlite"]["bound_msgs_per_s"] = round(bound, 1)
    if pg_url:
        from creditflow.kernel.engine import make_engine

        name = f"cf_bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(pg_url).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            result["postgresql"] = _bench_store(
                f"{pg_url.rsplit('/', 1)[0]}/{name}", mqtt_url, messages, latency_rate, latency_seconds, ramp_rates
            )
            result["postgresql"]["bound_msgs_per_s"] = round(bound, 1)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    else:
        result["postgresql"] = {"skipped": "no PostgreSQL URL (--pg or $CREDITFLOW_TEST_PG_URL)"}
    return result
