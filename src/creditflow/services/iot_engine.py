"""Shared steps of every IoT command, inside the caller's one transaction: lock assets, load what the rules
need, write the rules' state back, apply alarm changes (the database arbitrates "one active alarm per
(asset, type)") and queue notifications in the outbox.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from creditflow.adapters.sql.iot_tables import (
    iot_alarms,
    iot_assets,
    iot_devices,
    iot_loans,
    iot_notifications,
    iot_pledges,
)
from creditflow.domain.collateral import AssetKind, DeviceKind
from creditflow.domain.iot_rules import AlarmChange, AssetContext, AssetState
from creditflow.services.iot_settings import IotSettings


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    asset_id: str
    kind: DeviceKind
    secret: bytes
    active: bool


@dataclass(slots=True)
class Loaded:
    """Assets locked for this transaction, with their rule context and state."""

    contexts: dict[str, AssetContext] = field(default_factory=dict)
    states: dict[str, AssetState] = field(default_factory=dict)
    original: dict[str, str] = field(default_factory=dict)  # state JSON as loaded
    owners: dict[str, str] = field(default_factory=dict)
    lenders: dict[str, str] = field(default_factory=dict)


def load_devices(conn: Connection, device_ids: Iterable[str]) -> dict[str, DeviceInfo]:
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(
            iot_devices.c.id, iot_devices.c.asset_id, iot_devices.c.kind, iot_devices.c.secret, iot_devices.c.status
        ).where(iot_devices.c.id.in_(ids))
    )
    return {r.id: DeviceInfo(r.id, r.asset_id, DeviceKind(r.kind), bytes(r.secret), r.status == "active") for r in rows}


def lock_and_load(conn: Connection, asset_ids: Iterable[str]) -> Loaded:
    """Lock the asset rows (sorted: one global order, no deadlocks) and load their rule context and state."""
    ids = sorted(set(asset_ids))
    out = Loaded()
    if not ids:
        return out
    rows = conn.execute(
        select(iot_assets).where(iot_assets.c.id.in_(ids)).order_by(iot_assets.c.id).with_for_update()
    ).all()
    devices: dict[str, dict[str, tuple[DeviceKind, int]]] = {r.id: {} for r in rows}
    for d in conn.execute(
        select(iot_devices.c.id, iot_devices.c.asset_id, iot_devices.c.kind, iot_devices.c.created_ts_ms).where(
            iot_devices.c.asset_id.in_(ids), iot_devices.c.status == "active"
        )
    ):
        devices[d.asset_id][d.id] = (DeviceKind(d.kind), int(d.created_ts_ms))
    for row in rows:
        geofence = tuple((float(p[0]), float(p[1])) for p in json.loads(row.geofence_json)) if row.geofence_json else ()
        out.contexts[row.id] = AssetContext(
            asset_id=row.id,
            kind=AssetKind(row.kind),
            devices=devices[row.id],
            expected_g=int(row.expected_g),
            geofence=geofence,
            crop=row.crop or "",
        )
        out.states[row.id] = AssetState.from_json(json.loads(row.state_json))
        out.original[row.id] = row.state_json
        out.owners[row.id] = row.owner
    for p in conn.execute(
        select(iot_pledges.c.asset_id, iot_loans.c.lender)
        .select_from(iot_pledges.join(iot_loans, iot_loans.c.id == iot_pledges.c.loan_id))
        .where(iot_pledges.c.asset_id.in_(ids))
    ):
        out.lenders[p.asset_id] = p.lender
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
        before = AssetState.from_json(json.loads(loaded.original[asset_id]))
        if before.measured_g != state.measured_g or before.health_index != state.health_index:
            moved.add(asset_id)
        rows.append({"a_id": asset_id, "s": text, "m": state.measured_g, "h": state.health_index})
        loaded.original[asset_id] = text
    if rows:
        conn.execute(
            iot_assets.update()
            .where(iot_assets.c.id == bindparam("a_id"))
            .values(state_json=bindparam("s"), measured_g=bindparam("m"), health_index=bindparam("h")),
            rows,
        )
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
