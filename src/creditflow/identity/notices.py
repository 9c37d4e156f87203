"""Notifications to an organisation's admins: reading them (contexts write them with
`creditflow.identity.reads.notify_admins`, inside the transaction of what they report)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from creditflow.identity import store
from creditflow.kernel.engine import Engine
from creditflow.ledger.queries import Page, decode_cursor, page_from


@dataclass(frozen=True, slots=True)
class Notice:
    notification_id: str
    org_id: str
    kind: str
    message: str
    data: dict[str, Any]
    created_ts_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "org_id": self.org_id,
            "kind": self.kind,
            "message": self.message,
            "data": self.data,
            "created_ts_ms": self.created_ts_ms,
        }


class Notices:
    def __init__(self, engine: Engine):
        self.engine = engine

    def of(self, org_id: str, *, limit: int = 50, cursor: str | None = None) -> Page:
        """A page of ``org_id``'s notifications (`Notice`), newest first."""
        before = None
        if cursor:
            ts, notification_id = decode_cursor(cursor, int, str)
            before = (int(ts), str(notification_id))
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.notifications_of(conn, org_id, limit=limit + 1, before=before)
        notices = [
            Notice(r.notification_id, r.org_id, r.kind, r.message, json.loads(r.data_json), r.created_ts_ms)
            for r in rows
        ]
        return page_from(notices, limit, lambda n: (n.created_ts_ms, n.notification_id))
