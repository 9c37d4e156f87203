"""The telemetry ingest pipeline: one path for MQTT and HTTP.

Producers (the MQTT adapter's network thread, HTTP endpoints) hand raw messages to `IngestPipeline.submit`,
which puts them on a bounded queue (``queue_max``). A full queue blocks the producer for up to
``enqueue_timeout_s`` (back-pressure: the MQTT client stops reading, the broker holds the messages) and then
fails loudly with ``ingest_busy``; nothing is dropped silently.

One writer thread takes up to ``batch_max`` messages and, in ONE transaction: parses and authenticates each
(rejects go to ``iot_dead_letters`` with the reason, and are counted), locks the assets involved, folds the
readings through the rules engine, stores readings, devices' receive times, the rules' state, alarm changes,
new asset values and loan bands, and the notifications outbox. Only after the commit are the submitters told
(alarm events first, then ``on_done`` per message, then ``after_batch`` once: the MQTT adapter sends the
batch's PUBACKs together): an acknowledged message is durable; a crash before the commit means the broker
redelivers, and the redelivery is recognised by (device, seq) as a ``duplicate``.

The writer takes what is queued at once; when that is less than a full batch it first waits
``batch_linger_ms`` for more (a transaction costs about as much as a few dozen messages, so a stream of tiny
batches spends the CPU the network threads need). The statements a batch runs are built once (here and in
`creditflow.collateral.engine`): the devices and locked assets in one query, the (device, seq) look-up as a
join of the keys (a JSON array on SQLite, two arrays on PostgreSQL) against the primary key, the writes as
executemany.

If a batch fails as a whole (a database error), each of its messages is retried alone, so one poison
message cannot hold up the others; a message that still fails is dead-lettered as ``internal``.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from creditflow.collateral import store
from creditflow.collateral.engine import (
    apply_alarm_changes,
    lock_and_load,
    lock_for_ingest,
    queue_notification,
    save_states,
)
from creditflow.collateral.model import (
    Rejected,
    RejectReason,
    Telemetry,
    check_ranges,
    parse_message,
    verify_signature,
)
from creditflow.collateral.rules import OFFLINE, Reading, apply_reading, is_late, tick
from creditflow.collateral.secrets import IotSecrets
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.store import stored_signatures
from creditflow.collateral.valuation import revalue
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Unavailable

log = logging.getLogger(__name__)

EventSink = Callable[[list[dict[str, Any]]], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: bool
    device_id: str | None
    seq: int | None
    reason: str | None = None
    detail: str | None = None
    late: bool = False
    skewed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "device_id": self.device_id,
            "seq": self.seq,
            "reason": self.reason,
            "detail": self.detail,
            "late": self.late,
            "skewed": self.skewed,
        }


@dataclass(slots=True)
class _Item:
    raw: bytes
    topic_device_id: str | None
    source: str
    received_ms: int
    future: Future[Outcome] | None
    on_done: Callable[[Outcome], None] | None
    after_batch: Callable[[], None] | None


@dataclass
class IngestMetrics:
    received: int = 0
    accepted: int = 0
    late: int = 0
    skewed: int = 0
    batches: int = 0
    batch_failures: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    alarms: dict[str, int] = field(default_factory=dict)
    loan_events: int = 0
    last_lag_ms: int = 0
    last_batch_size: int = 0
    _window: deque[tuple[float, int]] = field(default_factory=deque)

    def throughput_per_s(self, now: float, span_s: float = 10.0) -> float:
        while self._window and self._window[0][0] < now - span_s:
            self._window.popleft()
        return sum(n for _, n in self._window) / span_s


def settle_heap() -> None:
    """Take every object alive now (the application's start-up: metadata, schemas, settings, compiled
    statements) out of the cyclic garbage collector's reach (`gc.freeze`). For an ingest worker to call once,
    when it is set up: a full collection then scans only what was made since. Measured with the benchmark:
    full collections of 60-160 ms in the ingest's threads (every thread waits, so every message in flight is
    late) before; none of them after."""
    gc.collect()
    gc.freeze()


class IngestPipeline:
    def __init__(
        self,
        engine: Engine,
        settings: IotSettings,
        clock: Clock,
        secrets: IotSecrets,
        *,
        on_events: EventSink | None = None,
        sweep_offline: bool = True,
    ):
        self._engine = engine
        self._secrets = secrets
        self._settings = settings
        self._params = settings.rule_params()
        self._clock = clock
        self._on_events = on_events
        self._sweep_offline = sweep_offline
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=settings.queue_max)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._busy = threading.Event()
        self._last_tick_ms = 0
        self._linger_s = settings.batch_linger_ms / 1000
        self.metrics = IngestMetrics()

    # --- producers ---------------------------------------------------------------------------------

    def submit(
        self,
        raw: bytes,
        *,
        topic_device_id: str | None = None,
        source: str = "mqtt",
        received_ms: int | None = None,
        on_done: Callable[[Outcome], None] | None = None,
        after_batch: Callable[[], None] | None = None,
        block: bool = True,
    ) -> Future[Outcome]:
        """Queue one raw message. After the transaction that settled it commits: ``on_done(outcome)``, then
        ``after_batch()`` once per distinct callable in that batch, then the returned future's result."""
        future: Future[Outcome] = Future()
        self._enqueue(raw, topic_device_id, source, received_ms, future, on_done, after_batch, block)
        return future

    def offer(
        self,
        raw: bytes,
        *,
        topic_device_id: str | None = None,
        source: str = "mqtt",
        received_ms: int | None = None,
        on_done: Callable[[Outcome], None] | None = None,
        after_batch: Callable[[], None] | None = None,
        block: bool = True,
    ) -> None:
        """`submit` for producers that learn the outcome from the callbacks only (the MQTT adapter: its PUBACKs
        go out in ``after_batch``): no future, so a queued message is two small objects for the collector to
        scan, not eight."""
        self._enqueue(raw, topic_device_id, source, received_ms, None, on_done, after_batch, block)

    def _enqueue(
        self,
        raw: bytes,
        topic_device_id: str | None,
        source: str,
        received_ms: int | None,
        future: Future[Outcome] | None,
        on_done: Callable[[Outcome], None] | None,
        after_batch: Callable[[], None] | None,
        block: bool,
    ) -> None:
        if self._closed:
            raise Unavailable("the ingest pipeline is closed", code="ingest_closed")
        self._ensure_thread()
        item = _Item(raw, topic_device_id, source, received_ms or self._clock.now_ms(), future, on_done, after_batch)
        try:
            self._queue.put(item, block=block, timeout=self._settings.enqueue_timeout_s if block else None)
        except queue.Full as exc:
            raise Unavailable("telemetry ingest is overloaded; retry later", code="ingest_busy") from exc
        with self._lock:
            self.metrics.received += 1

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every message submitted so far is committed (tests, the simulator, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.qsize() or self._busy.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError("the ingest queue did not drain")
            time.sleep(0.002)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="creditflow-iot-ingest", daemon=True)
                self._thread.start()

    def start(self) -> None:
        self._ensure_thread()

    # --- the writer --------------------------------------------------------------------------------

    def _run(self) -> None:
        interval_s = self._settings.tick_interval_ms / 1000
        while True:
            try:
                first = self._queue.get(timeout=interval_s)
            except queue.Empty:
                first = None
                if self._closed:
                    return
                self._maybe_tick()
                continue
            if first is None:
                return
            self._busy.set()
            batch = [first]
            stop = False
            if self._linger_s and self._queue.qsize() + 1 < self._settings.batch_max:
                time.sleep(self._linger_s)  # let a few more arrive: per-transaction costs are shared by more
            while len(batch) < self._settings.batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._process(batch)
                self._maybe_tick()
            finally:
                self._busy.clear()
            if stop:
                return

    def _maybe_tick(self) -> None:
        now = self._clock.now_ms()
        if self._sweep_offline and now - self._last_tick_ms >= self._settings.tick_interval_ms:
            self._last_tick_ms = now
            try:
                self.sweep(now)
            except Exception:
                log.exception("offline sweep failed")

    def _process(self, batch: list[_Item]) -> None:
        try:
            outcomes, events = self._commit(batch)
        except Exception:
            log.exception("ingest batch of %d failed; retrying one by one", len(batch))
            with self._lock:
                self.metrics.batch_failures += 1
            if len(batch) == 1:
                outcomes, events = [self._dead_letter_alone(batch[0])], []
            else:
                for item in batch:
                    self._process([item])
                return
        self._publish(events)
        after: dict[Callable[[], None], None] = {}  # bound methods of one object compare equal: once each
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.on_done is not None:
                try:
                    item.on_done(outcome)
                except Exception:
                    log.exception("ingest completion callback failed")
            if item.after_batch is not None:
                after[item.after_batch] = None
        for callback in after:
            try:
                callback()
            except Exception:
                log.exception("ingest batch callback failed")
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future is not None:
                item.future.set_result(outcome)

    def _dead_letter_alone(self, item: _Item) -> Outcome:
        outcome = Outcome(False, item.topic_device_id, None, "internal", "the message could not be stored")
        try:
            with self._engine.begin() as conn:
                self._write_rejects(conn, [(item, "internal", outcome.detail or "")])
        except Exception:
            log.exception("could not dead-letter a message")
        with self._lock:
            self.metrics.rejected["internal"] = self.metrics.rejected.get("internal", 0) + 1
        return outcome

    def _publish(self, events: list[dict[str, Any]]) -> None:
        if events and self._on_events is not None:
            try:
                self._on_events(events)
            except Exception:
                log.exception("event sink failed")

    def _write_rejects(self, conn: Connection, rejects: list[tuple[_Item, str, str]]) -> None:
        if not rejects:
            return
        cap = self._settings.dead_letter_payload_max_bytes
        store.insert_dead_letters(
            conn,
            [
                {
                    "received_ms": item.received_ms,
                    "source": item.source,
                    "device_id": (item.topic_device_id or "")[:64] or None,
                    "reason": reason,
                    "detail": detail[:300],
                    "payload": item.raw[:cap],
                }
                for item, reason, detail in rejects
            ],
        )

    def _commit(self, batch: list[_Item]) -> tuple[list[Outcome], list[dict[str, Any]]]:
        settings = self._settings
        outcomes: list[Outcome | None] = [None] * len(batch)
        rejects: list[tuple[_Item, str, str]] = []
        parsed: list[tuple[int, Telemetry]] = []

        def reject(i: int, reason: str, detail: str, message: Telemetry | None = None) -> None:
            item = batch[i]
            outcomes[i] = Outcome(
                False,
                message.device_id if message else item.topic_device_id,
                message.seq if message else None,
                reason,
                detail,
            )
            rejects.append((item, reason, detail))

        for i, item in enumerate(batch):
            try:
                if len(item.raw) > settings.message_max_bytes:
                    raise Rejected(RejectReason.TOO_LARGE, f"message over {settings.message_max_bytes} bytes")
                parsed.append((i, parse_message(item.raw, item.topic_device_id, settings.values_max)))
            except Rejected as exc:
                reject(i, exc.reason.value, exc.detail)

        events: list[dict[str, Any]] = []
        counters: dict[str, int] = {}
        accepted = late_n = skewed_n = loan_n = 0
        with self._engine.begin() as conn:
            now = self._clock.now_ms()
            devices, loaded = lock_for_ingest(conn, (m.device_id for _, m in parsed))
            valid: list[tuple[int, Telemetry]] = []
            for i, message in parsed:
                device = devices.get(message.device_id)
                try:
                    if device is None or not device.active or device.sealed_secret is None:
                        raise Rejected(RejectReason.UNKNOWN_DEVICE, f"no active device {message.device_id!r}")
                    secret = self._secrets.device_secret(device.device_id, device.secret_version, device.sealed_secret)
                    if secret is None:
                        raise Rejected(
                            RejectReason.UNKNOWN_DEVICE, f"device {message.device_id!r} has no usable secret"
                        )
                    verify_signature(message, secret)
                    check_ranges(message, device.kind)
                except Rejected as exc:
                    reject(i, exc.reason.value, exc.detail, message)
                    continue
                valid.append((i, message))
            stored = stored_signatures(conn, {(m.device_id, m.seq) for _, m in valid})
            rows: list[dict[str, Any]] = []
            last_rx: dict[str, int] = {}
            for i, message in valid:
                key = (message.device_id, message.seq)
                if key in stored:
                    if stored[key] == message.sig:
                        reject(i, RejectReason.DUPLICATE.value, "this message was already stored", message)
                    else:
                        reject(i, RejectReason.REPLAYED_SEQ.value, f"seq {message.seq} was already used", message)
                    continue
                stored[key] = message.sig
                item = batch[i]
                device = devices[message.device_id]
                skewed = abs(message.ts_ms - item.received_ms) > settings.clock_skew_max_ms
                reading = Reading(
                    message.device_id, device.kind, message.ts_ms, item.received_ms, message.values, skewed
                )
                ctx, state = loaded.contexts[device.asset_id], loaded.states[device.asset_id]
                late = is_late(state, reading)
                changes = apply_reading(ctx, state, reading, self._params)
                events += apply_alarm_changes(conn, device.asset_id, changes, now, loaded, settings, counters)
                rows.append(
                    {
                        "device_id": message.device_id,
                        "seq": message.seq,
                        "asset_id": device.asset_id,
                        "device_ts_ms": message.ts_ms,
                        "received_ms": item.received_ms,
                        "values_json": message.values_json,
                        "sig": message.sig,
                        "late": late,
                        "skewed": skewed,
                    }
                )
                last_rx[message.device_id] = max(item.received_ms, last_rx.get(message.device_id, 0))
                outcomes[i] = Outcome(True, message.device_id, message.seq, late=late, skewed=skewed)
                accepted += 1
                late_n += late
                skewed_n += skewed
            store.insert_readings(conn, rows, last_rx)
            moved = save_states(conn, loaded)
            for event in revalue(conn, moved, settings, now, "reading"):
                note = queue_notification(
                    conn, f"loan:{event.loan_id}", event.to_json(), now, settings, rate_limited=False
                )
                if note is not None:
                    events.append({**note, "orgs": [event.borrower, event.lender]})
                loan_n += 1
            self._write_rejects(conn, rejects)
        final = [o for o in outcomes if o is not None]
        assert len(final) == len(batch), "every message has an outcome"
        with self._lock:
            m = self.metrics
            m.batches += 1
            m.accepted += accepted
            m.late += late_n
            m.skewed += skewed_n
            m.loan_events += loan_n
            for _, reason, _ in rejects:
                m.rejected[reason] = m.rejected.get(reason, 0) + 1
            for action, n in counters.items():
                m.alarms[action] = m.alarms.get(action, 0) + n
            m.last_batch_size = len(batch)
            m.last_lag_ms = max(0, self._clock.now_ms() - min(item.received_ms for item in batch))
            m._window.append((time.monotonic(), accepted))
        return final, events

    # --- time passing ------------------------------------------------------------------------------

    def sweep(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Judge "offline" on receive time for assets with a silent device or an active offline alarm."""
        now = now_ms if now_ms is not None else self._clock.now_ms()
        limit = self._params.heartbeat_ms * self._params.offline_missed_heartbeats
        events: list[dict[str, Any]] = []
        counters: dict[str, int] = {}
        with self._engine.begin() as conn:
            silent = store.silent_assets(conn, now - limit)
            flagged = store.assets_with_active_alarm(conn, OFFLINE)
            loaded = lock_and_load(conn, silent | flagged)
            for asset_id, ctx in loaded.contexts.items():
                changes = tick(ctx, loaded.states[asset_id], now, self._params)
                events += apply_alarm_changes(conn, asset_id, changes, now, loaded, self._settings, counters)
            save_states(conn, loaded)
        with self._lock:
            for action, n in counters.items():
                self.metrics.alarms[action] = self.metrics.alarms.get(action, 0) + n
        self._publish(events)
        return events

    def prometheus(self) -> str:
        """Counters and gauges in the Prometheus text format."""
        with self._lock:
            m = self.metrics
            lines = [
                "# HELP creditflow_iot_received_total Telemetry messages received.",
                "# TYPE creditflow_iot_received_total counter",
                f"creditflow_iot_received_total {m.received}",
                "# TYPE creditflow_iot_accepted_total counter",
                f"creditflow_iot_accepted_total {m.accepted}",
                "# TYPE creditflow_iot_late_total counter",
                f"creditflow_iot_late_total {m.late}",
                "# TYPE creditflow_iot_skewed_total counter",
                f"creditflow_iot_skewed_total {m.skewed}",
                "# HELP creditflow_iot_rejected_total Telemetry messages rejected, by reason.",
                "# TYPE creditflow_iot_rejected_total counter",
                *(f'creditflow_iot_rejected_total{{reason="{r}"}} {n}' for r, n in sorted(m.rejected.items())),
                "# TYPE creditflow_iot_alarm_changes_total counter",
                *(f'creditflow_iot_alarm_changes_total{{action="{a}"}} {n}' for a, n in sorted(m.alarms.items())),
                "# TYPE creditflow_iot_loan_band_events_total counter",
                f"creditflow_iot_loan_band_events_total {m.loan_events}",
                "# TYPE creditflow_iot_batches_total counter",
                f"creditflow_iot_batches_total {m.batches}",
                "# TYPE creditflow_iot_batch_failures_total counter",
                f"creditflow_iot_batch_failures_total {m.batch_failures}",
                "# HELP creditflow_iot_queue_depth Messages waiting for the writer.",
                "# TYPE creditflow_iot_queue_depth gauge",
                f"creditflow_iot_queue_depth {self._queue.qsize()}",
                "# HELP creditflow_iot_consumer_lag_ms Receive to commit, oldest message of the last batch.",
                "# TYPE creditflow_iot_consumer_lag_ms gauge",
                f"creditflow_iot_consumer_lag_ms {m.last_lag_ms}",
                "# TYPE creditflow_iot_throughput_msgs_per_s gauge",
                f"creditflow_iot_throughput_msgs_per_s {m.throughput_per_s(time.monotonic()):.1f}",
            ]
        return "\n".join(lines) + "\n"
