"""The ingest pipeline, rules, alarms, valuation and margin calls against a real store (SQLite and, with
CREDITFLOW_TEST_PG_URL, PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from conftest import START_MS
from creditflow.bootstrap import App
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.engine import apply_alarm_changes, lock_and_load
from creditflow.collateral.loans import check_financing_allowed, financing_blocked
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.collateral.rules import AlarmChange
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.collateral.tables import iot_alarms, iot_dead_letters, iot_readings
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import Conflict, InvalidInput
from creditflow.tools.simulate.iot import consented_loan, ensure_parties

MIN = 60_000


@pytest.fixture(autouse=True)
def parties(app: App) -> None:
    """The borrower and the lenders, registered: their held keys sign the loans' and pledges' consents."""
    ensure_parties(app, {"steel-co": "supplier", "bank": "bank", "bank2": "bank"})


@pytest.fixture
def iot(app: App, clock: ManualClock) -> Iterator[IotSystem]:
    system = IotSystem(
        app.engine, IotSettings(notify_min_interval_ms=0), clock, custody=app.custody, sweep_offline=False
    )
    yield system
    system.close()


def steel_lot(iot: IotSystem, tag: str = "") -> dict[str, bytes]:
    c = iot.collateral
    c.set_price("steel", 380)
    c.register_asset(
        AssetSpec(
            f"lot{tag}",
            "steel-co",
            AssetKind.WAREHOUSE_LOT,
            "rebar",
            commodity="steel",
            quantity_kg=100_000,
            receipt_no=f"WR-{tag or 1}",
        )
    )
    # value 34 200 000 fen: LTV 64.33 %, WARNING (the bank proposes, the borrower accepts)
    consented_loan(iot, f"loan{tag}", "steel-co", "bank", 22_000_000, "steel", f"lot{tag}", 1_000)
    return {d: bytes.fromhex(c.register_device(d, f"lot{tag}", DeviceKind.SCALE)) for d in (f"s1{tag}", f"s2{tag}")}


def send(iot: IotSystem, secret: bytes, device: str, ts: int, seq: int, values: dict[str, float], **kw: Any) -> Any:
    return iot.pipeline.submit(make_message(secret, device, ts, seq, values), topic_device_id=device, **kw).result(10)


def test_rejects_are_counted_and_dead_lettered_and_change_nothing(app: App, iot: IotSystem, clock: ManualClock) -> None:
    keys = steel_lot(iot)
    now = clock.now_ms()
    good = make_message(keys["s1"], "s1", now, 1, {"weight_kg": 50_000.0})
    cases = {
        "unknown_device": make_message(keys["s1"], "ghost", now, 1, {"weight_kg": 1.0}),
        "bad_signature": make_message(b"x" * 32, "s1", now, 2, {"weight_kg": 1.0}),
        "malformed": b'{"device_id": "s1", "ts": 1',
        "out_of_range": make_message(keys["s1"], "s1", now, 3, {"weight_kg": -5.0}),
    }
    assert iot.pipeline.submit(good).result(10).accepted
    for reason, raw in cases.items():
        outcome = iot.pipeline.submit(raw, source="http").result(10)
        assert (outcome.accepted, outcome.reason) == (False, reason)
    duplicate = iot.pipeline.submit(good).result(10)
    replay = send(iot, keys["s1"], "s1", now + 1, 1, {"weight_kg": 10.0})
    assert (duplicate.reason, replay.reason) == ("duplicate", "replayed_seq")
    with app.engine.connect() as conn:
        reasons = sorted(r.reason for r in conn.execute(select(iot_dead_letters.c.reason)))
        assert conn.execute(select(func.count()).select_from(iot_readings)).scalar_one() == 1
    assert reasons == sorted([*cases, "duplicate", "replayed_seq"])
    metrics = iot.pipeline.prometheus()
    assert 'creditflow_iot_rejected_total{reason="bad_signature"} 1' in metrics
    assert "creditflow_iot_accepted_total 1" in metrics


def test_late_and_skewed_readings_are_flagged_and_latest_is_newest_device_time(
    app: App, iot: IotSystem, clock: ManualClock
) -> None:
    keys = steel_lot(iot)
    now = clock.now_ms()
    assert not send(iot, keys["s1"], "s1", now, 10, {"weight_kg": 50_000.0}).late
    late = send(iot, keys["s1"], "s1", now - 5 * MIN, 9, {"weight_kg": 10_000.0})
    skewed = send(iot, keys["s2"], "s2", now + 3_600_000, 1, {"weight_kg": 50_000.0})
    assert late.accepted and late.late and skewed.accepted and skewed.skewed
    assert iot.collateral.asset("lot")["measured_g"] == 100_000_000  # the late 10 t reading did not count
    assert iot.collateral.alarms() == []


def test_theft_alarm_margin_call_stops_financing_until_cured(app: App, iot: IotSystem, clock: ManualClock) -> None:
    keys = steel_lot(iot)
    events: list[dict[str, Any]] = []
    iot.pipeline._on_events = events.extend
    t = clock.now_ms()
    for seq, kg in enumerate((50_000.0, 48_500.0), start=1):
        send(iot, keys["s1"], "s1", t + seq * MIN, seq, {"weight_kg": kg})
        send(iot, keys["s2"], "s2", t + seq * MIN, seq, {"weight_kg": 50_000.0})
    (alarm,) = iot.collateral.alarms()
    assert (alarm["alarm_type"], alarm["severity"], alarm["status"]) == ("unauthorised_outbound", "CRITICAL", "active")
    loan = iot.collateral.loan("loan")
    assert (
        loan["band"] == "WARNING" and loan["ltv_bps"] == 6_531
    )  # 22 000 000 / (98.5 t x 380 x 0.9 = 33 687 000), rounded up
    clock.advance(10 * MIN)
    iot.collateral.set_price("steel", 340)
    loan = iot.collateral.loan("loan")
    assert loan["band"] == "MARGIN_CALL" and loan["financing_blocked"]
    with app.engine.connect() as conn:
        assert financing_blocked(conn, "steel-co") and not financing_blocked(conn, "someone-else")
        with pytest.raises(Conflict) as refused:
            check_financing_allowed(conn, "steel-co")
    assert refused.value.code == "margin_call_active"
    reason = iot.collateral.financing_restriction("steel-co")
    assert reason is not None and "loan (MARGIN_CALL, LTV 73.00 %)" in reason
    iot.collateral.repay("loan", 2_000_000)
    loan = iot.collateral.loan("loan")
    assert loan["band"] == "WARNING" and not loan["financing_blocked"]
    assert iot.collateral.financing_restriction("steel-co") is None
    assert [(e["from_band"], e["to_band"], e["cause"]) for e in loan["events"]] == [
        ("NORMAL", "WARNING", "pledge"),
        ("WARNING", "MARGIN_CALL", "price"),
        ("MARGIN_CALL", "WARNING", "repayment"),
    ]
    assert any(e["event"] == "alarm" and e["action"] == "raise" for e in events)
    acked = iot.collateral.acknowledge(alarm["alarm_id"], "li.wei")
    assert acked["acknowledged"] and acked["ack_by"] == "li.wei" and acked["status"] == "active"
    with pytest.raises(Conflict):
        iot.collateral.acknowledge(alarm["alarm_id"], "li.wei")


def test_authorised_release_raises_nothing_and_over_release_is_refused(
    app: App, iot: IotSystem, clock: ManualClock
) -> None:
    keys = steel_lot(iot)
    t = clock.now_ms()
    send(iot, keys["s1"], "s1", t, 1, {"weight_kg": 50_000.0})
    send(iot, keys["s2"], "s2", t, 1, {"weight_kg": 50_000.0})
    iot.collateral.repay("loan", 2_000_000)
    with pytest.raises(InvalidInput) as refused:
        iot.collateral.approve_release("lot", 200_000, "bank")
    assert refused.value.code == "release_exceeds_quantity" and iot.collateral.asset("lot")["expected_g"] == 100_000_000
    assert iot.collateral.approve_release("lot", 20_000, "bank")["expected_g"] == 80_000_000
    send(iot, keys["s1"], "s1", t + MIN, 2, {"weight_kg": 40_000.0})
    send(iot, keys["s2"], "s2", t + MIN, 2, {"weight_kg": 40_000.0})
    assert iot.collateral.alarms() == []
    assert iot.collateral.asset("lot")["value_minor"] == 80_000 * 380 * 9 // 10


def test_one_receipt_one_pledge(iot: IotSystem) -> None:
    steel_lot(iot)
    with pytest.raises(Conflict) as again:
        iot.collateral.register_asset(
            AssetSpec(
                "lot-b",
                "other",
                AssetKind.WAREHOUSE_LOT,
                "rebar",
                commodity="steel",
                quantity_kg=1_000,
                receipt_no="WR-1",
            )
        )
    assert again.value.code == "receipt_already_registered"
    iot.collateral.create_loan("loan-2", "steel-co", "bank2", 1_000_000)
    iot.collateral.accept_loan("loan-2", "steel-co")
    iot.collateral.propose_pledge("loan-2", "lot", 1_000, "bank2")
    with pytest.raises(Conflict) as twice:
        iot.collateral.accept_pledge("loan-2", "lot", "steel-co")
    assert twice.value.code == "asset_already_pledged"


def test_database_allows_one_active_alarm_per_asset_and_type(app: App) -> None:
    row = {
        "asset_id": "a",
        "alarm_type": "geofence_breach",
        "severity": "CRITICAL",
        "acknowledged": False,
        "raised_ts_ms": START_MS,
        "stored_ms": START_MS,
        "updated_ts_ms": START_MS,
        "details_json": "{}",
    }
    with app.engine.begin() as conn:
        conn.execute(iot_alarms.insert().values(id="1", status="cleared", **row))
        conn.execute(iot_alarms.insert().values(id="2", status="active", **row))
    with pytest.raises(IntegrityError), app.engine.begin() as conn:
        conn.execute(iot_alarms.insert().values(id="3", status="active", **row))


def test_a_raise_that_loses_the_race_changes_and_tells_nothing(app: App, iot: IotSystem) -> None:
    steel_lot(iot)
    change = AlarmChange("unauthorised_outbound", "raise", START_MS, {"drop_g": 1})
    settings = IotSettings(notify_min_interval_ms=0)
    with app.engine.begin() as conn:
        loaded = lock_and_load(conn, ["lot"])
        first = apply_alarm_changes(conn, "lot", [change], START_MS, loaded, settings)
        second = apply_alarm_changes(conn, "lot", [change], START_MS, loaded, settings)  # as a second worker would
    assert len(first) == 1 and second == []
    assert len(iot.collateral.alarms(active_only=True)) == 1


def test_two_workers_seeing_the_same_event_raise_one_alarm(app: App, clock: ManualClock) -> None:
    settings = IotSettings(notify_min_interval_ms=0)
    workers = [IotSystem(app.engine, settings, clock, custody=app.custody, sweep_offline=False) for _ in range(2)]
    try:
        c = workers[0].collateral
        c.register_asset(
            AssetSpec(
                "dig",
                "steel-co",
                AssetKind.EQUIPMENT,
                "excavator",
                serial_no="XE-1",
                geofence=[[34.26, 117.18], [34.26, 117.19], [34.27, 117.19], [34.27, 117.18]],
                appraised_minor=80_000_000,
            )
        )
        secrets = {d: bytes.fromhex(c.register_device(d, "dig", DeviceKind.TRACKER)) for d in ("gps-a", "gps-b")}
        barrier = threading.Barrier(2)
        raised: list[int] = []

        def worker(i: int) -> None:
            device = ("gps-a", "gps-b")[i]
            barrier.wait()
            for seq in range(1, 21):
                raw = make_message(secrets[device], device, clock.now_ms() + seq, seq, {"lat": 34.30, "lon": 117.185})
                workers[i].pipeline.submit(raw).result(10)
            raised.append(workers[i].pipeline.metrics.alarms.get("raise", 0))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        alarms = workers[0].collateral.alarms(asset_id="dig")
        assert [(a["alarm_type"], a["status"]) for a in alarms] == [("geofence_breach", "active")]
        assert sum(raised) == 1
    finally:
        for w in workers:
            w.close()


def test_webhooks_are_signed_and_retried(app: App, iot: IotSystem, clock: ManualClock) -> None:
    received: list[httpx.Request] = []
    fail_first = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        if fail_first[0]:
            fail_first[0] = False
            return httpx.Response(500)
        return httpx.Response(204)

    system = IotSystem(
        app.engine,
        IotSettings(notify_min_interval_ms=0),
        clock,
        custody=app.custody,
        sweep_offline=False,
        webhook_transport=httpx.MockTransport(handler),
    )
    try:
        keys = steel_lot(system)
        _hook_id, secret_hex = system.collateral.add_webhook("bank", "https://bank.example/hooks")
        t = clock.now_ms()
        send(system, keys["s1"], "s1", t, 1, {"weight_kg": 40_000.0})
        send(system, keys["s2"], "s2", t, 1, {"weight_kg": 50_000.0})
        first = system.webhooks.deliver_pending()
        second = system.webhooks.deliver_pending()
        assert second >= 1 and system.webhooks.delivered >= 1
        assert first < first + second
        request = received[-1]
        ts, mac = request.headers["X-Creditflow-Signature"].removeprefix("t=").split(",v1=")
        expected = hmac.new(bytes.fromhex(secret_hex), ts.encode() + b"." + request.content, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(mac, expected)
        assert json.loads(request.content)["event"] in ("alarm", "loan_band")
        assert system.webhooks.deliver_pending() == 0
    finally:
        system.close()


def test_notifications_are_rate_limited(app: App, clock: ManualClock) -> None:
    system = IotSystem(
        app.engine,
        IotSettings(notify_min_interval_ms=10 * MIN, clear_holdoff_ms=0),
        clock,
        custody=app.custody,
        sweep_offline=False,
    )
    try:
        events: list[dict[str, Any]] = []
        system.pipeline._on_events = events.extend
        keys = steel_lot(system)
        t = clock.now_ms()
        for seq in range(1, 7):  # short, full, short, full ...: raise, clear, raise, clear, ...
            send(system, keys["s1"], "s1", t + seq * 1000, seq, {"weight_kg": 40_000.0 if seq % 2 else 50_000.0})
            send(system, keys["s2"], "s2", t + seq * 1000, seq, {"weight_kg": 50_000.0})
        alarm_events = [(e["action"]) for e in events if e.get("event") == "alarm"]
        assert system.pipeline.metrics.alarms["raise"] == 3
        assert alarm_events.count("raise") == 1 and alarm_events.count("clear") == 3
    finally:
        system.close()


def test_prices_from_csv_keep_history_and_revalue(iot: IotSystem) -> None:
    steel_lot(iot)
    n = iot.collateral.import_prices_csv(
        "commodity,date,price_minor_per_kg\nsteel,2026-03-03,390\nsteel,2026-03-04,400\n"
    )
    assert n == 2 and [p["price_minor_per_kg"] for p in iot.collateral.price_history("steel")] == [380, 390, 400]
    assert iot.collateral.asset("lot")["value_minor"] == 100_000 * 400 * 9 // 10
    with pytest.raises(InvalidInput):
        iot.collateral.import_prices_csv("commodity,date,price_minor_per_kg\nsteel,2026-03-05,4.5\n")
    assert iot.collateral.price_history("steel")[-1]["price_minor_per_kg"] == 400


def test_the_duplicate_check_probes_the_primary_key_instead_of_scanning_readings(app: App) -> None:
    """Every batch looks its (device, seq) keys up among all stored readings: that must stay one index probe
    per key as the table grows (a row-value IN list made SQLite scan the whole table on every batch)."""
    from creditflow.collateral.store import _STORED_POSTGRESQL, _STORED_SQLITE

    keys = [("s1", 1), ("s2", 7)]
    with app.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            compiled = _STORED_SQLITE.compile(dialect=conn.dialect)
            plan = " | ".join(
                str(row[-1])
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", (json.dumps(keys),)).all()
            )
            assert "SEARCH r USING" in plan and "SCAN r" not in plan, plan
        else:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # tiny test tables: is there an index plan?
            params = ([d for d, _ in keys], [q for _, q in keys])
            plan = " | ".join(
                str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {_STORED_POSTGRESQL}", params).all()
            )
            assert "pk_iot_readings" in plan, plan
