"""Notifications to an organisation's admins: reading them (contexts write them with
`creditflow.identity.reads.notify_admins`, inside the transaction of what they report)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from creditflow.identity import store
from creditflow.kernel.engine import Engine


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

    def of(self, org_id: str, *, limit: int = 50, before_ts_ms: int | None = None) -> list[Notice]:
        """``org_id``'s notifications, newest first."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.notifications_of(conn, org_id, limit=max(1, min(limit, 500)), before_ts_ms=before_ts_ms)
        return [
            Notice(r.notification_id, r.org_id, r.kind, r.message, json.loads(r.data_json), r.created_ts_ms)
            for r in rows
        ]
