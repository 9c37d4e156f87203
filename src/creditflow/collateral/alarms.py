"""Alarms: acknowledgement, clearing by hand, the alarm queries, and the webhooks alarm (and loan) events are
delivered to. One command = one transaction; a `DomainError` changes nothing.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from creditflow.collateral import store
from creditflow.collateral.assets import IotService, check_id
from creditflow.collateral.engine import queue_notification
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound
from creditflow.ledger.queries import Page, decode_cursor, page_from


def alarm_not_found(alarm_id: str) -> NotFound:
    return NotFound(f"no alarm {alarm_id}", code="alarm_not_found", field="alarm_id")


class AlarmService(IotService):
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
