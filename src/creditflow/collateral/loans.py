"""Loans secured by assets: prices (and their CSV import), loans, pledges, repayments, authorised releases
and the valuation they trigger, the loan queries, and the financing stop for a borrower under an uncured
margin call. One command = one transaction; a `DomainError` changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from creditflow.collateral import store
from creditflow.collateral.assets import IotService, asset_not_found, check_id, positive_quantity_g
from creditflow.collateral.engine import apply_alarm_changes, lock_and_load, save_states
from creditflow.collateral.model import (
    MAX_PRICE_MINOR_PER_KG,
    AssetKind,
    LtvBand,
    check_haircut,
)
from creditflow.collateral.rules import reevaluate
from creditflow.collateral.valuation import LoanEvent, revalue, revalue_loans
from creditflow.kernel.engine import Connection
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger.queries import Page, decode_cursor, page_from


def loan_not_found(loan_id: str) -> NotFound:
    return NotFound(f"no loan {loan_id}", code="loan_not_found", field="loan_id")


class LoanService(IotService):
    # --- prices ------------------------------------------------------------------------------------

    def set_price(
        self, commodity: str, price_minor_per_kg: int, *, ts_ms: int | None = None, source: str = "manual"
    ) -> list[LoanEvent]:
        return self.set_prices([(commodity, price_minor_per_kg, ts_ms)], source=source)

    def set_prices(self, prices: Sequence[tuple[str, int, int | None]], *, source: str) -> list[LoanEvent]:
        now = self._clock.now_ms()
        rows: list[dict[str, Any]] = []
        for n, (commodity, price, ts) in enumerate(prices, start=1):
            check_id(commodity, f"prices[{n}].commodity")
            if isinstance(price, bool) or not isinstance(price, int) or not 0 <= price <= MAX_PRICE_MINOR_PER_KG:
                raise InvalidInput(
                    f"row {n}: price_minor_per_kg must be a whole number of fen",
                    code="invalid_price",
                    field="price_minor_per_kg",
                )
            rows.append(
                {
                    "commodity": commodity,
                    "ts_ms": ts if ts is not None else now,
                    "price_minor_per_kg": price,
                    "source": source[:64],
                }
            )
        if not rows:
            raise InvalidInput("no prices given", code="invalid_price")
        with self._engine.begin() as conn:
            for row in rows:
                existing = store.price_at(conn, row["commodity"], row["ts_ms"])
                if existing is not None:
                    if existing != row["price_minor_per_kg"]:
                        raise Conflict(
                            f"{row['commodity']} already has another price at {row['ts_ms']}",
                            code="price_conflict",
                            field="ts_ms",
                        )
                    continue
                store.insert_price(conn, row)
            ids = store.asset_ids_of_commodities(conn, {r["commodity"] for r in rows})
            lock_and_load(conn, ids)
            events = revalue(conn, ids, self._settings, now, "price")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def import_prices_csv(self, text: str, *, source: str = "csv") -> int:
        """CSV with a header ``commodity,date,price_minor_per_kg`` (date ``YYYY-MM-DD``, 00:00 local)."""
        reader = csv.DictReader(io.StringIO(text))
        need = {"commodity", "date", "price_minor_per_kg"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise InvalidInput(f"the CSV needs the columns {sorted(need)}", code="invalid_csv")
        tz = dt.timezone(dt.timedelta(minutes=self._settings.rule_params().utc_offset_minutes))
        prices: list[tuple[str, int, int | None]] = []
        for n, row in enumerate(reader, start=2):
            try:
                day = dt.date.fromisoformat(row["date"].strip())
                price = int(row["price_minor_per_kg"].strip())
            except ValueError:
                raise InvalidInput(f"line {n}: bad date or price", code="invalid_csv", line=n) from None
            ts = int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)
            prices.append((row["commodity"].strip(), price, ts))
        self.set_prices(prices, source=source)
        return len(prices)

    def price_history(self, commodity: str) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return store.price_history(conn, commodity)

    # --- loans, pledges, repayments, releases --------------------------------------------------------

    def create_loan(
        self, loan_id: str, borrower: str, lender: str, outstanding_minor: int, bands_key: str = "default"
    ) -> None:
        check_id(loan_id, "loan_id")
        check_amount_minor(outstanding_minor, field="outstanding_minor")
        now = self._clock.now_ms()
        values = {
            "id": loan_id,
            "borrower": check_id(borrower, "borrower"),
            "lender": check_id(lender, "lender"),
            "outstanding_minor": outstanding_minor,
            "currency": "CNY",
            "bands_key": bands_key if bands_key in self._settings.ltv_bands_bps else "default",
            "value_minor": 0,
            "ltv_bps": None,
            "band": LtvBand.NORMAL.value,
            "created_ts_ms": now,
            "updated_ts_ms": now,
        }
        with self._engine.begin() as conn:
            if not store.insert_loan(conn, values):
                raise Conflict(f"loan {loan_id} already exists", code="loan_exists", field="loan_id")

    def pledge(self, asset_id: str, loan_id: str, haircut_bps: int) -> list[LoanEvent]:
        check_haircut(haircut_bps)
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loaded = lock_and_load(conn, [asset_id])
            if asset_id not in loaded.contexts:
                raise asset_not_found(asset_id)
            if not store.loan_exists(conn, loan_id):
                raise loan_not_found(loan_id)
            if store.pledged_to(conn, asset_id) is not None:
                raise Conflict(
                    f"asset {asset_id} is already pledged: one receipt, one pledge",
                    code="asset_already_pledged",
                    field="asset_id",
                )
            store.insert_pledge(conn, asset_id, loan_id, haircut_bps, now)
            events = revalue(conn, [asset_id], self._settings, now, "pledge")
            events += revalue_loans(conn, [loan_id], self._settings, now, "pledge")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def repay(self, loan_id: str, amount_minor: int) -> list[LoanEvent]:
        check_amount_minor(amount_minor)
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loan = store.lock_loan(conn, loan_id)
            if loan is None:
                raise loan_not_found(loan_id)
            if amount_minor > loan.outstanding_minor:
                raise InvalidInput(
                    "the repayment exceeds the outstanding amount",
                    code="repayment_exceeds_outstanding",
                    field="amount_minor",
                )
            store.set_outstanding(conn, loan_id, loan.outstanding_minor - amount_minor)
            events = revalue_loans(conn, [loan_id], self._settings, now, "repayment")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def approve_release(self, asset_id: str, quantity_kg: float, approved_by: str) -> dict[str, Any]:
        """The bank lets ``quantity_kg`` leave a warehouse lot: the expected quantity drops, so the matching
        weight drop raises nothing (and an outbound alarm it explains clears after the hold-off)."""
        grams = positive_quantity_g(quantity_kg, "quantity_kg")
        check_id(approved_by, "approved_by")
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loaded = lock_and_load(conn, [asset_id])
            ctx = loaded.contexts.get(asset_id)
            if ctx is None:
                raise asset_not_found(asset_id)
            if ctx.kind is not AssetKind.WAREHOUSE_LOT:
                raise InvalidInput(
                    "only warehouse lots are released by weight", code="not_a_warehouse_lot", field="asset_id"
                )
            if grams > ctx.expected_g:
                raise InvalidInput(
                    "the release exceeds the expected quantity", code="release_exceeds_quantity", field="quantity_kg"
                )
            expected = ctx.expected_g - grams
            store.set_expected_g(conn, asset_id, expected)
            store.insert_release(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "asset_id": asset_id,
                    "quantity_g": grams,
                    "approved_by": approved_by,
                    "ts_ms": now,
                },
            )
            ctx = replace(ctx, expected_g=expected)
            latest = max((ts for ts, _ in loaded.states[asset_id].latest.values()), default=now)
            changes = reevaluate(ctx, loaded.states[asset_id], max(latest, now), self._settings.rule_params())
            notes = apply_alarm_changes(conn, asset_id, changes, now, loaded, self._settings)
            save_states(conn, loaded)
            events = revalue(conn, [asset_id], self._settings, now, "release")
            notes += self._loan_notes(conn, events, now)
        self._publish(notes)
        return {"asset_id": asset_id, "released_g": grams, "expected_g": expected}

    def loan(self, loan_id: str, *, viewer: str | None = None) -> dict[str, Any]:
        """One loan with its assets and band history; with ``viewer``, only for its borrower and lender."""
        with self._engine.connect() as conn:
            found = store.loan(conn, loan_id, viewer)
        if found is None:
            raise loan_not_found(loan_id)
        return found

    def lender_loans(self, lender: str) -> list[dict[str, Any]]:
        """The loans ``lender`` granted, by id, as `loan` shows them, each with its LTV ``bands`` (warning,
        margin-call and liquidation thresholds): one batched read for them all."""
        with self._engine.connect().execution_options(read_only=True) as conn:
            rows = store.loans_of_lender(conn, lender)
        loans = []
        for row in rows:
            bands = self._settings.bands(row.pop("bands_key"))
            row["bands"] = {
                "warning_bps": bands.warning_bps,
                "margin_call_bps": bands.margin_call_bps,
                "liquidation_bps": bands.liquidation_bps,
            }
            loans.append(row)
        return loans

    def loans_page(self, *, viewer: str | None, size: int, cursor: str | None = None) -> Page:
        """Loans by id: those ``viewer`` borrowed or granted (all for None)."""
        after = decode_cursor(cursor, str) if cursor else None
        with self._engine.connect() as conn:
            items = store.loans_page(conn, viewer, size + 1, after)
        return page_from(items, size, lambda x: (x["loan_id"],))

    def financing_restriction(self, borrower: str) -> str | None:
        """`FinancingService.restriction_hook`: why new financing is stopped for ``borrower``, or None."""
        with self._engine.connect() as conn:
            row = store.first_stopping_loan(conn, borrower)
        if row is None:
            return None
        loan_id, band, ltv_bps = row
        ltv = "no collateral value" if ltv_bps is None else f"LTV {ltv_bps / 100:.2f} %"
        return f"margin call not cured on collateral loan {loan_id} ({band}, {ltv})"


def financing_blocked(conn: Connection, borrower: str) -> bool:
    """True while any of the borrower's collateral loans is in the margin-call or liquidation band."""
    return store.has_stopping_loan(conn, borrower)


def check_financing_allowed(conn: Connection, borrower: str) -> None:
    """For the financing service: refuse new financing for a borrower under an uncured margin call."""
    if financing_blocked(conn, borrower):
        raise Conflict(
            f"{borrower} has an uncured margin call on pledged collateral; new financing is stopped",
            code="margin_call_active",
            field="org_id",
        )
