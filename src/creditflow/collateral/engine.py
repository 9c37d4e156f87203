"""Shared steps of every IoT command, inside the caller's one transaction: lock assets, load what the rules
need, write the rules' state back, apply alarm changes (the database arbitrates "one active alarm per
(asset, type)") and queue notifications in the outbox.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from creditflow.collateral.model import AssetKind, DeviceKind
from creditflow.collateral.rules import AlarmChange, AssetContext, AssetState
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.tables import (
    iot_alarms,
    iot_assets,
    iot_devices,
    iot_loans,
    iot_notifications,
    iot_pledges,
)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    asset_id: str
    kind: DeviceKind
    sealed_secret: bytes | None  # None only before the start-up sealing of an old database
    secret_version: int
    active: bool
    created_ts_ms: int


@dataclass(slots=True)
class Loaded:
    """Assets locked for this transaction, with their rule context and state."""

    contexts: dict[str, AssetContext] = field(default_factory=dict)
    states: dict[str, AssetState] = field(default_factory=dict)
    original: dict[str, str] = field(default_factory=dict)  # state JSON as loaded
    inputs: dict[str, tuple[int | None, int]] = field(default_factory=dict)  # (measured_g, health) as loaded
    owners: dict[str, str] = field(default_factory=dict)
    lenders: dict[str, str] = field(default_factory=dict)


_d = iot_devices.c
_ASSETS_WITH_LENDER = iot_assets.outerjoin(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id).outerjoin(
    iot_loans, iot_loans.c.id == iot_pledges.c.loan_id
)
# The ingest's per-batch statement, built once (building a statement costs about as much as running it):
# the assets of the batch's devices, locked in id order, with every device bound to them (secrets sealed).
_LOCK_FOR_INGEST = (
    select(
        iot_assets,
        iot_loans.c.lender,
        _d.id.label("d_id"),
        _d.kind.label("d_kind"),
        _d.secret_sealed.label("d_sealed"),
        _d.secret_version.label("d_version"),
        _d.status.label("d_status"),
        _d.created_ts_ms.label("d_created"),
    )
    .select_from(_ASSETS_WITH_LENDER.join(iot_devices, _d.asset_id == iot_assets.c.id))
    .where(iot_assets.c.id.in_(select(_d.asset_id).where(_d.id.in_(bindparam("ids", expanding=True)))))
    .order_by(iot_assets.c.id, _d.id)
    .with_for_update(of=iot_assets)
)
_LOCK_ASSETS = (
    select(iot_assets, iot_loans.c.lender)
    .select_from(_ASSETS_WITH_LENDER)
    .where(iot_assets.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(iot_assets.c.id)
    .with_for_update(of=iot_assets)
)
_ACTIVE_DEVICES_OF = select(_d.id, _d.asset_id, _d.kind, _d.created_ts_ms).where(
    _d.asset_id.in_(bindparam("ids", expanding=True)), _d.status == "active"
)
_SAVE_STATE = (
    iot_assets.update()
    .where(iot_assets.c.id == bindparam("a_id"))
    .values(state_json=bindparam("s"), measured_g=bindparam("m"), health_index=bindparam("h"))
)


def lock_for_ingest(conn: Connection, device_ids: Iterable[str]) -> tuple[dict[str, DeviceInfo], Loaded]:
    """For an ingest batch, in one query: the named devices and every other device of their assets, and those
    assets locked (id order) with their rule context and state. Unknown device ids are simply absent."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}, Loaded()
    rows = conn.execute(_LOCK_FOR_INGEST, {"ids": ids}).all()
    devices: dict[str, DeviceInfo] = {}
    assets: dict[str, Any] = {}
    bound: dict[str, dict[str, tuple[DeviceKind, int]]] = {}
    for r in rows:
        info = DeviceInfo(
            r.d_id,
            r.id,
            DeviceKind(r.d_kind),
            bytes(r.d_sealed) if r.d_sealed is not None else None,
            int(r.d_version),
            r.d_status == "active",
            int(r.d_created),
        )
        devices[info.device_id] = info
        assets.setdefault(r.id, r)
        kinds = bound.setdefault(r.id, {})
        if info.active:
            kinds[info.device_id] = (info.kind, info.created_ts_ms)
    return devices, _loaded(assets.values(), bound)


def lock_and_load(conn: Connection, asset_ids: Iterable[str]) -> Loaded:
    """Lock the asset rows (sorted: one global order, no deadlocks) and load their rule context and state."""
    ids = sorted(set(asset_ids))
    if not ids:
        return Loaded()
    rows = conn.execute(_LOCK_ASSETS, {"ids": ids}).all()
    bound: dict[str, dict[str, tuple[DeviceKind, int]]] = {r.id: {} for r in rows}
    for d in conn.execute(_ACTIVE_DEVICES_OF, {"ids": ids}):
        bound[d.asset_id][d.id] = (DeviceKind(d.kind), int(d.created_ts_ms))
    return _loaded(rows, bound)


def _loaded(rows: Iterable[Any], bound: Mapping[str, Mapping[str, tuple[DeviceKind, int]]]) -> Loaded:
    """`Loaded` from locked asset rows (with ``lender``) and each asset's active devices."""
    out = Loaded()
    for row in rows:
        geofence = tuple((float(p[0]), float(p[1])) for p in json.loads(row.geofence_json)) if row.geofence_json else ()
        out.contexts[row.id] = AssetContext(
            asset_id=row.id,
            kind=AssetKind(row.kind),
            devices=dict(sorted(bound.get(row.id, {}).items())),
            expected_g=int(row.expected_g),
            geofence=geofence,
            crop=row.crop or "",
        )
        state = AssetState.from_json(json.loads(row.state_json))
        out.states[row.id] = state
        out.original[row.id] = row.state_json
        out.inputs[row.id] = (state.measured_g, state.health_index)
        out.owners[row.id] = row.owner
        if row.lender is not None:
            out.lenders[row.id] = row.lender
    return out


def save_states(conn: Connection, loaded: Loaded) -> set[str]:
    """Write back the states that changed (one executemany); return the assets whose value inputs
    (quantity, health) moved."""
    moved: set[str] = set()
    rows: list[dict[str, Any]] = []
    for asset_id, state in sorted(loaded.states.items()):
        text = json.dumps(state.to_json(), sort_keys=True, separators=(",", ":"))
        if text == loaded.original[asset_id]:
            continue
        inputs = (state.measured_g, state.health_index)
        if loaded.inputs[asset_id] != inputs:
            moved.add(asset_id)
        rows.append({"a_id": asset_id, "s": text, "m": state.measured_g, "h": state.health_index})
        loaded.original[asset_id] = text
        loaded.inputs[asset_id] = inputs
    if rows:
        conn.execute(_SAVE_STATE, rows)
    return moved


def _insert_ignore(conn: Connection, table: Any, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row went in."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return conn.execute(stmt).first() is not None  # rowcount is -1 on psycopg here: ask for the row instead


def apply_alarm_changes(
    conn: Connection,
    asset_id: str,
    changes: Sequence[AlarmChange],
    now_ms: int,
    loaded: Loaded,
    settings: IotSettings,
    counters: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Write the changes; return the notifications queued. A raise that finds an active alarm of the same
    type (another worker raised it first) changes nothing and notifies nobody."""
    notes: list[dict[str, Any]] = []
    for change in changes:
        event: dict[str, Any] | None = None
        if change.action == "raise":
            alarm_id = str(uuid.uuid4())
            inserted = _insert_ignore(
                conn,
                iot_alarms,
                {
                    "id": alarm_id,
                    "asset_id": asset_id,
                    "alarm_type": change.alarm_type,
                    "severity": change.severity.value,
                    "status": "active",
                    "acknowledged": False,
                    "raised_ts_ms": change.ts_ms,
                    "stored_ms": now_ms,
                    "updated_ts_ms": now_ms,
                    "details_json": json.dumps(change.details, sort_keys=True),
                },
            )
            if inserted:
                event = {"alarm_id": alarm_id}
        else:
            row = conn.execute(
                select(iot_alarms.c.id, iot_alarms.c.details_json).where(
                    iot_alarms.c.asset_id == asset_id,
                    iot_alarms.c.alarm_type == change.alarm_type,
                    iot_alarms.c.status == "active",
                )
            ).first()
            if row is None:
                continue
            values: dict[str, Any] = {"updated_ts_ms": now_ms}
            if change.action == "clear":
                values.update(status="cleared", cleared_ts_ms=change.ts_ms)
            else:
                details = {**json.loads(row.details_json), **change.details}
                if details == json.loads(row.details_json):
                    continue
                values["details_json"] = json.dumps(details, sort_keys=True)
            conn.execute(iot_alarms.update().where(iot_alarms.c.id == row.id).values(**values))
            event = {"alarm_id": row.id}
        if event is None:  # another worker raised it first: the database said no, nothing to tell
            continue
        if counters is not None:
            counters[change.action] = counters.get(change.action, 0) + 1
        event.update(
            event="alarm",
            action=change.action,
            asset_id=asset_id,
            alarm_type=change.alarm_type,
            severity=change.severity.value,
            ts_ms=change.ts_ms,
            stored_ms=now_ms,
            details=change.details,
            orgs=sorted({loaded.owners.get(asset_id, ""), loaded.lenders.get(asset_id, "")} - {""}),
        )
        note = queue_notification(
            conn, f"{asset_id}:{change.alarm_type}", event, now_ms, settings, rate_limited=change.action != "clear"
        )
        if note is not None:
            notes.append(note)
    return notes


def queue_notification(
    conn: Connection, rate_key: str, event: dict[str, Any], now_ms: int, settings: IotSettings, *, rate_limited: bool
) -> dict[str, Any] | None:
    """Put an event in the outbox, unless an event with the same key went out within the rate limit."""
    if rate_limited and settings.notify_min_interval_ms > 0:
        recent = conn.execute(
            select(iot_notifications.c.id)
            .where(
                iot_notifications.c.rate_key == rate_key,
                iot_notifications.c.created_ts_ms > now_ms - settings.notify_min_interval_ms,
            )
            .limit(1)
        ).first()
        if recent is not None:
            return None
    result = conn.execute(
        iot_notifications.insert().values(
            rate_key=rate_key,
            created_ts_ms=now_ms,
            payload_json=json.dumps(event, sort_keys=True),
            delivered=False,
            attempts=0,
        )
    )
    key = result.inserted_primary_key
    event = {**event, "notification_id": int(key[0]) if key else None}
    return event
