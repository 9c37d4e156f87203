"""Device and webhook secrets are sealed at rest (SQLite and PostgreSQL): the database holds no usable secret,
the ingest still authenticates, a rotation made by another worker is seen at once, a sealed secret moved onto
another row does not open, and a database from before sealing is sealed at start-up."""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import select, update

from conftest import make_settings
from creditflow.bootstrap import App, build
from creditflow.collateral.assets import AssetSpec
from creditflow.collateral.model import AssetKind, DeviceKind, make_message
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.system import IotSystem
from creditflow.collateral.tables import iot_devices, iot_webhooks
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.engine import alembic_config, make_engine


def _lot(iot: IotSystem, *devices: str) -> dict[str, bytes]:
    c = iot.collateral
    c.register_asset(
        AssetSpec(
            "lot", "steel", AssetKind.WAREHOUSE_LOT, "rebar", commodity="steel", quantity_kg=1_000, receipt_no="W1"
        )
    )
    return {d: bytes.fromhex(c.register_device(d, "lot", DeviceKind.SCALE)) for d in devices}


def _send(iot: IotSystem, secret: bytes, device: str, seq: int, ts: int) -> tuple[bool, str | None]:
    outcome = iot.pipeline.submit(make_message(secret, device, ts, seq, {"weight_kg": 1_000.0})).result(10)
    return outcome.accepted, outcome.reason


def test_secrets_are_sealed_at_rest_and_still_authenticate(app: App, clock: ManualClock) -> None:
    iot = IotSystem(app.engine, IotSettings(), clock, custody=app.custody, sweep_offline=False)
    try:
        keys = _lot(iot, "s1", "s2")
        _hook, hook_secret = iot.collateral.add_webhook("bank", "https://bank.example/hooks")
        with app.engine.connect() as conn:
            devices = {r.id: r for r in conn.execute(select(iot_devices))}
            hooks = conn.execute(select(iot_webhooks)).all()
        for device, secret in keys.items():
            row = devices[device]
            assert row.secret is None and row.secret_sealed is not None
            assert secret not in bytes(row.secret_sealed) and secret.hex().encode() not in bytes(row.secret_sealed)
        assert hooks[0].secret is None and bytes.fromhex(hook_secret) not in bytes(hooks[0].secret_sealed)
        t = clock.now_ms()
        assert _send(iot, keys["s1"], "s1", 1, t) == (True, None)
        assert _send(iot, keys["s2"], "s1", 2, t) == (False, "bad_signature")

        # A sealed secret copied onto another device's row opens for nobody: refused, not crashed.
        with app.engine.begin() as conn:
            conn.execute(
                update(iot_devices).where(iot_devices.c.id == "s2").values(secret_sealed=devices["s1"].secret_sealed)
            )
        assert _send(iot, keys["s1"], "s2", 1, t) == (False, "unknown_device")
        assert _send(iot, keys["s2"], "s2", 2, t) == (False, "unknown_device")
    finally:
        iot.close()


def test_a_rotation_by_another_worker_is_seen_on_the_next_batch(app: App, clock: ManualClock) -> None:
    """Each worker keeps opened secrets in memory; a cached secret is used only while the row still holds the
    sealed bytes it came from, so no invalidation message is needed between processes."""
    workers = [IotSystem(app.engine, IotSettings(), clock, custody=app.custody, sweep_offline=False) for _ in "ab"]
    try:
        old = _lot(workers[0], "s1")["s1"]
        t = clock.now_ms()
        assert _send(workers[1], old, "s1", 1, t) == (True, None)
        assert _send(workers[1], old, "s1", 2, t) == (True, None)
        assert workers[1].secrets.opened == 1  # the second message used the cached secret
        new = bytes.fromhex(workers[0].collateral.rotate_secret("s1"))
        assert _send(workers[1], old, "s1", 3, t) == (False, "bad_signature")
        assert _send(workers[1], new, "s1", 4, t) == (True, None)
        workers[0].collateral.retire_device("s1")
        assert _send(workers[1], new, "s1", 5, t) == (False, "unknown_device")
    finally:
        for worker in workers:
            worker.close()


def test_the_secret_cache_is_bounded(app: App, clock: ManualClock) -> None:
    iot = IotSystem(app.engine, IotSettings(device_cache_max=2), clock, custody=app.custody, sweep_offline=False)
    try:
        keys = _lot(iot, "s1", "s2", "s3")
        t = clock.now_ms()
        for seq, device in enumerate(["s1", "s2", "s3", "s1"], start=1):
            assert _send(iot, keys[device], device, seq, t) == (True, None)
        assert len(iot.secrets._cache) == 2
        assert iot.secrets.opened == 4  # s1 was evicted by s3 and opened again
    finally:
        iot.close()


def test_clear_secrets_of_a_database_from_before_sealing_are_sealed_at_start(clock: ManualClock) -> None:
    """A database at revision 0006 holds clear secrets; after the migration and the first start they are
    sealed, and the devices keep working with the secrets they have."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'old.db'}"
        engine = make_engine(url)
        command.upgrade(alembic_config(engine), "0006")
        secret = bytes(range(32))
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO iot_assets (id, kind, owner, name, commodity, expected_g, receipt_no, created_ts_ms,"
                " state_json, health_index, value_minor, valued_ts_ms)"
                " VALUES ('lot', 'warehouse_lot', 'steel', 'rebar', 'steel', 1000000, 'W1', 0, '{}', 100, 0, 0)"
            )
            conn.exec_driver_sql(
                "INSERT INTO iot_devices (id, asset_id, kind, secret, secret_version, status, created_ts_ms)"
                " VALUES ('s1', 'lot', 'scale', ?, 1, 'active', 0)",
                (secret,),
            )
        engine.dispose()
        with build(make_settings(url), clock=clock) as app:  # migrates to head, then seals
            with app.engine.connect() as conn:
                row = conn.execute(select(iot_devices).where(iot_devices.c.id == "s1")).one()
            assert row.secret is None and secret not in bytes(row.secret_sealed)
            assert _send(app.iot, secret, "s1", 1, clock.now_ms()) == (True, None)
