"""Live valuation: asset values and each loan's LTV band, inside the caller's transaction.

`revalue` is called by every command that can move a value (a reading batch, a price, a release, a
repayment, a pledge). Lock order, to keep two workers from deadlocking: asset rows first (by id, taken by
the caller), then loan rows (by id, here). Under the loan-row lock the sum of its assets' values is read
fresh, so two workers valuing different assets of one loan cannot lose either update.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from creditflow.collateral.model import (
    AssetKind,
    LtvBand,
    appraised_value_minor,
    band_for,
    crop_value_minor,
    goods_value_minor,
    ltv_bps,
)
from creditflow.collateral.settings import IotSettings
from creditflow.collateral.tables import iot_assets, iot_loan_events, iot_loans, iot_pledges, iot_prices


@dataclass(frozen=True, slots=True)
class LoanEvent:
    loan_id: str
    borrower: str
    lender: str
    from_band: LtvBand
    to_band: LtvBand
    ltv_bps: int | None
    value_minor: int
    outstanding_minor: int
    ts_ms: int
    cause: str

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "loan_band",
            "loan_id": self.loan_id,
            "borrower": self.borrower,
            "lender": self.lender,
            "from_band": self.from_band.value,
            "to_band": self.to_band.value,
            "ltv_bps": self.ltv_bps,
            "value_minor": self.value_minor,
            "outstanding_minor": self.outstanding_minor,
            "ts_ms": self.ts_ms,
            "cause": self.cause,
        }


def latest_prices(conn: Connection, commodities: Iterable[str]) -> dict[str, int]:
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
        select(iot_prices.c.commodity, iot_prices.c.price_minor_per_kg).join(
            newest, (iot_prices.c.commodity == newest.c.commodity) & (iot_prices.c.ts_ms == newest.c.ts)
        )
    )
    return {r.commodity: int(r.price_minor_per_kg) for r in rows}


def asset_value(row: Any, haircut_bps: int, prices: dict[str, int]) -> int:
    """The lendable value of one asset row (as stored in ``iot_assets``)."""
    kind = AssetKind(row.kind)
    if kind is AssetKind.EQUIPMENT:
        return appraised_value_minor(int(row.appraised_minor or 0), haircut_bps)
    price = prices.get(row.commodity or "", 0)
    if kind is AssetKind.CROP_FIELD:
        return crop_value_minor(int(row.expected_g), price, int(row.health_index), haircut_bps)
    quantity = int(row.measured_g) if row.measured_g is not None else int(row.expected_g)
    return goods_value_minor(quantity, price, haircut_bps)


def revalue(
    conn: Connection, asset_ids: Iterable[str], settings: IotSettings, now_ms: int, cause: str
) -> list[LoanEvent]:
    """Recompute the value of these assets and the LTV of every loan they secure; record band crossings."""
    ids = sorted(set(asset_ids))
    if not ids:
        return []
    rows = conn.execute(
        select(iot_assets, iot_pledges.c.haircut_bps, iot_pledges.c.loan_id)
        .select_from(iot_assets.outerjoin(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id))
        .where(iot_assets.c.id.in_(ids))
    ).all()
    prices = latest_prices(conn, [r.commodity for r in rows if r.commodity])
    loans: set[str] = set()
    changed: list[dict[str, Any]] = []
    for row in rows:
        value = asset_value(row, int(row.haircut_bps or 0), prices)
        if value != row.value_minor:
            changed.append({"a_id": row.id, "v": value})
            if row.loan_id is not None:
                loans.add(row.loan_id)
    if changed:
        conn.execute(
            iot_assets.update()
            .where(iot_assets.c.id == bindparam("a_id"))
            .values(value_minor=bindparam("v"), valued_ts_ms=now_ms),
            changed,
        )
    return revalue_loans(conn, loans, settings, now_ms, cause)


def revalue_loans(
    conn: Connection, loan_ids: Iterable[str], settings: IotSettings, now_ms: int, cause: str
) -> list[LoanEvent]:
    events: list[LoanEvent] = []
    for loan_id in sorted(set(loan_ids)):
        loan = conn.execute(select(iot_loans).where(iot_loans.c.id == loan_id).with_for_update()).one()
        total = conn.execute(
            select(func.coalesce(func.sum(iot_assets.c.value_minor), 0))
            .select_from(iot_assets.join(iot_pledges, iot_pledges.c.asset_id == iot_assets.c.id))
            .where(iot_pledges.c.loan_id == loan_id)
        ).scalar_one()
        value = int(total)
        outstanding = int(loan.outstanding_minor)
        ltv = ltv_bps(outstanding, value)
        current = LtvBand(loan.band)
        band = band_for(ltv, settings.bands(loan.bands_key), current, settings.ltv_hysteresis_bps)
        if value == loan.value_minor and ltv == loan.ltv_bps and band is current:
            continue
        conn.execute(
            iot_loans.update()
            .where(iot_loans.c.id == loan_id)
            .values(value_minor=value, ltv_bps=ltv, band=band.value, updated_ts_ms=now_ms)
        )
        if band is not current:
            event = LoanEvent(
                loan_id, loan.borrower, loan.lender, current, band, ltv, value, outstanding, now_ms, cause
            )
            conn.execute(
                iot_loan_events.insert().values(
                    id=str(uuid.uuid4()),
                    loan_id=loan_id,
                    ts_ms=now_ms,
                    from_band=current.value,
                    to_band=band.value,
                    ltv_bps=ltv,
                    value_minor=value,
                    outstanding_minor=outstanding,
                    cause=cause,
                )
            )
            events.append(event)
    return events


def event_json(event: LoanEvent) -> str:
    return json.dumps(event.to_json(), sort_keys=True)
