"""Collateral commands and queries: assets, devices and their secrets, prices, loans, pledges, repayments,
authorised releases, alarm acknowledgement. One command = one transaction; a `DomainError` changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, and_, or_, select
from sqlalchemy.exc import IntegrityError

from creditflow.collateral.engine import apply_alarm_changes, lock_and_load, queue_notification, save_states
from creditflow.collateral.model import (
    ALLOWED_DEVICES,
    MAX_PRICE_MINOR_PER_KG,
    MAX_QUANTITY_G,
    AssetKind,
    DeviceKind,
    LtvBand,
    blocks_financing,
    check_haircut,
    check_polygon,
    kg_to_g,
)
from creditflow.collateral.rules import AssetState, reevaluate
from creditflow.collateral.secrets import IotSecrets
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.tables import (
    iot_alarms,
    iot_assets,
    iot_dead_letters,
    iot_devices,
    iot_loan_events,
    iot_loans,
    iot_pledges,
    iot_prices,
    iot_releases,
    iot_webhooks,
)
from creditflow.collateral.valuation import LoanEvent, revalue, revalue_loans
from creditflow.kernel.clock import Clock
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger.queries import Page, after_key, decode_cursor, page_from

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
EventSink = Any  # Callable[[list[dict[str, Any]]], None] | None


def asset_not_found(asset_id: str) -> NotFound:
    return NotFound(f"no asset {asset_id}", code="asset_not_found", field="asset_id")


def device_not_found(device_id: str) -> NotFound:
    return NotFound(f"no device {device_id}", code="device_not_found", field="device_id")


def loan_not_found(loan_id: str) -> NotFound:
    return NotFound(f"no loan {loan_id}", code="loan_not_found", field="loan_id")


def alarm_not_found(alarm_id: str) -> NotFound:
    return NotFound(f"no alarm {alarm_id}", code="alarm_not_found", field="alarm_id")


def _visible_assets(viewer: str) -> ColumnElement[bool]:
    """Assets ``viewer`` may see: its own, and those pledged to a loan it granted."""
    lent = (
        select(iot_pledges.c.asset_id)
        .join(iot_loans, iot_loans.c.id == iot_pledges.c.loan_id)
        .where(iot_loans.c.lender == viewer)
    )
    return or_(iot_assets.c.owner == viewer, iot_assets.c.id.in_(lent))


def _visible_asset_ids(viewer: str) -> Select[Any]:
    return select(iot_assets.c.id).where(_visible_assets(viewer))


def check_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"{field} must be 1-64 letters, digits or . _ : -", code="invalid_id", field=field)
    return value


def _positive_quantity_g(kg: float, field: str) -> int:
    grams = kg_to_g(kg) if isinstance(kg, int | float) and not isinstance(kg, bool) else -1
    if not 0 < grams <= MAX_QUANTITY_G:
        raise InvalidInput(f"{field} must be a positive number of kg", code="invalid_quantity", field=field)
    return grams


@dataclass(frozen=True, slots=True)
class AssetSpec:
    asset_id: str
    owner: str
    kind: AssetKind
    name: str
    commodity: str | None = None
    quantity_kg: float | None = None  # warehouse lot
    receipt_no: str | None = None
    serial_no: str | None = None  # equipment
    geofence: Sequence[Sequence[float]] | None = None
    appraised_minor: int | None = None
    area_m2: int | None = None  # crop field
    crop: str | None = None
    expected_yield_kg: float | None = None


class CollateralService:
    def __init__(
        self, engine: Engine, settings: IotSettings, clock: Clock, secrets: IotSecrets, on_events: EventSink = None
    ):
        self._engine = engine
        self._secrets = secrets
        self._settings = settings
        self._clock = clock
        self._on_events = on_events

    def _publish(self, events: list[dict[str, Any]]) -> None:
        if events and self._on_events is not None:
            self._on_events(events)

    def _loan_notes(self, conn: Connection, events: list[LoanEvent], now: int) -> list[dict[str, Any]]:
        notes = []
        for event in events:
            note = queue_notification(
                conn, f"loan:{event.loan_id}", event.to_json(), now, self._settings, rate_limited=False
            )
            if note is not None:
                notes.append({**note, "orgs": [event.borrower, event.lender]})
        return notes

    # --- assets and devices ------------------------------------------------------------------------

    def register_asset(self, spec: AssetSpec) -> dict[str, Any]:
        check_id(spec.asset_id, "asset_id")
        check_id(spec.owner, "owner")
        if not 1 <= len(spec.name) <= 200:
            raise InvalidInput("name must be 1-200 characters", field="name")
        values: dict[str, Any] = {"commodity": None, "receipt_no": None, "serial_no": None, "geofence_json": None}
        if spec.kind is AssetKind.WAREHOUSE_LOT:
            if not spec.commodity or not spec.receipt_no:
                raise InvalidInput(
                    "a warehouse lot needs a commodity and a warehouse receipt number", field="receipt_no"
                )
            values.update(
                commodity=check_id(spec.commodity, "commodity"),
                receipt_no=check_id(spec.receipt_no, "receipt_no"),
                expected_g=_positive_quantity_g(spec.quantity_kg or 0, "quantity_kg"),
            )
        elif spec.kind is AssetKind.EQUIPMENT:
            if not spec.serial_no or spec.geofence is None or spec.appraised_minor is None:
                raise InvalidInput(
                    "equipment needs a serial number, a geofence and an appraised value", field="geofence"
                )
            values.update(
                serial_no=check_id(spec.serial_no, "serial_no"),
                geofence_json=json.dumps(check_polygon(spec.geofence)),
                appraised_minor=check_amount_minor(spec.appraised_minor, field="appraised_minor"),
                expected_g=0,
            )
        else:
            if not spec.crop or not spec.area_m2 or spec.area_m2 <= 0:
                raise InvalidInput("a crop field needs a crop, an area and an expected yield", field="crop")
            values.update(
                crop=check_id(spec.crop, "crop"),
                commodity=check_id(spec.commodity or spec.crop, "commodity"),
                area_m2=spec.area_m2,
                expected_g=_positive_quantity_g(spec.expected_yield_kg or 0, "expected_yield_kg"),
            )
        now = self._clock.now_ms()
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    iot_assets.insert().values(
                        id=spec.asset_id,
                        kind=spec.kind.value,
                        owner=spec.owner,
                        name=spec.name,
                        created_ts_ms=now,
                        state_json=json.dumps(AssetState().to_json(), sort_keys=True, separators=(",", ":")),
                        health_index=100,
                        measured_g=None,
                        value_minor=0,
                        valued_ts_ms=now,
                        **values,
                    )
                )
                revalue(conn, [spec.asset_id], self._settings, now, "registered")
        except IntegrityError as exc:
            if "receipt" in str(exc.orig).lower():
                raise Conflict(
                    f"warehouse receipt {spec.receipt_no} is already registered: one receipt, one pledge",
                    code="receipt_already_registered",
                    field="receipt_no",
                ) from None
            raise Conflict(f"asset {spec.asset_id} already exists", code="asset_exists", field="asset_id") from None
        return self.asset(spec.asset_id)

    def asset(self, asset_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        """One asset with its pledge; with ``viewer``, only if that organisation may see it (else the same
        404 as a missing asset)."""
        stmt = _ASSETS.where(iot_assets.c.id == asset_id)
        if viewer is not None:
            stmt = stmt.where(_visible_assets(viewer))
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise asset_not_found(asset_id)
        return _asset_json(row)

    def assets_page(self, *, viewer: str | None, size: int, cursor: str | None = None) -> Page:
        """Assets by id: the ``viewer``'s own and those pledged to its loans (every asset for None)."""
        stmt = _ASSETS
        if viewer is not None:
            stmt = stmt.where(_visible_assets(viewer))
        if cursor:
            stmt = stmt.where(after_key([iot_assets.c.id], decode_cursor(cursor, str)))
        with self._engine.connect() as conn:
            rows = conn.execute(stmt.order_by(iot_assets.c.id).limit(size + 1)).all()
        return page_from([_asset_json(r) for r in rows], size, lambda a: (a["asset_id"],))

    def asset_owner_and_lender(self, asset_id: str) -> tuple[str, str | None] | None:
        """(owner, lender of the loan it is pledged to) of an asset, or None if there is no such asset."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(iot_assets.c.owner, iot_loans.c.lender)
                .select_from(
                    iot_assets.outerjoin(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id).outerjoin(
                        iot_loans, iot_loans.c.id == iot_pledges.c.loan_id
                    )
                )
                .where(iot_assets.c.id == asset_id)
            ).first()
        return None if row is None else (row.owner, row.lender)

    def register_device(self, device_id: str, asset_id: str, kind: DeviceKind) -> str:
        """Bind a new device to an asset; return its secret (hex), shown once."""
        check_id(device_id, "device_id")
        secret = secrets.token_bytes(32)
        with self._engine.begin() as conn:
            asset = conn.execute(select(iot_assets.c.kind).where(iot_assets.c.id == asset_id)).first()
            if asset is None:
                raise asset_not_found(asset_id)
            if kind not in ALLOWED_DEVICES[AssetKind(asset.kind)]:
                raise InvalidInput(
                    f"a {kind.value} cannot monitor a {asset.kind}", code="device_kind_not_allowed", field="kind"
                )
            if conn.execute(select(iot_devices.c.id).where(iot_devices.c.id == device_id)).first() is not None:
                raise Conflict(f"device {device_id} already exists", code="device_exists", field="device_id")
            conn.execute(
                iot_devices.insert().values(
                    id=device_id,
                    asset_id=asset_id,
                    kind=kind.value,
                    secret_sealed=self._secrets.seal_device(device_id, 1, secret),
                    secret_version=1,
                    status="active",
                    created_ts_ms=self._clock.now_ms(),
                    last_rx_ms=None,
                )
            )
        return secret.hex()

    def rotate_secret(self, device_id: str) -> str:
        secret = secrets.token_bytes(32)
        with self._engine.begin() as conn:
            row = self._device(conn, device_id)
            version = row.secret_version + 1
            conn.execute(
                iot_devices.update()
                .where(iot_devices.c.id == device_id)
                .values(
                    secret=None,
                    secret_sealed=self._secrets.seal_device(device_id, version, secret),
                    secret_version=version,
                )
            )
        self._secrets.forget(device_id)
        return secret.hex()

    def retire_device(self, device_id: str) -> None:
        with self._engine.begin() as conn:
            self._device(conn, device_id)
            conn.execute(iot_devices.update().where(iot_devices.c.id == device_id).values(status="retired"))

    @staticmethod
    def _device(conn: Connection, device_id: str) -> Any:
        row = conn.execute(select(iot_devices).where(iot_devices.c.id == device_id)).first()
        if row is None:
            raise device_not_found(device_id)
        if row.status != "active":
            raise Conflict(f"device {device_id} is retired", code="device_retired", field="device_id")
        return row

    def devices(self, asset_id: str | None = None) -> list[dict[str, Any]]:
        query = select(*_DEVICE_COLUMNS).order_by(iot_devices.c.id)
        if asset_id is not None:
            query = query.where(iot_devices.c.asset_id == asset_id)
        with self._engine.connect() as conn:
            return [_device_json(r) for r in conn.execute(query)]

    def device(self, device_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        """One device (never its secret); with ``viewer``, only if it may see the device's asset."""
        stmt = select(*_DEVICE_COLUMNS).where(iot_devices.c.id == device_id)
        if viewer is not None:
            stmt = stmt.where(iot_devices.c.asset_id.in_(_visible_asset_ids(viewer)))
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise device_not_found(device_id)
        return _device_json(row)

    def devices_page(
        self, *, viewer: str | None, size: int, cursor: str | None = None, asset_id: str | None = None
    ) -> Page:
        """Devices by id, of the assets ``viewer`` may see (all for None), optionally of one asset."""
        stmt = select(*_DEVICE_COLUMNS)
        if viewer is not None:
            stmt = stmt.where(iot_devices.c.asset_id.in_(_visible_asset_ids(viewer)))
        if asset_id is not None:
            stmt = stmt.where(iot_devices.c.asset_id == asset_id)
        if cursor:
            stmt = stmt.where(after_key([iot_devices.c.id], decode_cursor(cursor, str)))
        with self._engine.connect() as conn:
            rows = conn.execute(stmt.order_by(iot_devices.c.id).limit(size + 1)).all()
        return page_from([_device_json(r) for r in rows], size, lambda d: (d["device_id"],))

    # --- prices ------------------------------------------------------------------------------------

    def set_price(
        self, commodity: str, price_minor_per_kg: int, *, ts_ms: int | None = None, source: str = "manual"
    ) -> list[LoanEvent]:
        return self.set_prices([(commodity, price_minor_per_kg, ts_ms)], source=source)

    def set_prices(self, prices: Sequence[tuple[str, int, int | None]], *, source: str) -> list[LoanEvent]:
        now = self._clock.now_ms()
        rows = []
        for n, (commodity, price, ts) in enumerate(prices, start=1):
            check_id(commodity, f"prices[{n}].commodity")
            if isinstance(price, bool) or not isinstance(price, int) or not 0 <= price <= MAX_PRICE_MINOR_PER_KG:
                raise InvalidInput(
                    f"row {n}: price_minor_per_kg must be a whole number of fen",
                    code="invalid_price",
                    field="price_minor_per_kg",
                )
            rows.append(
                {
                    "commodity": commodity,
                    "ts_ms": ts if ts is not None else now,
                    "price_minor_per_kg": price,
                    "source": source[:64],
                }
            )
        if not rows:
            raise InvalidInput("no prices given", code="invalid_price")
        with self._engine.begin() as conn:
            for row in rows:
                existing = conn.execute(
                    select(iot_prices.c.price_minor_per_kg).where(
                        iot_prices.c.commodity == row["commodity"], iot_prices.c.ts_ms == row["ts_ms"]
                    )
                ).first()
                if existing is not None:
                    if existing.price_minor_per_kg != row["price_minor_per_kg"]:
                        raise Conflict(
                            f"{row['commodity']} already has another price at {row['ts_ms']}",
                            code="price_conflict",
                            field="ts_ms",
                        )
                    continue
                conn.execute(iot_prices.insert().values(**row))
            commodities = {r["commodity"] for r in rows}
            ids = [r.id for r in conn.execute(select(iot_assets.c.id).where(iot_assets.c.commodity.in_(commodities)))]
            lock_and_load(conn, ids)
            events = revalue(conn, ids, self._settings, now, "price")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def import_prices_csv(self, text: str, *, source: str = "csv") -> int:
        """CSV with a header ``commodity,date,price_minor_per_kg`` (date ``YYYY-MM-DD``, 00:00 local)."""
        reader = csv.DictReader(io.StringIO(text))
        need = {"commodity", "date", "price_minor_per_kg"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise InvalidInput(f"the CSV needs the columns {sorted(need)}", code="invalid_csv")
        tz = dt.timezone(dt.timedelta(minutes=self._settings.utc_offset_minutes))
        prices: list[tuple[str, int, int | None]] = []
        for n, row in enumerate(reader, start=2):
            try:
                day = dt.date.fromisoformat(row["date"].strip())
                price = int(row["price_minor_per_kg"].strip())
            except ValueError:
                raise InvalidInput(f"line {n}: bad date or price", code="invalid_csv", line=n) from None
            ts = int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)
            prices.append((row["commodity"].strip(), price, ts))
        self.set_prices(prices, source=source)
        return len(prices)

    def price_history(self, commodity: str) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return [
                {"ts_ms": r.ts_ms, "price_minor_per_kg": r.price_minor_per_kg, "source": r.source}
                for r in conn.execute(
                    select(iot_prices).where(iot_prices.c.commodity == commodity).order_by(iot_prices.c.ts_ms)
                )
            ]

    # --- loans, pledges, repayments, releases --------------------------------------------------------

    def create_loan(
        self, loan_id: str, borrower: str, lender: str, outstanding_minor: int, bands_key: str = "default"
    ) -> None:
        check_id(loan_id, "loan_id")
        check_amount_minor(outstanding_minor, field="outstanding_minor")
        now = self._clock.now_ms()
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    iot_loans.insert().values(
                        id=loan_id,
                        borrower=check_id(borrower, "borrower"),
                        lender=check_id(lender, "lender"),
                        outstanding_minor=outstanding_minor,
                        currency="CNY",
                        bands_key=bands_key if bands_key in self._settings.ltv_bands_bps else "default",
                        value_minor=0,
                        ltv_bps=None,
                        band=LtvBand.NORMAL.value,
                        created_ts_ms=now,
                        updated_ts_ms=now,
                    )
                )
        except IntegrityError:
            raise Conflict(f"loan {loan_id} already exists", code="loan_exists", field="loan_id") from None

    def pledge(self, asset_id: str, loan_id: str, haircut_bps: int) -> list[LoanEvent]:
        check_haircut(haircut_bps)
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loaded = lock_and_load(conn, [asset_id])
            if asset_id not in loaded.contexts:
                raise asset_not_found(asset_id)
            if conn.execute(select(iot_loans.c.id).where(iot_loans.c.id == loan_id)).first() is None:
                raise loan_not_found(loan_id)
            if conn.execute(select(iot_pledges.c.loan_id).where(iot_pledges.c.asset_id == asset_id)).first():
                raise Conflict(
                    f"asset {asset_id} is already pledged: one receipt, one pledge",
                    code="asset_already_pledged",
                    field="asset_id",
                )
            conn.execute(
                iot_pledges.insert().values(
                    asset_id=asset_id, loan_id=loan_id, haircut_bps=haircut_bps, created_ts_ms=now
                )
            )
            events = revalue(conn, [asset_id], self._settings, now, "pledge")
            events += revalue_loans(conn, [loan_id], self._settings, now, "pledge")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def repay(self, loan_id: str, amount_minor: int) -> list[LoanEvent]:
        check_amount_minor(amount_minor)
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loan = conn.execute(select(iot_loans).where(iot_loans.c.id == loan_id).with_for_update()).first()
            if loan is None:
                raise loan_not_found(loan_id)
            if amount_minor > loan.outstanding_minor:
                raise InvalidInput(
                    "the repayment exceeds the outstanding amount",
                    code="repayment_exceeds_outstanding",
                    field="amount_minor",
                )
            conn.execute(
                iot_loans.update()
                .where(iot_loans.c.id == loan_id)
                .values(outstanding_minor=loan.outstanding_minor - amount_minor)
            )
            events = revalue_loans(conn, [loan_id], self._settings, now, "repayment")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def approve_release(self, asset_id: str, quantity_kg: float, approved_by: str) -> dict[str, Any]:
        """The bank lets ``quantity_kg`` leave a warehouse lot: the expected quantity drops, so the matching
        weight drop raises nothing (and an outbound alarm it explains clears after the hold-off)."""
        grams = _positive_quantity_g(quantity_kg, "quantity_kg")
        check_id(approved_by, "approved_by")
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loaded = lock_and_load(conn, [asset_id])
            ctx = loaded.contexts.get(asset_id)
            if ctx is None:
                raise asset_not_found(asset_id)
            if ctx.kind is not AssetKind.WAREHOUSE_LOT:
                raise InvalidInput(
                    "only warehouse lots are released by weight", code="not_a_warehouse_lot", field="asset_id"
                )
            if grams > ctx.expected_g:
                raise InvalidInput(
                    "the release exceeds the expected quantity", code="release_exceeds_quantity", field="quantity_kg"
                )
            expected = ctx.expected_g - grams
            conn.execute(iot_assets.update().where(iot_assets.c.id == asset_id).values(expected_g=expected))
            conn.execute(
                iot_releases.insert().values(
                    id=str(uuid.uuid4()), asset_id=asset_id, quantity_g=grams, approved_by=approved_by, ts_ms=now
                )
            )
            ctx = replace(ctx, expected_g=expected)
            latest = max((ts for ts, _ in loaded.states[asset_id].latest.values()), default=now)
            changes = reevaluate(ctx, loaded.states[asset_id], max(latest, now), self._settings.rule_params())
            notes = apply_alarm_changes(conn, asset_id, changes, now, loaded, self._settings)
            save_states(conn, loaded)
            events = revalue(conn, [asset_id], self._settings, now, "release")
            notes += self._loan_notes(conn, events, now)
        self._publish(notes)
        return {"asset_id": asset_id, "released_g": grams, "expected_g": expected}

    # --- alarms, loans, dead letters -----------------------------------------------------------------

    def acknowledge(self, alarm_id: str, user: str) -> dict[str, Any]:
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            row = conn.execute(select(iot_alarms).where(iot_alarms.c.id == alarm_id).with_for_update()).first()
            if row is None:
                raise alarm_not_found(alarm_id)
            if row.acknowledged:
                raise Conflict(f"alarm {alarm_id} was acknowledged by {row.ack_by}", code="alarm_already_acknowledged")
            conn.execute(
                iot_alarms.update()
                .where(iot_alarms.c.id == alarm_id)
                .values(acknowledged=True, ack_by=check_id(user, "user"), ack_ts_ms=now, updated_ts_ms=now)
            )
        return self.alarm(alarm_id)

    def clear(self, alarm_id: str, user: str, note: str) -> dict[str, Any]:
        """Close an active alarm by hand (a false positive, or dealt with on site), recording who, when and
        why in its details; the alarm is acknowledged at the same time if it was not. Watchers of the
        asset hear of it like an automatic clear. The rule that raised it is not reset: if the condition
        still holds, the alarm comes back only when it recurs after having cleared."""
        now = self._clock.now_ms()
        who = check_id(user, "user")
        note = note.strip()
        if not note or len(note) > 500:
            raise InvalidInput("say why the alarm is cleared (1-500 characters)", code="invalid_note", field="note")
        with self._engine.begin() as conn:
            row = conn.execute(select(iot_alarms).where(iot_alarms.c.id == alarm_id).with_for_update()).first()
            if row is None:
                raise alarm_not_found(alarm_id)
            if row.status != "active":
                raise Conflict(f"alarm {alarm_id} is already cleared", code="alarm_already_cleared")
            details = {**json.loads(row.details_json), "cleared_by": who, "clear_note": note}
            values: dict[str, Any] = {
                "status": "cleared",
                "cleared_ts_ms": now,
                "updated_ts_ms": now,
                "details_json": json.dumps(details, sort_keys=True),
            }
            if not row.acknowledged:
                values.update(acknowledged=True, ack_by=who, ack_ts_ms=now)
            conn.execute(iot_alarms.update().where(iot_alarms.c.id == alarm_id).values(**values))
            owner_lender = conn.execute(
                select(iot_assets.c.owner, iot_loans.c.lender)
                .select_from(
                    iot_assets.outerjoin(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id).outerjoin(
                        iot_loans, iot_loans.c.id == iot_pledges.c.loan_id
                    )
                )
                .where(iot_assets.c.id == row.asset_id)
            ).first()
            event = {
                "alarm_id": alarm_id,
                "event": "alarm",
                "action": "clear",
                "asset_id": row.asset_id,
                "alarm_type": row.alarm_type,
                "severity": row.severity,
                "ts_ms": now,
                "stored_ms": now,
                "details": details,
                "orgs": sorted({owner_lender.owner, owner_lender.lender or ""} - {""}) if owner_lender else [],
            }
            note_out = queue_notification(
                conn, f"{row.asset_id}:{row.alarm_type}", event, now, self._settings, rate_limited=False
            )
        self._publish([note_out] if note_out is not None else [])
        return self.alarm(alarm_id)

    def alarm(self, alarm_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        stmt = select(iot_alarms).where(iot_alarms.c.id == alarm_id)
        if viewer is not None:
            stmt = stmt.where(iot_alarms.c.asset_id.in_(_visible_asset_ids(viewer)))
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise alarm_not_found(alarm_id)
        return _alarm_json(row)

    def alarms(
        self, *, asset_id: str | None = None, active_only: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = select(iot_alarms).order_by(iot_alarms.c.raised_ts_ms.desc(), iot_alarms.c.id).limit(limit)
        if asset_id is not None:
            query = query.where(iot_alarms.c.asset_id == asset_id)
        if active_only:
            query = query.where(iot_alarms.c.status == "active")
        with self._engine.connect() as conn:
            return [_alarm_json(r) for r in conn.execute(query)]

    def alarms_page(
        self,
        *,
        viewer: str | None,
        size: int,
        cursor: str | None = None,
        asset_id: str | None = None,
        active_only: bool = False,
    ) -> Page:
        """Alarms newest first (raised time, then id), on the assets ``viewer`` may see (all for None)."""
        a = iot_alarms.c
        stmt = select(iot_alarms)
        if viewer is not None:
            stmt = stmt.where(a.asset_id.in_(_visible_asset_ids(viewer)))
        if asset_id is not None:
            stmt = stmt.where(a.asset_id == asset_id)
        if active_only:
            stmt = stmt.where(a.status == "active")
        if cursor:
            ts, alarm_id = decode_cursor(cursor, int, str)
            stmt = stmt.where(or_(a.raised_ts_ms < ts, and_(a.raised_ts_ms == ts, a.id > alarm_id)))
        with self._engine.connect() as conn:
            rows = conn.execute(stmt.order_by(a.raised_ts_ms.desc(), a.id).limit(size + 1)).all()
        return page_from([_alarm_json(r) for r in rows], size, lambda x: (x["raised_ts_ms"], x["alarm_id"]))

    def loan(self, loan_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        """One loan with its assets and band history; with ``viewer``, only for its borrower and lender."""
        stmt = select(iot_loans).where(iot_loans.c.id == loan_id)
        if viewer is not None:
            stmt = stmt.where(or_(iot_loans.c.borrower == viewer, iot_loans.c.lender == viewer))
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                raise loan_not_found(loan_id)
            return _loans_json(conn, [row])[0]

    def loans_page(self, *, viewer: str | None, size: int, cursor: str | None = None) -> Page:
        """Loans by id: those ``viewer`` borrowed or granted (all for None)."""
        stmt = select(iot_loans)
        if viewer is not None:
            stmt = stmt.where(or_(iot_loans.c.borrower == viewer, iot_loans.c.lender == viewer))
        if cursor:
            stmt = stmt.where(after_key([iot_loans.c.id], decode_cursor(cursor, str)))
        with self._engine.connect() as conn:
            rows = conn.execute(stmt.order_by(iot_loans.c.id).limit(size + 1)).all()
            items = _loans_json(conn, rows)
        return page_from(items, size, lambda x: (x["loan_id"],))

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(iot_dead_letters).order_by(iot_dead_letters.c.id.desc()).limit(limit))
            return [
                {
                    "id": r.id,
                    "received_ms": r.received_ms,
                    "source": r.source,
                    "device_id": r.device_id,
                    "reason": r.reason,
                    "detail": r.detail,
                }
                for r in rows
            ]

    def financing_restriction(self, borrower: str) -> str | None:
        """`FinancingService.restriction_hook`: why new financing is stopped for ``borrower``, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(iot_loans.c.id, iot_loans.c.band, iot_loans.c.ltv_bps)
                .where(
                    iot_loans.c.borrower == borrower,
                    iot_loans.c.band.in_([LtvBand.MARGIN_CALL.value, LtvBand.LIQUIDATION.value]),
                )
                .order_by(iot_loans.c.id)
                .limit(1)
            ).first()
        if row is None:
            return None
        ltv = "no collateral value" if row.ltv_bps is None else f"LTV {row.ltv_bps / 100:.2f} %"
        return f"margin call not cured on collateral loan {row.id} ({row.band}, {ltv})"

    def add_webhook(self, org_id: str, url: str) -> tuple[str, str]:
        """Register a webhook; return (id, signing secret hex), the secret shown once."""
        if not url.startswith(("http://", "https://")) or len(url) > 500:
            raise InvalidInput("url must be an http(s) URL of at most 500 characters", code="invalid_url", field="url")
        webhook_id, secret = str(uuid.uuid4()), secrets.token_bytes(32)
        with self._engine.begin() as conn:
            conn.execute(
                iot_webhooks.insert().values(
                    id=webhook_id,
                    org_id=check_id(org_id, "org_id"),
                    url=url,
                    secret_sealed=self._secrets.seal_webhook(webhook_id, secret),
                    active=True,
                    created_ts_ms=self._clock.now_ms(),
                )
            )
        return webhook_id, secret.hex()


def financing_blocked(conn: Connection, borrower: str) -> bool:
    """True while any of the borrower's collateral loans is in the margin-call or liquidation band."""
    row = conn.execute(
        select(iot_loans.c.id)
        .where(
            iot_loans.c.borrower == borrower,
            iot_loans.c.band.in_([LtvBand.MARGIN_CALL.value, LtvBand.LIQUIDATION.value]),
        )
        .limit(1)
    ).first()
    return row is not None


def check_financing_allowed(conn: Connection, borrower: str) -> None:
    """For the financing service: refuse new financing for a borrower under an uncured margin call."""
    if financing_blocked(conn, borrower):
        raise Conflict(
            f"{borrower} has an uncured margin call on pledged collateral; new financing is stopped",
            code="margin_call_active",
            field="org_id",
        )


_ASSETS = select(iot_assets, iot_pledges.c.loan_id, iot_pledges.c.haircut_bps).select_from(
    iot_assets.outerjoin(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id)
)
_DEVICE_COLUMNS = (
    iot_devices.c.id,
    iot_devices.c.asset_id,
    iot_devices.c.kind,
    iot_devices.c.status,
    iot_devices.c.secret_version,
    iot_devices.c.last_rx_ms,
)


def _asset_json(row: Any) -> dict[str, Any]:
    """An asset row of `_ASSETS` (with its pledge, if any)."""
    return {
        "asset_id": row.id,
        "kind": row.kind,
        "owner": row.owner,
        "name": row.name,
        "commodity": row.commodity,
        "expected_g": row.expected_g,
        "measured_g": row.measured_g,
        "receipt_no": row.receipt_no,
        "serial_no": row.serial_no,
        "crop": row.crop,
        "health_index": row.health_index,
        "value_minor": row.value_minor,
        "loan_id": row.loan_id,
        "haircut_bps": row.haircut_bps,
    }


def _device_json(row: Any) -> dict[str, Any]:
    return {
        "device_id": row.id,
        "asset_id": row.asset_id,
        "kind": row.kind,
        "status": row.status,
        "secret_version": row.secret_version,
        "last_rx_ms": row.last_rx_ms,
    }


def _loans_json(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Loan rows with their pledged assets and band history (two queries for the lot)."""
    ids = [r.id for r in rows]
    assets: dict[str, list[str]] = {i: [] for i in ids}
    events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for p in conn.execute(
            select(iot_pledges.c.loan_id, iot_pledges.c.asset_id)
            .where(iot_pledges.c.loan_id.in_(ids))
            .order_by(iot_pledges.c.asset_id)
        ):
            assets[p.loan_id].append(p.asset_id)
        for e in conn.execute(
            select(iot_loan_events)
            .where(iot_loan_events.c.loan_id.in_(ids))
            .order_by(iot_loan_events.c.loan_id, iot_loan_events.c.ts_ms)
        ):
            events[e.loan_id].append(
                {
                    "ts_ms": e.ts_ms,
                    "from_band": e.from_band,
                    "to_band": e.to_band,
                    "ltv_bps": e.ltv_bps,
                    "cause": e.cause,
                }
            )
    return [
        {
            "loan_id": row.id,
            "borrower": row.borrower,
            "lender": row.lender,
            "outstanding_minor": row.outstanding_minor,
            "value_minor": row.value_minor,
            "ltv_bps": row.ltv_bps,
            "band": row.band,
            "assets": assets[row.id],
            "financing_blocked": blocks_financing(LtvBand(row.band)),
            "events": events[row.id],
        }
        for row in rows
    ]


def _alarm_json(row: Any) -> dict[str, Any]:
    return {
        "alarm_id": row.id,
        "asset_id": row.asset_id,
        "alarm_type": row.alarm_type,
        "severity": row.severity,
        "status": row.status,
        "acknowledged": row.acknowledged,
        "ack_by": row.ack_by,
        "ack_ts_ms": row.ack_ts_ms,
        "raised_ts_ms": row.raised_ts_ms,
        "stored_ms": row.stored_ms,
        "cleared_ts_ms": row.cleared_ts_ms,
        "details": json.loads(row.details_json),
    }
