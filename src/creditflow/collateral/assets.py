"""Assets and devices: registration, device secrets (rotation, retirement), the site of an asset as the
rules engine sees it, the messages the ingest refused. One command = one transaction; a `DomainError`
changes nothing. Also what the other collateral services share: id checks and `IotService`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from creditflow.collateral import store
from creditflow.collateral.engine import queue_notification
from creditflow.collateral.model import (
    ALLOWED_DEVICES,
    MAX_QUANTITY_G,
    AssetKind,
    DeviceKind,
    check_polygon,
    kg_to_g,
)
from creditflow.collateral.rules import AssetState
from creditflow.collateral.secrets import IotSecrets
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.valuation import LoanEvent, revalue
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger.custody import Custody
from creditflow.ledger.queries import Page, decode_cursor, page_from

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
EventSink = Any  # Callable[[list[dict[str, Any]]], None] | None


def asset_not_found(asset_id: str) -> NotFound:
    return NotFound(f"no asset {asset_id}", code="asset_not_found", field="asset_id")


def device_not_found(device_id: str) -> NotFound:
    return NotFound(f"no device {device_id}", code="device_not_found", field="device_id")


def check_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"{field} must be 1-64 letters, digits or . _ : -", code="invalid_id", field=field)
    return value


def positive_quantity_g(kg: float, field: str) -> int:
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


class IotService:
    """What every collateral service holds: the engine, settings, clock, secrets and the event sink."""

    def __init__(
        self,
        engine: Engine,
        settings: IotSettings,
        clock: Clock,
        secrets: IotSecrets,
        on_events: EventSink = None,
        custody: Custody | None = None,
    ):
        self._engine = engine
        self._custody = custody  # signs loan and pledge consents with the parties' held keys
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


class AssetService(IotService):
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
                expected_g=positive_quantity_g(spec.quantity_kg or 0, "quantity_kg"),
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
                expected_g=positive_quantity_g(spec.expected_yield_kg or 0, "expected_yield_kg"),
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

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return store.dead_letters(conn, limit)
