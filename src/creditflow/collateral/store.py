"""SQL for the collateral context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here.

The ingest and alarm-engine paths are hot: their statements are built once at import (building a statement
costs about as much as running it), batch reads use ``IN`` lists and batch writes ``executemany``; the
dialect-specific SQL (the duplicate look-up, the insert-if-absent of an alarm) lives here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from creditflow.collateral.model import AssetKind, DeviceKind, LtvBand, ProposalStatus, blocks_financing
from creditflow.collateral.rules import AssetContext, AssetState
from creditflow.collateral.tables import (
    iot_alarms,
    iot_assets,
    iot_bank_prices,
    iot_dead_letters,
    iot_devices,
    iot_loan_events,
    iot_loans,
    iot_notifications,
    iot_pledge_proposals,
    iot_pledges,
    iot_prices,
    iot_readings,
    iot_releases,
    iot_webhooks,
)
from creditflow.kernel.engine import after_key

_IN_CHUNK = 900  # stays under SQLite's bound-parameter limit


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]


# --- the rules engine's view of locked assets (ingest, sweep, every command that moves a rule) ------------------


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


def save_states(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write rule states back, one executemany: rows of ``a_id`` (asset), ``s`` (state JSON), ``m`` (measured
    grams), ``h`` (health index)."""
    if rows:
        conn.execute(_SAVE_STATE, list(rows))


# --- alarms written by the engine -------------------------------------------------------------------------


def _insert_ignore(conn: Connection, table: Any, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row went in."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return conn.execute(stmt).first() is not None  # rowcount is -1 on psycopg here: ask for the row instead


def raise_alarm(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert an active alarm unless one of the same (asset, type) is active (the partial unique index
    arbitrates between workers); True if it went in."""
    return _insert_ignore(conn, iot_alarms, values)


def active_alarm(conn: Connection, asset_id: str, alarm_type: str) -> tuple[str, str] | None:
    """(id, details JSON) of the active alarm of this type on the asset, if any."""
    row = conn.execute(
        select(iot_alarms.c.id, iot_alarms.c.details_json).where(
            iot_alarms.c.asset_id == asset_id,
            iot_alarms.c.alarm_type == alarm_type,
            iot_alarms.c.status == "active",
        )
    ).first()
    return None if row is None else (row.id, row.details_json)


def update_alarm(conn: Connection, alarm_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(iot_alarms.update().where(iot_alarms.c.id == alarm_id).values(**values))


def assets_with_active_alarm(conn: Connection, alarm_type: str) -> set[str]:
    return {
        r.asset_id
        for r in conn.execute(
            select(iot_alarms.c.asset_id).where(iot_alarms.c.alarm_type == alarm_type, iot_alarms.c.status == "active")
        )
    }


# --- the notifications outbox --------------------------------------------------------------------------------


def notified_since(conn: Connection, rate_key: str, since_ms: int) -> bool:
    """True if a notification with this key was queued after ``since_ms``."""
    recent = conn.execute(
        select(iot_notifications.c.id)
        .where(iot_notifications.c.rate_key == rate_key, iot_notifications.c.created_ts_ms > since_ms)
        .limit(1)
    ).first()
    return recent is not None


def insert_notification(conn: Connection, rate_key: str, created_ts_ms: int, payload_json: str) -> int | None:
    """Queue one notification; its id."""
    result = conn.execute(
        iot_notifications.insert().values(
            rate_key=rate_key, created_ts_ms=created_ts_ms, payload_json=payload_json, delivered=False, attempts=0
        )
    )
    key = result.inserted_primary_key
    return int(key[0]) if key else None


class Notification(NamedTuple):
    id: int
    payload_json: str
    attempts: int


class Webhook(NamedTuple):
    id: str
    org_id: str
    url: str
    secret_sealed: bytes


def pending_notifications(conn: Connection, limit: int) -> list[Notification]:
    rows = conn.execute(
        select(iot_notifications.c.id, iot_notifications.c.payload_json, iot_notifications.c.attempts)
        .where(iot_notifications.c.delivered.is_(False))
        .order_by(iot_notifications.c.id)
        .limit(limit)
    )
    return [Notification(int(r.id), r.payload_json, int(r.attempts)) for r in rows]


def active_webhooks(conn: Connection) -> list[Webhook]:
    """Active webhooks with a sealed secret."""
    rows = conn.execute(
        select(iot_webhooks.c.id, iot_webhooks.c.org_id, iot_webhooks.c.url, iot_webhooks.c.secret_sealed).where(
            iot_webhooks.c.active.is_(True), iot_webhooks.c.secret_sealed.is_not(None)
        )
    )
    return [Webhook(r.id, r.org_id, r.url, bytes(r.secret_sealed)) for r in rows]


def record_deliveries(conn: Connection, results: Sequence[tuple[int, bool, int]]) -> None:
    """(notification id, delivered, attempts) per notification."""
    for notification_id, delivered, attempts in results:
        conn.execute(
            iot_notifications.update()
            .where(iot_notifications.c.id == notification_id)
            .values(delivered=delivered, attempts=attempts)
        )


def insert_webhook(
    conn: Connection, webhook_id: str, org_id: str, url: str, secret_sealed: bytes, created_ts_ms: int
) -> None:
    conn.execute(
        iot_webhooks.insert().values(
            id=webhook_id, org_id=org_id, url=url, secret_sealed=secret_sealed, active=True, created_ts_ms=created_ts_ms
        )
    )


# --- the ingest ------------------------------------------------------------------------------------------------

# The signatures already stored under a batch's (device, seq) keys, as a join of the keys against the readings'
# primary key: one index probe per key, one statement shape for every batch size, two parameters. (SQLite plans
# ``(device_id, seq) IN (VALUES ...)`` as a scan of the whole readings table, and a VALUES list of bound
# parameters costs PostgreSQL far more to plan and bind than two arrays do.)
_STORED_SQLITE = text(
    "SELECT r.device_id, r.seq, r.sig FROM json_each(:keys) AS k"
    " JOIN iot_readings r ON r.device_id = json_extract(k.value, '$[0]') AND r.seq = json_extract(k.value, '$[1]')"
)
# On PostgreSQL it is run unprepared: psycopg prepares a statement after a few executions and the server may
# then keep one generic plan, made while the readings table was still empty (a sequential scan), however large
# the table grows (measured: 0.5 ms -> 15 ms a batch at 100 000 readings without an ANALYZE in between).
_STORED_POSTGRESQL = (
    "SELECT r.device_id, r.seq, r.sig FROM unnest(%s::varchar[], %s::bigint[]) AS k(d, s)"
    " JOIN iot_readings r ON r.device_id = k.d AND r.seq = k.s"
)
_KEY_CHUNK = 5_000  # (device, seq) keys looked up in one statement
_INSERT_READINGS = iot_readings.insert()
_TOUCH_DEVICES = iot_devices.update().where(iot_devices.c.id == bindparam("d_id")).values(last_rx_ms=bindparam("rx"))


def stored_signatures(conn: Connection, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The signatures already stored under these (device, seq) keys: a duplicate (same signature) or a
    replayed seq (another one)."""
    todo = sorted(set(keys))
    found: dict[tuple[str, int], str] = {}
    sqlite_ = conn.dialect.name == "sqlite"
    for start in range(0, len(todo), _KEY_CHUNK):
        chunk = todo[start : start + _KEY_CHUNK]
        if sqlite_:
            rows = [tuple(r) for r in conn.execute(_STORED_SQLITE, {"keys": json.dumps(chunk)})]
        else:
            driver = conn.connection.driver_connection  # psycopg's, in this transaction
            assert driver is not None
            with driver.cursor() as cursor:
                cursor.execute(_STORED_POSTGRESQL, ([d for d, _ in chunk], [q for _, q in chunk]), prepare=False)
                rows = cursor.fetchall()
        for device_id, seq, sig in rows:
            found[(device_id, int(seq))] = sig
    return found


def insert_readings(conn: Connection, rows: Sequence[Mapping[str, Any]], last_rx: Mapping[str, int]) -> None:
    """Store a batch's accepted readings and its devices' receive times (two executemany)."""
    if rows:
        conn.execute(_INSERT_READINGS, list(rows))
        conn.execute(_TOUCH_DEVICES, [{"d_id": d, "rx": rx} for d, rx in sorted(last_rx.items())])


def insert_dead_letters(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn.execute(iot_dead_letters.insert(), list(rows))


def silent_assets(conn: Connection, since_ms: int) -> set[str]:
    """Assets with an active device not heard from since ``since_ms`` (never heard from: created before it)."""
    return {
        r.asset_id
        for r in conn.execute(
            select(iot_devices.c.asset_id).where(
                iot_devices.c.status == "active",
                ((iot_devices.c.last_rx_ms.is_(None)) & (iot_devices.c.created_ts_ms < since_ms))
                | (iot_devices.c.last_rx_ms < since_ms),
            )
        )
    }


def dead_letters(conn: Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(iot_dead_letters).order_by(iot_dead_letters.c.id.desc()).limit(limit))
    return [
        {
            "id": r.id,
            "received_ms": r.received_ms,
            "source": r.source,
            "device_id": r.device_id,
            "reason": r.reason,
            "detail": r.detail,
        }
        for r in rows
    ]


# --- secrets ------------------------------------------------------------------------------------------------

_CLEAR_DEVICES = select(iot_devices.c.id, iot_devices.c.secret, iot_devices.c.secret_version).where(
    iot_devices.c.secret.is_not(None)
)
_CLEAR_HOOKS = select(iot_webhooks.c.id, iot_webhooks.c.secret).where(iot_webhooks.c.secret.is_not(None))


def has_clear_secrets(conn: Connection) -> bool:
    return bool(conn.execute(_CLEAR_DEVICES.limit(1)).first() or conn.execute(_CLEAR_HOOKS.limit(1)).first())


def clear_device_secrets(conn: Connection) -> list[tuple[str, int, bytes]]:
    """(device id, secret version, clear secret) of the devices whose secret is still stored in clear."""
    return [(r.id, int(r.secret_version), bytes(r.secret)) for r in conn.execute(_CLEAR_DEVICES).all()]


def clear_webhook_secrets(conn: Connection) -> list[tuple[str, bytes]]:
    return [(r.id, bytes(r.secret)) for r in conn.execute(_CLEAR_HOOKS).all()]


def seal_device_secret(conn: Connection, device_id: str, sealed: bytes) -> None:
    conn.execute(iot_devices.update().where(iot_devices.c.id == device_id).values(secret=None, secret_sealed=sealed))


def seal_webhook_secret(conn: Connection, webhook_id: str, sealed: bytes) -> None:
    conn.execute(iot_webhooks.update().where(iot_webhooks.c.id == webhook_id).values(secret=None, secret_sealed=sealed))


# --- valuation -------------------------------------------------------------------------------------------------


class ValuedAsset(NamedTuple):
    """What an asset's value is computed from, with its pledge (``loan_id`` None: not pledged)."""

    id: str
    kind: str
    commodity: str | None
    appraised_minor: int | None
    expected_g: int
    measured_g: int | None
    health_index: int
    value_minor: int
    haircut_bps: int | None
    loan_id: str | None
    lender: str | None  # whose price book values it (None: unpledged, the operator's feed)


class LoanRow(NamedTuple):
    id: str
    borrower: str
    lender: str
    outstanding_minor: int
    bands_key: str
    value_minor: int
    ltv_bps: int | None
    band: str
    status: str


_LOAN_COLUMNS = (
    iot_loans.c.id,
    iot_loans.c.borrower,
    iot_loans.c.lender,
    iot_loans.c.outstanding_minor,
    iot_loans.c.bands_key,
    iot_loans.c.value_minor,
    iot_loans.c.ltv_bps,
    iot_loans.c.band,
    iot_loans.c.status,
)


def _loan_row(r: Any) -> LoanRow:
    return LoanRow(
        r.id,
        r.borrower,
        r.lender,
        int(r.outstanding_minor),
        r.bands_key,
        int(r.value_minor),
        r.ltv_bps,
        r.band,
        r.status,
    )


def _latest_feed(conn: Connection, commodities: Iterable[str]) -> dict[str, dict[str, Any]]:
    names = sorted(set(commodities))
    if not names:
        return {}
    newest = (
        select(iot_prices.c.commodity, func.max(iot_prices.c.ts_ms).label("ts"))
        .where(iot_prices.c.commodity.in_(names))
        .group_by(iot_prices.c.commodity)
        .subquery()
    )
    rows = conn.execute(
        select(iot_prices).join(
            newest, (iot_prices.c.commodity == newest.c.commodity) & (iot_prices.c.ts_ms == newest.c.ts)
        )
    )
    return {
        r.commodity: {
            "commodity": r.commodity,
            "price_minor_per_kg": int(r.price_minor_per_kg),
            "ts_ms": int(r.ts_ms),
            "book": "operator",
            "source": r.source,
        }
        for r in rows
    }


def price_sources(
    conn: Connection, pairs: Iterable[tuple[str | None, str]]
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """For each (bank, commodity): the price that values it and where it comes from. The bank's own book
    (its newest price) when it keeps one for the commodity, else the operator's feed (its newest); a pair
    with no price anywhere is absent. ``bank`` None: the feed."""
    wanted = sorted(set(pairs), key=lambda p: (p[0] or "", p[1]))
    if not wanted:
        return {}
    b = iot_bank_prices.c
    own: dict[tuple[str, str], dict[str, Any]] = {}
    banks = sorted({bank for bank, _ in wanted if bank is not None})
    names = sorted({c for _, c in wanted})
    if banks:
        newest = (
            select(b.bank, b.commodity, func.max(b.ts_ms).label("ts"))
            .where(b.bank.in_(banks), b.commodity.in_(names))
            .group_by(b.bank, b.commodity)
            .subquery()
        )
        for r in conn.execute(
            select(iot_bank_prices).join(
                newest, (b.bank == newest.c.bank) & (b.commodity == newest.c.commodity) & (b.ts_ms == newest.c.ts)
            )
        ):
            own[(r.bank, r.commodity)] = {
                "commodity": r.commodity,
                "price_minor_per_kg": int(r.price_minor_per_kg),
                "ts_ms": int(r.ts_ms),
                "book": r.bank,
                "source": r.source,
            }
    feed = _latest_feed(conn, [c for bank, c in wanted if bank is None or (bank, c) not in own])
    out: dict[tuple[str | None, str], dict[str, Any]] = {}
    for bank, commodity in wanted:
        found = own.get((bank, commodity)) if bank is not None else None
        if found is None:
            found = feed.get(commodity)
        if found is not None:
            out[(bank, commodity)] = found
    return out


def assets_to_value(conn: Connection, asset_ids: Sequence[str]) -> list[ValuedAsset]:
    a = iot_assets.c
    rows = conn.execute(
        select(
            a.id,
            a.kind,
            a.commodity,
            a.appraised_minor,
            a.expected_g,
            a.measured_g,
            a.health_index,
            a.value_minor,
            iot_pledges.c.haircut_bps,
            iot_pledges.c.loan_id,
            iot_loans.c.lender,
        )
        .select_from(_ASSETS_WITH_LENDER)
        .where(a.id.in_(list(asset_ids)))
    ).all()
    return [ValuedAsset._make(r) for r in rows]


def set_asset_values(conn: Connection, values: Mapping[str, int], valued_ts_ms: int) -> None:
    """New values by asset id (one executemany)."""
    if values:
        conn.execute(
            iot_assets.update()
            .where(iot_assets.c.id == bindparam("a_id"))
            .values(value_minor=bindparam("v"), valued_ts_ms=valued_ts_ms),
            [{"a_id": a, "v": v} for a, v in values.items()],
        )


def lock_loan(conn: Connection, loan_id: str) -> LoanRow | None:
    row = conn.execute(select(*_LOAN_COLUMNS).where(iot_loans.c.id == loan_id).with_for_update()).first()
    return None if row is None else _loan_row(row)


def pledged_value(conn: Connection, loan_id: str) -> int:
    """The sum of the values of the assets pledged to the loan (read fresh, under the loan's lock)."""
    total = conn.execute(
        select(func.coalesce(func.sum(iot_assets.c.value_minor), 0))
        .select_from(iot_assets.join(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id))
        .where(iot_pledges.c.loan_id == loan_id)
    ).scalar_one()
    return int(total)


def set_loan_valuation(
    conn: Connection, loan_id: str, value_minor: int, ltv_bps: int | None, band: str, updated_ts_ms: int
) -> None:
    conn.execute(
        iot_loans.update()
        .where(iot_loans.c.id == loan_id)
        .values(value_minor=value_minor, ltv_bps=ltv_bps, band=band, updated_ts_ms=updated_ts_ms)
    )


def insert_loan_event(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(iot_loan_events.insert().values(**values))


# --- assets and devices -----------------------------------------------------------------------------------------


def _visible_assets(viewer: str) -> ColumnElement[bool]:
    """Assets ``viewer`` may see: its own, and those pledged to a loan it granted (a pledge exists only once
    the asset's owner accepted it, on a loan the owner accepted)."""
    lent = (
        select(iot_pledges.c.asset_id)
        .join(iot_loans, iot_loans.c.id == iot_pledges.c.loan_id)
        .where(iot_loans.c.lender == viewer, _ACCEPTED)
    )
    return or_(iot_assets.c.owner == viewer, iot_assets.c.id.in_(lent))


def _visible_asset_ids(viewer: str) -> Select[Any]:
    return select(iot_assets.c.id).where(_visible_assets(viewer))


_ASSETS = select(iot_assets, iot_pledges.c.loan_id, iot_pledges.c.haircut_bps).select_from(
    iot_assets.outerjoin(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id)
)
_DEVICE_COLUMNS = (
    iot_devices.c.id,
    iot_devices.c.asset_id,
    iot_devices.c.kind,
    iot_devices.c.status,
    iot_devices.c.secret_version,
    iot_devices.c.last_rx_ms,
)


def _asset_json(row: Any) -> dict[str, Any]:
    """An asset row of `_ASSETS` (with its pledge, if any)."""
    return {
        "asset_id": row.id,
        "kind": row.kind,
        "owner": row.owner,
        "name": row.name,
        "commodity": row.commodity,
        "expected_g": row.expected_g,
        "measured_g": row.measured_g,
        "receipt_no": row.receipt_no,
        "serial_no": row.serial_no,
        "crop": row.crop,
        "health_index": row.health_index,
        "value_minor": row.value_minor,
        "loan_id": row.loan_id,
        "haircut_bps": row.haircut_bps,
    }


def _device_json(row: Any) -> dict[str, Any]:
    return {
        "device_id": row.id,
        "asset_id": row.asset_id,
        "kind": row.kind,
        "status": row.status,
        "secret_version": row.secret_version,
        "last_rx_ms": row.last_rx_ms,
    }


def insert_asset(conn: Connection, values: Mapping[str, Any]) -> str | None:
    """Insert an asset row; None, or what stopped it: ``"receipt"`` (its warehouse receipt is registered
    already) or ``"exists"`` (its id is taken)."""
    try:
        conn.execute(iot_assets.insert().values(**values))
    except IntegrityError as exc:  # the transaction is spoilt: the caller raises, which rolls it back
        return "receipt" if "receipt" in str(exc.orig).lower() else "exists"
    return None


def asset(conn: Connection, asset_id: str, viewer: str | None = None) -> dict[str, Any] | None:
    """One asset with its pledge; with ``viewer``, only if that organisation may see it."""
    stmt = _ASSETS.where(iot_assets.c.id == asset_id)
    if viewer is not None:
        stmt = stmt.where(_visible_assets(viewer))
    row = conn.execute(stmt).first()
    return None if row is None else _asset_json(row)


def assets_page(
    conn: Connection, viewer: str | None, limit: int, after: Sequence[int | str] | None
) -> list[dict[str, Any]]:
    stmt = _ASSETS
    if viewer is not None:
        stmt = stmt.where(_visible_assets(viewer))
    if after:
        stmt = stmt.where(after_key([iot_assets.c.id], after))
    return [_asset_json(r) for r in conn.execute(stmt.order_by(iot_assets.c.id).limit(limit)).all()]


def asset_ids_of_commodities(conn: Connection, commodities: Iterable[str], lender: str | None = None) -> list[str]:
    """Assets of these commodities; with ``lender``, only those pledged to that bank's loans."""
    stmt = select(iot_assets.c.id).where(iot_assets.c.commodity.in_(set(commodities)))
    if lender is not None:
        stmt = stmt.select_from(_ASSETS_WITH_LENDER).where(iot_loans.c.lender == lender)
    return [r.id for r in conn.execute(stmt)]


def asset_owner_and_lender(conn: Connection, asset_id: str) -> tuple[str, str | None] | None:
    """(owner, lender of the loan it is pledged to) of an asset, or None if there is no such asset."""
    row = conn.execute(
        select(iot_assets.c.owner, iot_loans.c.lender)
        .select_from(_ASSETS_WITH_LENDER)
        .where(iot_assets.c.id == asset_id)
    ).first()
    return None if row is None else (row.owner, row.lender)


def asset_kind(conn: Connection, asset_id: str) -> str | None:
    row = conn.execute(select(iot_assets.c.kind).where(iot_assets.c.id == asset_id)).first()
    return None if row is None else str(row.kind)


def set_expected_g(conn: Connection, asset_id: str, expected_g: int) -> None:
    conn.execute(iot_assets.update().where(iot_assets.c.id == asset_id).values(expected_g=expected_g))


def asset_sites(conn: Connection, asset_ids: Sequence[str]) -> dict[str, tuple[str | None, str]]:
    """asset id -> (geofence JSON or None, rule state JSON)."""
    out: dict[str, tuple[str | None, str]] = {}
    for chunk in _chunks(list(asset_ids)):
        for r in conn.execute(
            select(iot_assets.c.id, iot_assets.c.geofence_json, iot_assets.c.state_json).where(
                iot_assets.c.id.in_(list(chunk))
            )
        ):
            out[r.id] = (r.geofence_json, r.state_json)
    return out


def device_exists(conn: Connection, device_id: str) -> bool:
    return conn.execute(select(iot_devices.c.id).where(iot_devices.c.id == device_id)).first() is not None


def insert_device(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(iot_devices.insert().values(**values))


class DeviceRow(NamedTuple):
    id: str
    asset_id: str
    status: str
    secret_version: int


def device_row(conn: Connection, device_id: str) -> DeviceRow | None:
    row = conn.execute(
        select(iot_devices.c.id, iot_devices.c.asset_id, iot_devices.c.status, iot_devices.c.secret_version).where(
            iot_devices.c.id == device_id
        )
    ).first()
    return None if row is None else DeviceRow(row.id, row.asset_id, row.status, int(row.secret_version))


def set_device_secret(conn: Connection, device_id: str, sealed: bytes, version: int) -> None:
    conn.execute(
        iot_devices.update()
        .where(iot_devices.c.id == device_id)
        .values(secret=None, secret_sealed=sealed, secret_version=version)
    )


def retire_device(conn: Connection, device_id: str) -> None:
    conn.execute(iot_devices.update().where(iot_devices.c.id == device_id).values(status="retired"))


def devices(conn: Connection, asset_id: str | None = None) -> list[dict[str, Any]]:
    query = select(*_DEVICE_COLUMNS).order_by(iot_devices.c.id)
    if asset_id is not None:
        query = query.where(iot_devices.c.asset_id == asset_id)
    return [_device_json(r) for r in conn.execute(query)]


def device(conn: Connection, device_id: str, viewer: str | None = None) -> dict[str, Any] | None:
    stmt = select(*_DEVICE_COLUMNS).where(iot_devices.c.id == device_id)
    if viewer is not None:
        stmt = stmt.where(iot_devices.c.asset_id.in_(_visible_asset_ids(viewer)))
    row = conn.execute(stmt).first()
    return None if row is None else _device_json(row)


def devices_page(
    conn: Connection, viewer: str | None, limit: int, after: Sequence[int | str] | None, asset_id: str | None
) -> list[dict[str, Any]]:
    stmt = select(*_DEVICE_COLUMNS)
    if viewer is not None:
        stmt = stmt.where(iot_devices.c.asset_id.in_(_visible_asset_ids(viewer)))
    if asset_id is not None:
        stmt = stmt.where(iot_devices.c.asset_id == asset_id)
    if after:
        stmt = stmt.where(after_key([iot_devices.c.id], after))
    return [_device_json(r) for r in conn.execute(stmt.order_by(iot_devices.c.id).limit(limit)).all()]


# --- prices ----------------------------------------------------------------------------------------------------


def price_at(conn: Connection, commodity: str, ts_ms: int, book: str | None = None) -> int | None:
    """The price at exactly ``ts_ms`` in the operator's feed (``book`` None) or in that bank's book."""
    if book is None:
        stmt = select(iot_prices.c.price_minor_per_kg).where(
            iot_prices.c.commodity == commodity, iot_prices.c.ts_ms == ts_ms
        )
    else:
        b = iot_bank_prices.c
        stmt = select(b.price_minor_per_kg).where(b.bank == book, b.commodity == commodity, b.ts_ms == ts_ms)
    row = conn.execute(stmt).first()
    return None if row is None else int(row.price_minor_per_kg)


def insert_price(conn: Connection, values: Mapping[str, Any], book: str | None = None) -> None:
    if book is None:
        conn.execute(iot_prices.insert().values(**values))
    else:
        conn.execute(iot_bank_prices.insert().values(bank=book, **values))


def price_history(conn: Connection, commodity: str, book: str | None = None) -> list[dict[str, Any]]:
    """The operator's feed (``book`` None) or one bank's book for a commodity, oldest first."""
    if book is None:
        stmt = select(iot_prices).where(iot_prices.c.commodity == commodity).order_by(iot_prices.c.ts_ms)
    else:
        b = iot_bank_prices.c
        stmt = select(iot_bank_prices).where(b.bank == book, b.commodity == commodity).order_by(b.ts_ms)
    return [
        {"ts_ms": r.ts_ms, "price_minor_per_kg": r.price_minor_per_kg, "source": r.source} for r in conn.execute(stmt)
    ]


# --- loans, pledges, releases --------------------------------------------------------------------------------------


def insert_loan(conn: Connection, values: Mapping[str, Any]) -> bool:
    """Insert a loan row; False if its id is taken."""
    try:
        conn.execute(iot_loans.insert().values(**values))
    except IntegrityError:  # the transaction is spoilt: the caller raises, which rolls it back
        return False
    return True


def loan_exists(conn: Connection, loan_id: str) -> bool:
    return conn.execute(select(iot_loans.c.id).where(iot_loans.c.id == loan_id)).first() is not None


def lock_loan_consent(conn: Connection, loan_id: str) -> Any | None:
    """The whole loan row (status, terms, signatures), locked for this transaction."""
    return conn.execute(select(iot_loans).where(iot_loans.c.id == loan_id).with_for_update()).first()


def set_loan_fields(conn: Connection, loan_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(iot_loans.update().where(iot_loans.c.id == loan_id).values(**values))


def insert_pledge_proposal(conn: Connection, values: Mapping[str, Any]) -> bool:
    """Insert a pledge proposal; False if one for this (loan, asset) is still open (the partial unique index)."""
    try:
        conn.execute(iot_pledge_proposals.insert().values(**values))
    except IntegrityError:  # the transaction is spoilt: the caller raises, which rolls it back
        return False
    return True


def lock_pledge_proposal(conn: Connection, loan_id: str, asset_id: str) -> Any | None:
    """The newest proposal to pledge ``asset_id`` to ``loan_id`` (an open one first), locked."""
    p = iot_pledge_proposals.c
    return conn.execute(
        select(iot_pledge_proposals)
        .where(p.loan_id == loan_id, p.asset_id == asset_id)
        .order_by((p.status == ProposalStatus.PROPOSED.value).desc(), p.created_ts_ms.desc(), p.id)
        .limit(1)
        .with_for_update()
    ).first()


def refuse_open_proposals(conn: Connection, loan_id: str, decided_ts_ms: int) -> None:
    p = iot_pledge_proposals.c
    conn.execute(
        iot_pledge_proposals.update()
        .where(p.loan_id == loan_id, p.status == ProposalStatus.PROPOSED.value)
        .values(status=ProposalStatus.REFUSED.value, decided_ts_ms=decided_ts_ms)
    )


def set_proposal_fields(conn: Connection, proposal_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(iot_pledge_proposals.update().where(iot_pledge_proposals.c.id == proposal_id).values(**values))


def asset_owner(conn: Connection, asset_id: str) -> str | None:
    row = conn.execute(select(iot_assets.c.owner).where(iot_assets.c.id == asset_id)).first()
    return None if row is None else str(row.owner)


def pledged_to(conn: Connection, asset_id: str) -> str | None:
    """The loan the asset is pledged to, if any."""
    row = conn.execute(select(iot_pledges.c.loan_id).where(iot_pledges.c.asset_id == asset_id)).first()
    return None if row is None else str(row.loan_id)


def insert_pledge(conn: Connection, asset_id: str, loan_id: str, haircut_bps: int, created_ts_ms: int) -> None:
    conn.execute(
        iot_pledges.insert().values(
            asset_id=asset_id, loan_id=loan_id, haircut_bps=haircut_bps, created_ts_ms=created_ts_ms
        )
    )


def set_outstanding(conn: Connection, loan_id: str, outstanding_minor: int) -> None:
    conn.execute(iot_loans.update().where(iot_loans.c.id == loan_id).values(outstanding_minor=outstanding_minor))


def insert_release(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(iot_releases.insert().values(**values))


def _loans_json(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Loan rows with their pledged assets and band history (two queries for the lot, per chunk of ids)."""
    ids = [r.id for r in rows]
    lender_of = {r.id: r.lender for r in rows}
    assets: dict[str, list[str]] = {i: [] for i in ids}
    commodities: dict[str, set[str]] = {i: set() for i in ids}
    events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    proposals: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for chunk in _chunks(ids):
        for p in conn.execute(
            select(iot_pledges.c.loan_id, iot_pledges.c.asset_id, iot_assets.c.commodity)
            .select_from(iot_pledges.join(iot_assets, iot_assets.c.id == iot_pledges.c.asset_id))
            .where(iot_pledges.c.loan_id.in_(list(chunk)))
            .order_by(iot_pledges.c.asset_id)
        ):
            assets[p.loan_id].append(p.asset_id)
            if p.commodity:
                commodities[p.loan_id].add(p.commodity)
        pp = iot_pledge_proposals.c
        for q in conn.execute(
            select(iot_pledge_proposals)
            .where(pp.loan_id.in_(list(chunk)))
            .order_by(pp.loan_id, pp.created_ts_ms, pp.id)
        ):
            proposals[q.loan_id].append(
                {
                    "proposal_id": q.id,
                    "asset_id": q.asset_id,
                    "haircut_bps": q.haircut_bps,
                    "status": q.status,
                    "proposed_ts_ms": q.created_ts_ms,
                    "decided_ts_ms": q.decided_ts_ms,
                    "terms_digest": q.terms_digest,
                    "lender_signature": _signature(q.lender_key_id, q.lender_sig),
                    "owner_signature": _signature(q.owner_key_id, q.owner_sig),
                }
            )
        for e in conn.execute(
            select(iot_loan_events)
            .where(iot_loan_events.c.loan_id.in_(list(chunk)))
            .order_by(iot_loan_events.c.loan_id, iot_loan_events.c.ts_ms)
        ):
            events[e.loan_id].append(
                {
                    "ts_ms": e.ts_ms,
                    "from_band": e.from_band,
                    "to_band": e.to_band,
                    "ltv_bps": e.ltv_bps,
                    "cause": e.cause,
                }
            )
    used = price_sources(conn, {(lender_of[i], c) for i in ids for c in commodities[i]})
    return [
        {
            "loan_id": row.id,
            "borrower": row.borrower,
            "lender": row.lender,
            "status": row.status,
            "outstanding_minor": row.outstanding_minor,
            "value_minor": row.value_minor,
            "ltv_bps": row.ltv_bps,
            "band": row.band,
            "assets": assets[row.id],
            "financing_blocked": row.status == ProposalStatus.ACCEPTED.value and blocks_financing(LtvBand(row.band)),
            "events": events[row.id],
            "proposed_ts_ms": row.created_ts_ms,
            "decided_ts_ms": row.decided_ts_ms,
            "terms_digest": row.terms_digest,
            "lender_signature": _signature(row.lender_key_id, row.lender_sig),
            "borrower_signature": _signature(row.borrower_key_id, row.borrower_sig),
            "pledge_proposals": proposals[row.id],
            "prices": [used[(row.lender, c)] for c in sorted(commodities[row.id]) if (row.lender, c) in used],
        }
        for row in rows
    ]


def _signature(key_id: str | None, sig: str | None) -> dict[str, str] | None:
    return None if key_id is None or sig is None else {"key_id": key_id, "signature": sig}


def loan_consent(conn: Connection, loan_id: str) -> dict[str, Any] | None:
    """What was signed for a loan and each of its pledge proposals: terms (canonical text) and signatures."""
    row = conn.execute(select(iot_loans).where(iot_loans.c.id == loan_id)).first()
    if row is None:
        return None
    pp = iot_pledge_proposals.c
    pledges = conn.execute(
        select(iot_pledge_proposals).where(pp.loan_id == loan_id).order_by(pp.created_ts_ms, pp.id)
    ).all()
    return {
        "loan": {
            "terms": row.terms,
            "status": row.status,
            "signatures": {
                row.lender: (row.lender_key_id, row.lender_sig),
                row.borrower: (row.borrower_key_id, row.borrower_sig),
            },
        },
        "pledges": [
            {
                "proposal_id": q.id,
                "asset_id": q.asset_id,
                "status": q.status,
                "terms": q.terms,
                "signatures": {
                    row.lender: (q.lender_key_id, q.lender_sig),
                    row.borrower: (q.owner_key_id, q.owner_sig),
                },
            }
            for q in pledges
        ],
    }


def loan(conn: Connection, loan_id: str, viewer: str | None = None) -> dict[str, Any] | None:
    """One loan with its assets and band history; with ``viewer``, only for its borrower and lender."""
    stmt = select(iot_loans).where(iot_loans.c.id == loan_id)
    if viewer is not None:
        stmt = stmt.where(or_(iot_loans.c.borrower == viewer, iot_loans.c.lender == viewer))
    row = conn.execute(stmt).first()
    return None if row is None else _loans_json(conn, [row])[0]


def loans_page(
    conn: Connection, viewer: str | None, limit: int, after: Sequence[int | str] | None
) -> list[dict[str, Any]]:
    stmt = select(iot_loans)
    if viewer is not None:
        stmt = stmt.where(or_(iot_loans.c.borrower == viewer, iot_loans.c.lender == viewer))
    if after:
        stmt = stmt.where(after_key([iot_loans.c.id], after))
    rows = conn.execute(stmt.order_by(iot_loans.c.id).limit(limit)).all()
    return _loans_json(conn, rows)


def loans_of_lender(conn: Connection, lender: str) -> list[dict[str, Any]]:
    """The loans ``lender`` granted, by id, each with its assets, band history and ``bands_key``."""
    rows = conn.execute(select(iot_loans).where(iot_loans.c.lender == lender).order_by(iot_loans.c.id)).all()
    return [{**loan, "bands_key": row.bands_key} for loan, row in zip(_loans_json(conn, rows), rows, strict=True)]


def loans_of_borrower(conn: Connection, borrower: str) -> list[dict[str, Any]]:
    """The loans proposed to or accepted by ``borrower``, by id, with their pledge proposals."""
    rows = conn.execute(select(iot_loans).where(iot_loans.c.borrower == borrower).order_by(iot_loans.c.id)).all()
    return _loans_json(conn, rows)


_STOPPING_BANDS = [LtvBand.MARGIN_CALL.value, LtvBand.LIQUIDATION.value]
_ACCEPTED = iot_loans.c.status == ProposalStatus.ACCEPTED.value


def first_stopping_loan(conn: Connection, borrower: str) -> tuple[str, str, int | None] | None:
    """(id, band, LTV) of the borrower's first accepted loan (by id) in the margin-call or liquidation band:
    a loan the borrower did not accept restricts nothing."""
    row = conn.execute(
        select(iot_loans.c.id, iot_loans.c.band, iot_loans.c.ltv_bps)
        .where(iot_loans.c.borrower == borrower, iot_loans.c.band.in_(_STOPPING_BANDS), _ACCEPTED)
        .order_by(iot_loans.c.id)
        .limit(1)
    ).first()
    return None if row is None else (row.id, row.band, row.ltv_bps)


def has_stopping_loan(conn: Connection, borrower: str) -> bool:
    row = conn.execute(
        select(iot_loans.c.id)
        .where(iot_loans.c.borrower == borrower, iot_loans.c.band.in_(_STOPPING_BANDS), _ACCEPTED)
        .limit(1)
    ).first()
    return row is not None


# --- alarms ------------------------------------------------------------------------------------------------------


def _alarm_json(row: Any) -> dict[str, Any]:
    return {
        "alarm_id": row.id,
        "asset_id": row.asset_id,
        "alarm_type": row.alarm_type,
        "severity": row.severity,
        "status": row.status,
        "acknowledged": row.acknowledged,
        "ack_by": row.ack_by,
        "ack_ts_ms": row.ack_ts_ms,
        "raised_ts_ms": row.raised_ts_ms,
        "stored_ms": row.stored_ms,
        "cleared_ts_ms": row.cleared_ts_ms,
        "details": json.loads(row.details_json),
    }


def lock_alarm(conn: Connection, alarm_id: str) -> dict[str, Any] | None:
    """The alarm, its row locked for this transaction."""
    row = conn.execute(select(iot_alarms).where(iot_alarms.c.id == alarm_id).with_for_update()).first()
    return None if row is None else _alarm_json(row)


def alarm(conn: Connection, alarm_id: str, viewer: str | None = None) -> dict[str, Any] | None:
    stmt = select(iot_alarms).where(iot_alarms.c.id == alarm_id)
    if viewer is not None:
        stmt = stmt.where(iot_alarms.c.asset_id.in_(_visible_asset_ids(viewer)))
    row = conn.execute(stmt).first()
    return None if row is None else _alarm_json(row)


def alarms(conn: Connection, asset_id: str | None, active_only: bool, limit: int) -> list[dict[str, Any]]:
    query = select(iot_alarms).order_by(iot_alarms.c.raised_ts_ms.desc(), iot_alarms.c.id).limit(limit)
    if asset_id is not None:
        query = query.where(iot_alarms.c.asset_id == asset_id)
    if active_only:
        query = query.where(iot_alarms.c.status == "active")
    return [_alarm_json(r) for r in conn.execute(query)]


def alarms_of_assets(conn: Connection, asset_ids: Sequence[str], limit_per_asset: int) -> list[dict[str, Any]]:
    """The newest ``limit_per_asset`` alarms (raised time, then id) of each asset, in one query per chunk of
    assets (a window over the asset's alarms)."""
    out: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(asset_ids))):
        ranked = (
            select(
                iot_alarms,
                func.row_number()
                .over(
                    partition_by=iot_alarms.c.asset_id,
                    order_by=(iot_alarms.c.raised_ts_ms.desc(), iot_alarms.c.id),
                )
                .label("n"),
            )
            .where(iot_alarms.c.asset_id.in_(list(chunk)))
            .subquery()
        )
        rows = conn.execute(
            select(ranked).where(ranked.c.n <= limit_per_asset).order_by(ranked.c.raised_ts_ms.desc(), ranked.c.id)
        )
        out += [_alarm_json(r) for r in rows]
    return out


def alarms_page(
    conn: Connection,
    viewer: str | None,
    limit: int,
    after: tuple[int, str] | None,
    asset_id: str | None,
    active_only: bool,
) -> list[dict[str, Any]]:
    """Alarms newest first (raised time, then id), on the assets ``viewer`` may see (all for None)."""
    a = iot_alarms.c
    stmt = select(iot_alarms)
    if viewer is not None:
        stmt = stmt.where(a.asset_id.in_(_visible_asset_ids(viewer)))
    if asset_id is not None:
        stmt = stmt.where(a.asset_id == asset_id)
    if active_only:
        stmt = stmt.where(a.status == "active")
    if after:
        ts, alarm_id = after
        stmt = stmt.where(or_(a.raised_ts_ms < ts, and_(a.raised_ts_ms == ts, a.id > alarm_id)))
    return [_alarm_json(r) for r in conn.execute(stmt.order_by(a.raised_ts_ms.desc(), a.id).limit(limit)).all()]
