"""Shared steps of every IoT command, inside the caller's one transaction: lock assets, load what the rules
need, write the rules' state back, apply alarm changes (the database arbitrates "one active alarm per
(asset, type)") and queue notifications in the outbox.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from creditflow.collateral import store
from creditflow.collateral.rules import AlarmChange
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.store import DeviceInfo, Loaded, lock_and_load, lock_for_ingest
from creditflow.kernel.engine import Connection

__all__ = [
    "DeviceInfo",
    "Loaded",
    "apply_alarm_changes",
    "lock_and_load",
    "lock_for_ingest",
    "queue_notification",
    "save_states",
]


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
    store.save_states(conn, rows)
    return moved


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
            inserted = store.raise_alarm(
                conn,
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
            active = store.active_alarm(conn, asset_id, change.alarm_type)
            if active is None:
                continue
            active_id, details_json = active
            values: dict[str, Any] = {"updated_ts_ms": now_ms}
            if change.action == "clear":
                values.update(status="cleared", cleared_ts_ms=change.ts_ms)
            else:
                details = {**json.loads(details_json), **change.details}
                if details == json.loads(details_json):
                    continue
                values["details_json"] = json.dumps(details, sort_keys=True)
            store.update_alarm(conn, active_id, values)
            event = {"alarm_id": active_id}
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
    since = now_ms - settings.notify_min_interval_ms
    if rate_limited and settings.notify_min_interval_ms > 0 and store.notified_since(conn, rate_key, since):
        return None
    notification_id = store.insert_notification(conn, rate_key, now_ms, json.dumps(event, sort_keys=True))
    return {**event, "notification_id": notification_id}
