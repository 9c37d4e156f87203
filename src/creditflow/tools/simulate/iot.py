"""`creditflow simulate iot`: realistic devices on pledged collateral, with scripted incidents.

The cast: a steel warehouse (200 t of rebar on four weight scales, one camera) pledged for a loan; an
excavator with a GPS tracker and a site geofence; a tea garden in a remote hill area whose soil,
temperature and light sensors report over a satellite terminal. Every simulated minute each device reports
once. Incidents, on the night of 2 March 2026 (local time, +08:00):

* 21:20        the borrower repays 20 000 CNY and the bank approves releasing 10 t, which leave at
               21:40-21:49 and raise nothing
* 22:00-22:09  3 t of steel leave at night (camera motion, the four scales drop 750 kg each): CRITICAL,
               and the LTV crosses into margin call
* 22:30        the steel price falls from 3.80 to 3.50 CNY/kg (the LTV climbs further)
* 23:00-23:10  the excavator drives off site
* 23:30        scale 4's cable is cut (silent from then on)
* 01:30-03:00  frost in the tea garden
* 04:00        the borrower repays 60 000 CNY: the margin call is cured

Devices go through the real broker when a URL is given (QoS 1, signed payloads), else straight into the
ingest pipeline. Time is simulated: one `ManualClock` stamps device time and receive time, so a night runs
in seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.collateral.system import IotSystem
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.money import format_minor

TZ = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 3, 2, 21, 0, tzinfo=TZ)
MINUTE_MS = 60_000
SITE = [(34.2600, 117.1800), (34.2600, 117.1900), (34.2700, 117.1900), (34.2700, 117.1800)]


@dataclass
class SimDevice:
    device_id: str
    kind: DeviceKind
    secret: bytes
    seq: int = 0
    silent: bool = False


@dataclass
class SimResult:
    published: int = 0
    alarms: list[dict[str, Any]] = field(default_factory=list)
    loan_timeline: list[tuple[str, str, int | None, str]] = field(default_factory=list)  # time, band, ltv, note
    loans: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    via: str = "in-process"


CAST = {"steel-co": "supplier", "tea-coop": "supplier", "bank": "bank"}  # the scenario's borrowers and lender


def ensure_parties(app: Any, parties: dict[str, str]) -> None:
    """Register the scenario's organisations (platform custody: the platform holds their keys, which sign
    the loan and pledge consents) unless an earlier run registered them already."""
    from creditflow.kernel.errors import Conflict
    from creditflow.kernel.uscc import make_uscc

    for org_id, role in parties.items():
        digits = int(hashlib.sha256(org_id.encode()).hexdigest(), 16) % 10**9
        try:
            app.ledger.register_organisation(org_id, org_id, role, make_uscc(f"91330100{digits:09d}"))
        except Conflict as exc:
            if exc.code not in ("party_exists", "uscc_exists"):
                raise


def consented_loan(
    iot: IotSystem,
    loan_id: str,
    borrower: str,
    lender: str,
    outstanding_minor: int,
    bands_key: str,
    asset_id: str,
    haircut_bps: int,
) -> None:
    """A loan and one pledge as they come about: the lender proposes both, the borrower accepts both."""
    c = iot.collateral
    c.create_loan(loan_id, borrower, lender, outstanding_minor, bands_key)
    c.accept_loan(loan_id, borrower)
    c.propose_pledge(loan_id, asset_id, haircut_bps, lender)
    c.accept_pledge(loan_id, asset_id, borrower)


def setup_world(iot: IotSystem, tag: str = "") -> dict[str, SimDevice]:
    """Register the assets, devices, prices, loans and pledges of the scenario; return the devices."""
    c = iot.collateral
    c.set_price("steel", 380)
    c.set_price("tea", 6_000)
    c.register_asset(
        AssetSpec(
            f"steel-lot{tag}",
            "steel-co",
            AssetKind.WAREHOUSE_LOT,
            "HRB400 rebar, bay 3",
            commodity="steel",
            quantity_kg=200_000,
            receipt_no=f"WR-2026-0301{tag}",
        )
    )
    c.register_asset(
        AssetSpec(
            f"excavator{tag}",
            "steel-co",
            AssetKind.EQUIPMENT,
            "XE215 excavator",
            serial_no=f"XE215-{tag or '0'}",
            geofence=[list(p) for p in SITE],
            appraised_minor=80_000_000,
        )
    )
    c.register_asset(
        AssetSpec(
            f"tea-garden{tag}",
            "tea-coop",
            AssetKind.CROP_FIELD,
            "Biluochun hill garden",
            crop="tea",
            area_m2=60_000,
            expected_yield_kg=900,
        )
    )
    # the bank proposes each loan and pledge; the borrower accepts both (each side signs the terms)
    consented_loan(iot, f"loan-steel{tag}", "steel-co", "bank", 47_144_000, "steel", f"steel-lot{tag}", 1_000)
    consented_loan(iot, f"loan-excavator{tag}", "steel-co", "bank", 30_000_000, "default", f"excavator{tag}", 3_000)
    consented_loan(iot, f"loan-tea{tag}", "tea-coop", "bank", 2_500_000, "tea", f"tea-garden{tag}", 2_000)
    devices: dict[str, SimDevice] = {}
    plan = [(f"scale-{i}{tag}", f"steel-lot{tag}", DeviceKind.SCALE) for i in range(1, 5)]
    plan += [
        (f"cam-1{tag}", f"steel-lot{tag}", DeviceKind.CAMERA),
        (f"gps-1{tag}", f"excavator{tag}", DeviceKind.TRACKER),
        (f"env-1{tag}", f"tea-garden{tag}", DeviceKind.ENVIRONMENT),
    ]
    for device_id, asset_id, kind in plan:
        devices[device_id] = SimDevice(device_id, kind, bytes.fromhex(c.register_device(device_id, asset_id, kind)))
    return devices


def run_simulation(
    iot: IotSystem,
    clock: ManualClock,
    *,
    mqtt_url: str | None = None,
    minutes: int = 8 * 60,
    tag: str = "",
    on_minute: Callable[[dt.datetime], None] | None = None,
) -> SimResult:
    """Drive the scenario minute by minute; returns what happened (alarms, the LTV timeline)."""
    from creditflow.collateral.mqtt import MqttIngest, MqttPublisher, telemetry_topic

    rng = random.Random(7)
    clock.set(int(START.timestamp() * 1000))
    devices = setup_world(iot, tag)
    result = SimResult(via="mqtt" if mqtt_url else "in-process")
    prefix = f"{iot.settings.mqtt_topic_prefix}/sim-{tag or 'default'}"
    ingest = publisher = None
    if mqtt_url:
        ingest = MqttIngest(
            mqtt_url, iot.pipeline.offer, prefix=prefix, group=f"sim{tag}", receive_max=iot.settings.mqtt_receive_max
        )
        ingest.start()
        publisher = MqttPublisher(mqtt_url)
    weights = {d: 50_000.0 for d in devices if devices[d].kind is DeviceKind.SCALE}
    position = [34.2650, 117.1850]
    started = time.perf_counter()
    band = "NORMAL"
    loan_id = f"loan-steel{tag}"
    try:
        for minute in range(minutes):
            now = START + dt.timedelta(minutes=minute)
            clock.set(int(now.timestamp() * 1000))
            hm = (now.hour, now.minute)
            motion = 1.0 if (21, 40) <= hm < (21, 52) or (22, 0) <= hm < (22, 12) else 0.0
            if (22, 0) <= hm < (22, 10):
                for d in weights:
                    weights[d] -= 75.0
            if (21, 40) <= hm < (21, 50):  # the authorised 10 t leave
                for d in weights:
                    weights[d] -= 250.0
            if hm == (23, 30):
                devices[f"scale-4{tag}"].silent = True
            moving = (23, 0) <= hm < (23, 10)
            if moving:
                position[0] += 0.0025
            frost = (1, 30) <= hm < (3, 0)
            values: dict[str, dict[str, float]] = {}
            for d, w in weights.items():
                values[d] = {"weight_kg": round(w + rng.uniform(-2, 2), 1)}
            values[f"cam-1{tag}"] = {"motion": motion, "occlusion": 0.0, "person_count": 2.0 if motion else 0.0}
            values[f"gps-1{tag}"] = {
                "lat": round(position[0], 6),
                "lon": position[1],
                "speed_kmh": 18.0 if moving else 0.0,
            }
            values[f"env-1{tag}"] = {
                "air_temp_c": -2.5 if frost else 6.0,
                "soil_temp_c": 4.0,
                "soil_moisture_pct": 45.0,
                "humidity_pct": 80.0,
                "light_lux": 0.0,
            }
            ts = clock.now_ms()
            sent = 0
            for d, vals in values.items():
                dev = devices[d]
                if dev.silent:
                    continue
                dev.seq += 1
                raw = make_message(dev.secret, d, ts, dev.seq, vals)
                if publisher is not None:
                    publisher.publish(telemetry_topic(prefix, d), raw)
                else:
                    iot.pipeline.submit(raw, topic_device_id=d, source="sim")
                sent += 1
            result.published += sent
            if publisher is not None and ingest is not None:
                publisher.flush()
                deadline = time.monotonic() + 30
                while ingest.received < result.published:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the broker did not deliver every message")
                    time.sleep(0.001)
            iot.pipeline.drain()
            iot.pipeline.sweep(clock.now_ms())
            if hm == (22, 30):
                iot.collateral.set_price("steel", 350, source="exchange")
            if hm == (21, 20):
                iot.collateral.repay(loan_id, 2_000_000)
                iot.collateral.approve_release(f"steel-lot{tag}", 10_000, "bank")
            if hm == (4, 0):
                iot.collateral.repay(loan_id, 6_000_000)
            loan = iot.collateral.loan(loan_id)
            if loan["band"] != band or minute == 0:
                note = "start" if minute == 0 else f"{band} -> {loan['band']}"
                result.loan_timeline.append((now.strftime("%H:%M"), loan["band"], loan["ltv_bps"], note))
                band = loan["band"]
            if on_minute is not None:
                on_minute(now)
    finally:
        if ingest is not None:
            ingest.stop()
        if publisher is not None:
            publisher.close()
    result.elapsed_s = time.perf_counter() - started
    result.alarms = [a for a in iot.collateral.alarms(limit=1000) if a["asset_id"].endswith(tag) or not tag]
    for lid in (loan_id, f"loan-excavator{tag}", f"loan-tea{tag}"):
        result.loans[lid] = iot.collateral.loan(lid)
    return result


def _local(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ts_ms / 1000, TZ).strftime("%H:%M")


def print_result(console: Console, result: SimResult) -> None:
    console.print(
        f"[bold]IoT collateral[/bold]: {result.published} signed readings via {result.via}, "
        f"one night simulated in {result.elapsed_s:.1f} s"
    )
    table = Table("raised", "asset", "alarm", "severity", "status", "cleared", "details")
    for a in sorted(result.alarms, key=lambda a: a["raised_ts_ms"]):
        d = a["details"]
        brief = ", ".join(
            f"{k}={v}" for k, v in d.items() if k in ("drop_g", "confidence", "devices", "lat", "air_temp_c")
        )
        table.add_row(
            _local(a["raised_ts_ms"]),
            a["asset_id"],
            a["alarm_type"],
            a["severity"],
            a["status"],
            _local(a["cleared_ts_ms"]),
            brief,
        )
    console.print(table)
    ltv = Table("time", "band", "LTV", "change")
    for when, band, bps, note in result.loan_timeline:
        ltv.add_row(when, band, "-" if bps is None else f"{bps / 100:.2f} %", note)
    console.print(ltv)
    for lid, loan in result.loans.items():
        console.print(
            f"{lid}: outstanding {format_minor(loan['outstanding_minor'])}, collateral "
            f"{format_minor(loan['value_minor'])}, band {loan['band']}, "
            f"financing {'STOPPED' if loan['financing_blocked'] else 'open'}"
        )


def broker_reachable(url: str | None) -> bool:
    if not url:
        return False
    import socket

    from creditflow.collateral.mqtt import parse_mqtt_url

    try:
        host, port = parse_mqtt_url(url)
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def run_iot_demo(console: Console, app: Any, mqtt_url: str | None = None, minutes: int = 8 * 60) -> SimResult:
    """The `creditflow demo` chapter: the night at the warehouse, through the broker when one answers at
    ``mqtt_url`` (default $CREDITFLOW_MQTT_URL), in-process otherwise. ``app`` is a built `App`."""
    import os

    from creditflow.collateral.settings import IotSettings

    url = mqtt_url or os.environ.get("CREDITFLOW_MQTT_URL")
    ensure_parties(app, CAST)
    clock = ManualClock(int(START.timestamp() * 1000))
    iot = IotSystem(
        app.engine, IotSettings.from_settings(app.settings), clock, custody=app.custody, sweep_offline=False
    )
    try:
        result = run_simulation(
            iot,
            clock,
            mqtt_url=url if broker_reachable(url) else None,
            minutes=minutes,
            tag=f"-{int(time.time() * 1000) % 10**9}",
        )
    finally:
        iot.close()
    print_result(console, result)
    return result
