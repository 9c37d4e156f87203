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

from creditflow.collateral import store
from creditflow.collateral.engine import apply_alarm_changes, lock_and_load, queue_notification, save_states
from creditflow.collateral.model import (
    ALLOWED_DEVICES,
    MAX_PRICE_MINOR_PER_KG,
    MAX_QUANTITY_G,
    AssetKind,
    DeviceKind,
    LtvBand,
    check_haircut,
    check_polygon,
    kg_to_g,
)
from creditflow.collateral.rules import AssetState, reevaluate
from creditflow.collateral.secrets import IotSecrets
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.valuation import LoanEvent, revalue, revalue_loans
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger.queries import Page, decode_cursor, page_from

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


@dataclass(frozen=True, slots=True)
class AssetSite:
    """What a site plan shows of an asset, read from the rules engine's state so no caller parses it:
    the geofence, the last GPS fix, and the devices the rules judge offline or see tampered with."""

    geofence: tuple[tuple[float, float], ...] | None  # (lat, lon) points; None: no geofence
    position: tuple[float, float] | None  # the last GPS fix (lat, lon)
    position_ts_ms: int | None
    offline: frozenset[str]
    tampered: frozenset[str]  # its latest reading reports tamper or occlusion


TAMPER_REPORTED = 0.5  # a camera's ``tamper`` or ``occlusion`` value at or above this reports it


def asset_site(geofence_json: str | None, state_json: str) -> AssetSite:
    state = AssetState.from_json(json.loads(state_json) or {})
    tampered = frozenset(
        device_id
        for device_id, (_, values) in state.latest.items()
        if values.get("tamper", 0) >= TAMPER_REPORTED or values.get("occlusion", 0) >= TAMPER_REPORTED
    )
    pos = state.last_position
    return AssetSite(
        geofence=tuple((float(p[0]), float(p[1])) for p in json.loads(geofence_json)) if geofence_json else None,
        position=(pos[0], pos[1]) if pos else None,
        position_ts_ms=pos[2] if pos else None,
        offline=frozenset(state.offline),
        tampered=tampered,
    )


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
        with self._engine.begin() as conn:
            refused = store.insert_asset(
                conn,
                {
                    "id": spec.asset_id,
                    "kind": spec.kind.value,
                    "owner": spec.owner,
                    "name": spec.name,
                    "created_ts_ms": now,
                    "state_json": json.dumps(AssetState().to_json(), sort_keys=True, separators=(",", ":")),
                    "health_index": 100,
                    "measured_g": None,
                    "value_minor": 0,
                    "valued_ts_ms": now,
                    **values,
                },
            )
            if refused == "receipt":
                raise Conflict(
                    f"warehouse receipt {spec.receipt_no} is already registered: one receipt, one pledge",
                    code="receipt_already_registered",
                    field="receipt_no",
                )
            if refused is not None:
                raise Conflict(f"asset {spec.asset_id} already exists", code="asset_exists", field="asset_id")
            revalue(conn, [spec.asset_id], self._settings, now, "registered")
        return self.asset(spec.asset_id)

    def asset(self, asset_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        """One asset with its pledge; with ``viewer``, only if that organisation may see it (else the same
        404 as a missing asset)."""
        with self._engine.connect() as conn:
            found = store.asset(conn, asset_id, viewer)
        if found is None:
            raise asset_not_found(asset_id)
        return found

    def assets_page(self, *, viewer: str | None, size: int, cursor: str | None = None) -> Page:
        """Assets by id: the ``viewer``'s own and those pledged to its loans (every asset for None)."""
        after = decode_cursor(cursor, str) if cursor else None
        with self._engine.connect() as conn:
            rows = store.assets_page(conn, viewer, size + 1, after)
        return page_from(rows, size, lambda a: (a["asset_id"],))

    def asset_owner_and_lender(self, asset_id: str) -> tuple[str, str | None] | None:
        """(owner, lender of the loan it is pledged to) of an asset, or None if there is no such asset."""
        with self._engine.connect() as conn:
            return store.asset_owner_and_lender(conn, asset_id)

    def sites(self, asset_ids: Sequence[str]) -> dict[str, AssetSite]:
        """asset id -> its `AssetSite` (unknown ids are absent), in one read."""
        if not asset_ids:
            return {}
        with self._engine.connect().execution_options(read_only=True) as conn:
            rows = store.asset_sites(conn, asset_ids)
        return {asset_id: asset_site(geofence, state) for asset_id, (geofence, state) in rows.items()}

    def register_device(self, device_id: str, asset_id: str, kind: DeviceKind) -> str:
        """Bind a new device to an asset; return its secret (hex), shown once."""
        check_id(device_id, "device_id")
        secret = secrets.token_bytes(32)
        with self._engine.begin() as conn:
            asset_kind = store.asset_kind(conn, asset_id)
            if asset_kind is None:
                raise asset_not_found(asset_id)
            if kind not in ALLOWED_DEVICES[AssetKind(asset_kind)]:
                raise InvalidInput(
                    f"a {kind.value} cannot monitor a {asset_kind}", code="device_kind_not_allowed", field="kind"
                )
            if store.device_exists(conn, device_id):
                raise Conflict(f"device {device_id} already exists", code="device_exists", field="device_id")
            store.insert_device(
                conn,
                {
                    "id": device_id,
                    "asset_id": asset_id,
                    "kind": kind.value,
                    "secret_sealed": self._secrets.seal_device(device_id, 1, secret),
                    "secret_version": 1,
                    "status": "active",
                    "created_ts_ms": self._clock.now_ms(),
                    "last_rx_ms": None,
                },
            )
        return secret.hex()

    def rotate_secret(self, device_id: str) -> str:
        secret = secrets.token_bytes(32)
        with self._engine.begin() as conn:
            row = self._device(conn, device_id)
            version = row.secret_version + 1
            store.set_device_secret(conn, device_id, self._secrets.seal_device(device_id, version, secret), version)
        self._secrets.forget(device_id)
        return secret.hex()

    def retire_device(self, device_id: str) -> None:
        with self._engine.begin() as conn:
            self._device(conn, device_id)
            store.retire_device(conn, device_id)

    @staticmethod
    def _device(conn: Connection, device_id: str) -> store.DeviceRow:
        row = store.device_row(conn, device_id)
        if row is None:
            raise device_not_found(device_id)
        if row.status != "active":
            raise Conflict(f"device {device_id} is retired", code="device_retired", field="device_id")
        return row

    def devices(self, asset_id: str | None = None) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return store.devices(conn, asset_id)

    def device(self, device_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        """One device (never its secret); with ``viewer``, only if it may see the device's asset."""
        with self._engine.connect() as conn:
            found = store.device(conn, device_id, viewer)
        if found is None:
            raise device_not_found(device_id)
        return found

    def devices_page(
        self, *, viewer: str | None, size: int, cursor: str | None = None, asset_id: str | None = None
    ) -> Page:
        """Devices by id, of the assets ``viewer`` may see (all for None), optionally of one asset."""
        after = decode_cursor(cursor, str) if cursor else None
        with self._engine.connect() as conn:
            rows = store.devices_page(conn, viewer, size + 1, after, asset_id)
        return page_from(rows, size, lambda d: (d["device_id"],))

    # --- prices ------------------------------------------------------------------------------------

    def set_price(
        self, commodity: str, price_minor_per_kg: int, *, ts_ms: int | None = None, source: str = "manual"
    ) -> list[LoanEvent]:
        return self.set_prices([(commodity, price_minor_per_kg, ts_ms)], source=source)

    def set_prices(self, prices: Sequence[tuple[str, int, int | None]], *, source: str) -> list[LoanEvent]:
        now = self._clock.now_ms()
        rows: list[dict[str, Any]] = []
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
                existing = store.price_at(conn, row["commodity"], row["ts_ms"])
                if existing is not None:
                    if existing != row["price_minor_per_kg"]:
                        raise Conflict(
                            f"{row['commodity']} already has another price at {row['ts_ms']}",
                            code="price_conflict",
                            field="ts_ms",
                        )
                    continue
                store.insert_price(conn, row)
            ids = store.asset_ids_of_commodities(conn, {r["commodity"] for r in rows})
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
            return store.price_history(conn, commodity)

    # --- loans, pledges, repayments, releases --------------------------------------------------------

    def create_loan(
        self, loan_id: str, borrower: str, lender: str, outstanding_minor: int, bands_key: str = "default"
    ) -> None:
        check_id(loan_id, "loan_id")
        check_amount_minor(outstanding_minor, field="outstanding_minor")
        now = self._clock.now_ms()
        values = {
            "id": loan_id,
            "borrower": check_id(borrower, "borrower"),
            "lender": check_id(lender, "lender"),
            "outstanding_minor": outstanding_minor,
            "currency": "CNY",
            "bands_key": bands_key if bands_key in self._settings.ltv_bands_bps else "default",
            "value_minor": 0,
            "ltv_bps": None,
            "band": LtvBand.NORMAL.value,
            "created_ts_ms": now,
            "updated_ts_ms": now,
        }
        with self._engine.begin() as conn:
            if not store.insert_loan(conn, values):
                raise Conflict(f"loan {loan_id} already exists", code="loan_exists", field="loan_id")

    def pledge(self, asset_id: str, loan_id: str, haircut_bps: int) -> list[LoanEvent]:
        check_haircut(haircut_bps)
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loaded = lock_and_load(conn, [asset_id])
            if asset_id not in loaded.contexts:
                raise asset_not_found(asset_id)
            if not store.loan_exists(conn, loan_id):
                raise loan_not_found(loan_id)
            if store.pledged_to(conn, asset_id) is not None:
                raise Conflict(
                    f"asset {asset_id} is already pledged: one receipt, one pledge",
                    code="asset_already_pledged",
                    field="asset_id",
                )
            store.insert_pledge(conn, asset_id, loan_id, haircut_bps, now)
            events = revalue(conn, [asset_id], self._settings, now, "pledge")
            events += revalue_loans(conn, [loan_id], self._settings, now, "pledge")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def repay(self, loan_id: str, amount_minor: int) -> list[LoanEvent]:
        check_amount_minor(amount_minor)
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loan = store.lock_loan(conn, loan_id)
            if loan is None:
                raise loan_not_found(loan_id)
            if amount_minor > loan.outstanding_minor:
                raise InvalidInput(
                    "the repayment exceeds the outstanding amount",
                    code="repayment_exceeds_outstanding",
                    field="amount_minor",
                )
            store.set_outstanding(conn, loan_id, loan.outstanding_minor - amount_minor)
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
            store.set_expected_g(conn, asset_id, expected)
            store.insert_release(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "asset_id": asset_id,
                    "quantity_g": grams,
                    "approved_by": approved_by,
                    "ts_ms": now,
                },
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
            row = store.lock_alarm(conn, alarm_id)
            if row is None:
                raise alarm_not_found(alarm_id)
            if row["acknowledged"]:
                raise Conflict(
                    f"alarm {alarm_id} was acknowledged by {row['ack_by']}", code="alarm_already_acknowledged"
                )
            store.update_alarm(
                conn,
                alarm_id,
                {"acknowledged": True, "ack_by": check_id(user, "user"), "ack_ts_ms": now, "updated_ts_ms": now},
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
            row = store.lock_alarm(conn, alarm_id)
            if row is None:
                raise alarm_not_found(alarm_id)
            if row["status"] != "active":
                raise Conflict(f"alarm {alarm_id} is already cleared", code="alarm_already_cleared")
            details = {**row["details"], "cleared_by": who, "clear_note": note}
            values: dict[str, Any] = {
                "status": "cleared",
                "cleared_ts_ms": now,
                "updated_ts_ms": now,
                "details_json": json.dumps(details, sort_keys=True),
            }
            if not row["acknowledged"]:
                values.update(acknowledged=True, ack_by=who, ack_ts_ms=now)
            store.update_alarm(conn, alarm_id, values)
            owner_lender = store.asset_owner_and_lender(conn, row["asset_id"])
            event = {
                "alarm_id": alarm_id,
                "event": "alarm",
                "action": "clear",
                "asset_id": row["asset_id"],
                "alarm_type": row["alarm_type"],
                "severity": row["severity"],
                "ts_ms": now,
                "stored_ms": now,
                "details": details,
                "orgs": sorted({owner_lender[0], owner_lender[1] or ""} - {""}) if owner_lender else [],
            }
            note_out = queue_notification(
                conn, f"{row['asset_id']}:{row['alarm_type']}", event, now, self._settings, rate_limited=False
            )
        self._publish([note_out] if note_out is not None else [])
        return self.alarm(alarm_id)

    def alarm(self, alarm_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        with self._engine.connect() as conn:
            found = store.alarm(conn, alarm_id, viewer)
        if found is None:
            raise alarm_not_found(alarm_id)
        return found

    def alarms(
        self, *, asset_id: str | None = None, active_only: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return store.alarms(conn, asset_id, active_only, limit)

    def alarms_of_assets(self, asset_ids: Sequence[str], *, limit_per_asset: int) -> list[dict[str, Any]]:
        """The newest ``limit_per_asset`` alarms of each of these assets (as `alarms` gives them per asset),
        in one read."""
        if not asset_ids:
            return []
        with self._engine.connect() as conn:
            return store.alarms_of_assets(conn, asset_ids, limit_per_asset)

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
        after: tuple[int, str] | None = None
        if cursor:
            ts, alarm_id = decode_cursor(cursor, int, str)
            after = (int(ts), str(alarm_id))
        with self._engine.connect() as conn:
            rows = store.alarms_page(conn, viewer, size + 1, after, asset_id, active_only)
        return page_from(rows, size, lambda x: (x["raised_ts_ms"], x["alarm_id"]))

    def loan(self, loan_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        """One loan with its assets and band history; with ``viewer``, only for its borrower and lender."""
        with self._engine.connect() as conn:
            found = store.loan(conn, loan_id, viewer)
        if found is None:
            raise loan_not_found(loan_id)
        return found

    def lender_loans(self, lender: str) -> list[dict[str, Any]]:
        """The loans ``lender`` granted, by id, as `loan` shows them, each with its LTV ``bands`` (warning,
        margin-call and liquidation thresholds): one batched read for them all."""
        with self._engine.connect().execution_options(read_only=True) as conn:
            rows = store.loans_of_lender(conn, lender)
        loans = []
        for row in rows:
            bands = self._settings.bands(row.pop("bands_key"))
            row["bands"] = {
                "warning_bps": bands.warning_bps,
                "margin_call_bps": bands.margin_call_bps,
                "liquidation_bps": bands.liquidation_bps,
            }
            loans.append(row)
        return loans

    def loans_page(self, *, viewer: str | None, size: int, cursor: str | None = None) -> Page:
        """Loans by id: those ``viewer`` borrowed or granted (all for None)."""
        after = decode_cursor(cursor, str) if cursor else None
        with self._engine.connect() as conn:
            items = store.loans_page(conn, viewer, size + 1, after)
        return page_from(items, size, lambda x: (x["loan_id"],))

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return store.dead_letters(conn, limit)

    def financing_restriction(self, borrower: str) -> str | None:
        """`FinancingService.restriction_hook`: why new financing is stopped for ``borrower``, or None."""
        with self._engine.connect() as conn:
            row = store.first_stopping_loan(conn, borrower)
        if row is None:
            return None
        loan_id, band, ltv_bps = row
        ltv = "no collateral value" if ltv_bps is None else f"LTV {ltv_bps / 100:.2f} %"
        return f"margin call not cured on collateral loan {loan_id} ({band}, {ltv})"

    def add_webhook(self, org_id: str, url: str) -> tuple[str, str]:
        """Register a webhook; return (id, signing secret hex), the secret shown once."""
        if not url.startswith(("http://", "https://")) or len(url) > 500:
            raise InvalidInput("url must be an http(s) URL of at most 500 characters", code="invalid_url", field="url")
        webhook_id, secret = str(uuid.uuid4()), secrets.token_bytes(32)
        with self._engine.begin() as conn:
            store.insert_webhook(
                conn,
                webhook_id,
                check_id(org_id, "org_id"),
                url,
                self._secrets.seal_webhook(webhook_id, secret),
                self._clock.now_ms(),
            )
        return webhook_id, secret.hex()


def financing_blocked(conn: Connection, borrower: str) -> bool:
    """True while any of the borrower's collateral loans is in the margin-call or liquidation band."""
    return store.has_stopping_loan(conn, borrower)


def check_financing_allowed(conn: Connection, borrower: str) -> None:
    """For the financing service: refuse new financing for a borrower under an uncured margin call."""
    if financing_blocked(conn, borrower):
        raise Conflict(
            f"{borrower} has an uncured margin call on pledged collateral; new financing is stopped",
            code="margin_call_active",
            field="org_id",
        )
