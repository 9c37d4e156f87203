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

from creditflow.collateral import store
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
from creditflow.collateral.store import ValuedAsset, price_sources
from creditflow.kernel.engine import Connection


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


def asset_value(row: ValuedAsset, haircut_bps: int, prices: dict[str, int]) -> int:
    """The lendable value of one asset (as stored in ``iot_assets``), with ``prices`` by commodity."""
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
    rows = store.assets_to_value(conn, ids)
    # A pledged asset is valued with its lender's price book (the operator's feed where the bank keeps no
    # price of its own), an unpledged one with the feed: one bank's price never moves another bank's loan.
    sources = price_sources(conn, [(r.lender, r.commodity) for r in rows if r.commodity])
    loans: set[str] = set()
    changed: dict[str, int] = {}
    for row in rows:
        found = sources.get((row.lender, row.commodity or ""))
        prices = {row.commodity: int(found["price_minor_per_kg"])} if found and row.commodity else {}
        value = asset_value(row, int(row.haircut_bps or 0), prices)
        if value != row.value_minor:
            changed[row.id] = value
            if row.loan_id is not None:
                loans.add(row.loan_id)
    store.set_asset_values(conn, changed, now_ms)
    return revalue_loans(conn, loans, settings, now_ms, cause)


def revalue_loans(
    conn: Connection, loan_ids: Iterable[str], settings: IotSettings, now_ms: int, cause: str
) -> list[LoanEvent]:
    events: list[LoanEvent] = []
    for loan_id in sorted(set(loan_ids)):
        loan = store.lock_loan(conn, loan_id)
        assert loan is not None, "revalued loans exist"
        value = store.pledged_value(conn, loan_id)
        outstanding = int(loan.outstanding_minor)
        ltv = ltv_bps(outstanding, value)
        current = LtvBand(loan.band)
        band = band_for(ltv, settings.bands(loan.bands_key), current, settings.ltv_hysteresis_bps)
        if value == loan.value_minor and ltv == loan.ltv_bps and band is current:
            continue
        store.set_loan_valuation(conn, loan_id, value, ltv, band.value, now_ms)
        if band is not current:
            event = LoanEvent(
                loan_id, loan.borrower, loan.lender, current, band, ltv, value, outstanding, now_ms, cause
            )
            store.insert_loan_event(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "loan_id": loan_id,
                    "ts_ms": now_ms,
                    "from_band": current.value,
                    "to_band": band.value,
                    "ltv_bps": ltv,
                    "value_minor": value,
                    "outstanding_minor": outstanding,
                    "cause": cause,
                },
            )
            events.append(event)
    return events


def event_json(event: LoanEvent) -> str:
    return json.dumps(event.to_json(), sort_keys=True)
