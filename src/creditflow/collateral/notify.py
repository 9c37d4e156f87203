"""Getting alarm and loan events out: a live fan-out for server-sent-events dashboards and HMAC-signed
webhooks fed from the outbox (``iot_notifications``, written in the same transaction as the alarm).

`Broadcaster`: each subscriber has a bounded queue (``sse_queue_max``); a subscriber that falls that far
behind is disconnected with a final ``overflow`` event rather than silently losing events, and reconnects.

`WebhookDispatcher.deliver_pending`: posts each undelivered notification to the active webhooks of the
organisations it concerns, with ``X-Creditflow-Signature: t=<ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.
A notification is marked delivered when every target answered 2xx; otherwise it is retried on the next
pass, up to ``webhook_attempts_max`` attempts. Delivery is at least once: receivers deduplicate by
``notification_id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

import httpx

from creditflow.collateral import store
from creditflow.collateral.secrets import IotSecrets
from creditflow.collateral.settings import IotSettings
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Engine
from creditflow.kernel.errors import LimitExceeded

log = logging.getLogger(__name__)

OVERFLOW = {"event": "overflow", "detail": "this stream fell behind and was closed; reconnect"}


class Subscription:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int, orgs: frozenset[str] | None):
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize + 1)
        self.maxsize = maxsize
        self.orgs = orgs  # None: sees everything (operator, auditor)
        self.closed = False

    def _offer(self, event: dict[str, Any]) -> None:  # on the subscriber's loop
        if self.closed:
            return
        if self.queue.qsize() >= self.maxsize:
            self.closed = True
            self.queue.put_nowait(OVERFLOW)
            return
        self.queue.put_nowait(event)


class Broadcaster:
    def __init__(self, settings: IotSettings):
        self._settings = settings
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.published = 0

    def subscribe(self, orgs: Iterable[str] | None = None) -> Subscription:
        with self._lock:
            if len(self._subs) >= self._settings.sse_subscribers_max:
                raise LimitExceeded("too many live streams; retry later", code="too_many_streams")
            sub = Subscription(
                asyncio.get_running_loop(), self._settings.sse_queue_max, frozenset(orgs) if orgs is not None else None
            )
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Thread-safe: called by the ingest writer after its commit."""
        with self._lock:
            subs = list(self._subs)
            self.published += len(events)
        for sub in subs:
            for event in events:
                if sub.orgs is None or sub.orgs & set(event.get("orgs", ())):
                    try:
                        sub.loop.call_soon_threadsafe(sub._offer, event)
                    except RuntimeError:  # the loop is gone
                        self.unsubscribe(sub)
                        break


def sign_webhook(secret: bytes, ts_ms: int, body: bytes) -> str:
    mac = hmac.new(secret, str(ts_ms).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={ts_ms},v1={mac}"


class WebhookDispatcher:
    def __init__(
        self,
        engine: Engine,
        settings: IotSettings,
        clock: Clock,
        secrets: IotSecrets,
        transport: httpx.BaseTransport | None = None,
    ):
        self._engine = engine
        self._secrets = secrets
        self._settings = settings
        self._clock = clock
        self._client = httpx.Client(timeout=settings.webhook_timeout_s, transport=transport)
        self.delivered = 0
        self.failed = 0

    def close(self) -> None:
        self._client.close()

    def deliver_pending(self) -> int:
        """One pass over the outbox; returns the notifications completed. Reads, posts with no transaction
        open (a slow receiver never holds a database lock), then records the results in one short write."""
        with self._engine.connect().execution_options(read_only=True) as conn, conn.begin():
            rows = store.pending_notifications(conn, self._settings.webhook_batch_max)
            hooks = store.active_webhooks(conn) if rows else []
        results: list[tuple[int, bool, int]] = []
        for row in rows:
            event = json.loads(row.payload_json)
            orgs = set(event.get("orgs", ()))
            body = json.dumps({**event, "notification_id": row.id}, sort_keys=True).encode()
            ok = True
            for hook in (h for h in hooks if h.org_id in orgs):
                ts = self._clock.now_ms()
                try:
                    response = self._client.post(
                        hook.url,
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Creditflow-Signature": sign_webhook(
                                self._secrets.webhook_secret(hook.id, hook.secret_sealed), ts, body
                            ),
                        },
                    )
                    ok = ok and 200 <= response.status_code < 300
                except httpx.HTTPError as exc:
                    log.warning("webhook %s failed: %s", hook.url, exc)
                    ok = False
            results.append((row.id, ok, row.attempts + 1))
        done = 0
        if results:
            recorded: list[tuple[int, bool, int]] = []
            for notification_id, ok, attempts in results:
                finished = ok or attempts >= self._settings.webhook_attempts_max
                recorded.append((notification_id, finished, attempts))
                self.delivered += ok
                self.failed += finished and not ok
                done += finished
            with self._engine.begin() as conn:
                store.record_deliveries(conn, recorded)
        return done
