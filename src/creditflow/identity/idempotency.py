"""Idempotency keys of POST requests, keyed by (organisation, key): reserve, complete, release.

The HTTP side (the header, the request's digest, the problem responses, what to do with each status)
is `creditflow.http.idempotency`; this is the table behind it. Each call is its own unit of work:

* `reserve` inserts a row with status 0 (`IN_PROGRESS`) in its own transaction, so two concurrent
  requests with the same key never both execute: the loser of the insert reads the row. A row older
  than the retention no longer counts: it is deleted and the insert tried again.
* `complete` stores the response of the request that held the key; a response that carried a secret (an API
  key, a device secret: shown once) is never stored: only a note of how to get a new one, with
  ``secret_withheld`` set, so that a replay can say so instead of handing the secret out again;
* `release` deletes a reservation still in progress, so that the client may retry.

Blocking calls: run them in a worker thread.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from creditflow.identity import store
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Engine

IN_PROGRESS = 0
DAY_MS = 86_400_000


SECRET_NOT_REPLAYABLE = "idempotent_secret_not_replayable"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: str
    secret_withheld: bool = False  # ``body`` is `withheld_note`'s, not the response: the secret was shown once

    @property
    def how_to_get_a_new_one(self) -> str:
        try:
            return str(json.loads(self.body)["how_to_get_a_new_one"])
        except (ValueError, KeyError, TypeError):
            return "ask for a new one"


def withheld_note(how_to_get_a_new_one: str) -> str:
    """What is stored instead of a response that carried a secret."""
    return json.dumps({"withheld": "secret", "how_to_get_a_new_one": how_to_get_a_new_one})


class Refusal(enum.Enum):
    """Why `IdempotencyKeys.reserve` did not hand the key to this request."""

    REUSED = "idempotency_key_reused"  # the key was used for a different request
    IN_PROGRESS = "idempotency_in_progress"  # the key's first request has not completed


class IdempotencyKeys:
    """The ``idempotency_keys`` table."""

    def __init__(self, engine: Engine, clock: Clock, retention_days: int):
        self.engine = engine
        self.clock = clock
        self.retention_ms = retention_days * DAY_MS

    def _insert(self, org_id: str, key: str, digest: bytes, now: int) -> bool:
        with self.engine.begin() as conn:
            return store.insert_idempotency_key(
                conn, org_id=org_id, key=key, request_sha256=digest, status_code=IN_PROGRESS, created_ts_ms=now
            )

    def reserve(self, org_id: str, key: str, digest: bytes) -> StoredResponse | Refusal | None:
        """None: ``key`` is now reserved for this request (``digest`` identifies the request); a
        `StoredResponse`: the same request completed before, replay it; a `Refusal` otherwise."""
        for _ in range(3):
            now = self.clock.now_ms()
            if self._insert(org_id, key, digest, now):
                return None
            with self.engine.connect().execution_options(read_only=True) as conn:
                row = store.idempotency_key(conn, org_id, key)
            if row is None:  # released by a failed first request meanwhile: try again
                continue
            if row.created_ts_ms < now - self.retention_ms:  # expired: no longer binding
                with self.engine.begin() as conn:
                    store.delete_idempotency_key_created(conn, org_id, key, row.created_ts_ms)
                continue
            if row.request_sha256 != digest:
                return Refusal.REUSED
            if row.status_code == IN_PROGRESS:
                break
            return StoredResponse(row.status_code, row.response, row.secret_withheld)
        return Refusal.IN_PROGRESS

    def complete(self, org_id: str, key: str, status_code: int, body: str) -> None:
        with self.engine.begin() as conn:
            store.store_idempotent_response(conn, org_id, key, status_code, body)

    def complete_withheld(self, org_id: str, key: str, status_code: int, how_to_get_a_new_one: str) -> None:
        """The request that held the key returned a secret: store its status and a note, never the body."""
        with self.engine.begin() as conn:
            store.store_idempotent_response(
                conn, org_id, key, status_code, withheld_note(how_to_get_a_new_one), secret_withheld=True
            )

    def release(self, org_id: str, key: str) -> None:
        with self.engine.begin() as conn:
            store.delete_idempotency_key_with_status(conn, org_id, key, IN_PROGRESS)
