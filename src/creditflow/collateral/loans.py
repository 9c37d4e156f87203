"""Loans secured by assets: price books (each bank's own, and the operator's feed) and their CSV import,
loans and pledges as proposals the borrower accepts or refuses (both parties sign the canonical terms with
their held keys), repayments, authorised releases and the valuation they trigger, the loan queries, and the
financing stop for a borrower under an uncured margin call on a loan it accepted. One command = one
transaction; a `DomainError` changes nothing.
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
    ProposalStatus,
    check_haircut,
    consent_message,
    loan_terms,
    pledge_terms,
    terms_digest,
)
from creditflow.collateral.rules import reevaluate
from creditflow.collateral.valuation import LoanEvent, revalue, revalue_loans
from creditflow.kernel.encoding import encode
from creditflow.kernel.engine import Connection
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound, Unavailable
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger import reads as ledger_reads
from creditflow.ledger.queries import Page, decode_cursor, page_from
from creditflow.ledger.signing import Signer, verify_signature


def loan_not_found(loan_id: str) -> NotFound:
    return NotFound(f"no loan {loan_id}", code="loan_not_found", field="loan_id")


def pledge_not_found(loan_id: str, asset_id: str) -> NotFound:
    return NotFound(
        f"no pledge of {asset_id} was proposed for loan {loan_id}", code="pledge_not_found", field="asset_id"
    )


def _terms_bytes(loan: Any) -> bytes:
    """The canonical terms of a loan row; for a loan booked before consent existed, made from the row."""
    if loan.terms is not None:
        return str(loan.terms).encode()
    return encode(
        loan_terms(
            loan.id,
            loan.borrower,
            loan.lender,
            int(loan.outstanding_minor),
            loan.currency,
            loan.bands_key,
            int(loan.created_ts_ms),
        )
    )


class LoanService(IotService):
    # --- prices ------------------------------------------------------------------------------------

    def set_price(
        self,
        commodity: str,
        price_minor_per_kg: int,
        *,
        ts_ms: int | None = None,
        source: str = "manual",
        book: str | None = None,
    ) -> list[LoanEvent]:
        """A price in the operator's feed (``book`` None) or in bank ``book``'s own price book."""
        return self.set_prices([(commodity, price_minor_per_kg, ts_ms)], source=source, book=book)

    def set_prices(
        self, prices: Sequence[tuple[str, int, int | None]], *, source: str, book: str | None = None
    ) -> list[LoanEvent]:
        """Prices into the operator's feed (``book`` None: it values unpledged assets and the loans of every
        bank without a price of its own) or into one bank's book (it values only that bank's loans). Only
        the assets the new prices can value are revalued."""
        if book is not None:
            check_id(book, "book")
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
                existing = store.price_at(conn, row["commodity"], row["ts_ms"], book)
                if existing is not None:
                    if existing != row["price_minor_per_kg"]:
                        raise Conflict(
                            f"{row['commodity']} already has another price at {row['ts_ms']}",
                            code="price_conflict",
                            field="ts_ms",
                        )
                    continue
                store.insert_price(conn, row, book)
            ids = store.asset_ids_of_commodities(conn, {r["commodity"] for r in rows}, lender=book)
            lock_and_load(conn, ids)
            events = revalue(conn, ids, self._settings, now, "price")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def import_prices_csv(self, text: str, *, source: str = "csv", book: str | None = None) -> int:
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
        self.set_prices(prices, source=source, book=book)
        return len(prices)

    def price_history(self, commodity: str, *, book: str | None = None) -> list[dict[str, Any]]:
        """The operator's feed (``book`` None) or one bank's book, oldest first."""
        with self._engine.connect() as conn:
            return store.price_history(conn, commodity, book)

    # --- consent: loans and pledges are proposals until the borrower accepts --------------------------

    def _signer(self, org_id: str, conn: Connection) -> Signer:
        if self._custody is None:
            raise Unavailable("consent signing needs the custody keys on this server", code="custody_unavailable")
        return self._custody.signer(org_id, conn)

    def _sign(self, org_id: str, canonical: bytes, conn: Connection) -> tuple[str, str]:
        """(key id, hex signature) of ``org_id``'s held key over the consent message of these terms."""
        signer = self._signer(org_id, conn)
        return signer.key_id, signer.sign(consent_message(canonical)).hex()

    def create_loan(
        self, loan_id: str, borrower: str, lender: str, outstanding_minor: int, bands_key: str = "default"
    ) -> None:
        """The lender proposes a loan to ``borrower``, signing its terms. It is a proposal: it counts no
        collateral and restricts nothing until the borrower accepts it (`accept_loan`)."""
        check_id(loan_id, "loan_id")
        check_amount_minor(outstanding_minor, field="outstanding_minor")
        check_id(borrower, "borrower")
        check_id(lender, "lender")
        if borrower == lender:
            raise InvalidInput("a bank cannot lend to itself", code="invalid_borrower", field="borrower")
        now = self._clock.now_ms()
        bands = bands_key if bands_key in self._settings.ltv_bands_bps else "default"
        canonical = encode(loan_terms(loan_id, borrower, lender, outstanding_minor, "CNY", bands, now))
        values = {
            "id": loan_id,
            "borrower": borrower,
            "lender": lender,
            "outstanding_minor": outstanding_minor,
            "currency": "CNY",
            "bands_key": bands,
            "value_minor": 0,
            "ltv_bps": None,
            "band": LtvBand.NORMAL.value,
            "created_ts_ms": now,
            "updated_ts_ms": now,
            "status": ProposalStatus.PROPOSED.value,
            "terms": canonical.decode(),
            "terms_digest": terms_digest(canonical),
        }
        with self._engine.begin() as conn:
            if store.loan_exists(conn, loan_id):
                raise Conflict(f"loan {loan_id} already exists", code="loan_exists", field="loan_id")
            values["lender_key_id"], values["lender_sig"] = self._sign(lender, canonical, conn)
            if not store.insert_loan(conn, values):
                raise Conflict(f"loan {loan_id} already exists", code="loan_exists", field="loan_id")

    def _borrowers_loan(self, conn: Connection, loan_id: str, borrower: str) -> Any:
        """The loan row, locked, if ``borrower`` is its borrower: anyone else is told there is no such loan."""
        loan = store.lock_loan_consent(conn, loan_id)
        if loan is None or loan.borrower != borrower:
            raise loan_not_found(loan_id)
        return loan

    def accept_loan(self, loan_id: str, borrower: str) -> None:
        """The borrower accepts a proposed loan and signs its terms: from now on it binds (its LTV band may
        stop the borrower's financing) and pledges to it may be accepted."""
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loan = self._borrowers_loan(conn, loan_id, borrower)
            if loan.status != ProposalStatus.PROPOSED.value:
                raise Conflict(f"loan {loan_id} is already {loan.status}", code="loan_not_proposed")
            canonical = _terms_bytes(loan)
            values: dict[str, Any] = {
                "status": ProposalStatus.ACCEPTED.value,
                "terms": canonical.decode(),
                "terms_digest": terms_digest(canonical),
                "decided_ts_ms": now,
                "updated_ts_ms": now,
            }
            if loan.lender_sig is None:  # booked before consent existed: the lender booked it, so it signs now
                values["lender_key_id"], values["lender_sig"] = self._sign(loan.lender, canonical, conn)
            values["borrower_key_id"], values["borrower_sig"] = self._sign(borrower, canonical, conn)
            store.set_loan_fields(conn, loan_id, values)

    def refuse_loan(self, loan_id: str, borrower: str) -> None:
        """The borrower refuses a proposed loan: it stays on record as refused, with its open pledge
        proposals, and never binds."""
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loan = self._borrowers_loan(conn, loan_id, borrower)
            if loan.status != ProposalStatus.PROPOSED.value:
                raise Conflict(f"loan {loan_id} is already {loan.status}", code="loan_not_proposed")
            store.set_loan_fields(
                conn, loan_id, {"status": ProposalStatus.REFUSED.value, "decided_ts_ms": now, "updated_ts_ms": now}
            )
            store.refuse_open_proposals(conn, loan_id, now)

    def propose_pledge(self, loan_id: str, asset_id: str, haircut_bps: int, lender: str) -> dict[str, Any]:
        """The lender proposes that ``asset_id`` secure its loan, signing the terms. Whatever the asset id
        (absent, the borrower's, someone else's), the proposal is recorded the same way: the answer says
        nothing about which assets exist. Only the asset's owner, accepting it, makes it a pledge."""
        check_id(asset_id, "asset_id")
        check_haircut(haircut_bps)
        now = self._clock.now_ms()
        proposal_id = str(uuid.uuid4())
        with self._engine.begin() as conn:
            loan = store.lock_loan_consent(conn, loan_id)
            if loan is None or loan.lender != lender:
                raise loan_not_found(loan_id)
            if loan.status == ProposalStatus.REFUSED.value:
                raise Conflict(f"loan {loan_id} was refused by its borrower", code="loan_refused")
            loan_digest = terms_digest(_terms_bytes(loan))
            canonical = encode(
                pledge_terms(proposal_id, loan_id, loan_digest, asset_id, haircut_bps, lender, loan.borrower, now)
            )
            key_id, sig = self._sign(lender, canonical, conn)
            values = {
                "id": proposal_id,
                "loan_id": loan_id,
                "asset_id": asset_id,
                "haircut_bps": haircut_bps,
                "status": ProposalStatus.PROPOSED.value,
                "created_ts_ms": now,
                "terms": canonical.decode(),
                "terms_digest": terms_digest(canonical),
                "lender_key_id": key_id,
                "lender_sig": sig,
            }
            open_ = store.lock_pledge_proposal(conn, loan_id, asset_id)
            if (
                open_ is not None and open_.status == ProposalStatus.PROPOSED.value
            ) or not store.insert_pledge_proposal(conn, values):
                raise Conflict(
                    f"a pledge of {asset_id} to loan {loan_id} is already proposed",
                    code="pledge_already_proposed",
                    field="asset_id",
                )
        return {
            "proposal_id": proposal_id,
            "loan_id": loan_id,
            "asset_id": asset_id,
            "haircut_bps": haircut_bps,
            "status": ProposalStatus.PROPOSED.value,
        }

    def accept_pledge(self, loan_id: str, asset_id: str, owner: str) -> list[LoanEvent]:
        """The borrower accepts a proposed pledge of its own asset to its accepted loan and signs it: the
        asset now secures the loan (its value counts) and the lender sees it."""
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loaded = lock_and_load(conn, [asset_id])  # asset rows before loan rows: the one lock order
            loan = self._borrowers_loan(conn, loan_id, owner)
            proposal = store.lock_pledge_proposal(conn, loan_id, asset_id)
            if proposal is None:
                raise pledge_not_found(loan_id, asset_id)
            if proposal.status != ProposalStatus.PROPOSED.value:
                raise Conflict(
                    f"the pledge of {asset_id} to loan {loan_id} is already {proposal.status}",
                    code="pledge_not_proposed",
                    field="asset_id",
                )
            if loan.status != ProposalStatus.ACCEPTED.value:
                raise Conflict(
                    f"loan {loan_id} is {loan.status}: accept the loan before its pledges", code="loan_not_accepted"
                )
            if asset_id not in loaded.contexts or loaded.owners[asset_id] != owner:
                raise asset_not_found(asset_id)  # not the borrower's: as if there were none
            if store.pledged_to(conn, asset_id) is not None:
                raise Conflict(
                    f"asset {asset_id} is already pledged: one receipt, one pledge",
                    code="asset_already_pledged",
                    field="asset_id",
                )
            if proposal.terms is not None:
                canonical = str(proposal.terms).encode()
            else:  # proposed before consent existed: the terms are made now
                loan_digest = terms_digest(_terms_bytes(loan))
                canonical = encode(
                    pledge_terms(
                        proposal.id,
                        loan_id,
                        loan_digest,
                        asset_id,
                        int(proposal.haircut_bps),
                        loan.lender,
                        owner,
                        int(proposal.created_ts_ms),
                    )
                )
            values: dict[str, Any] = {
                "status": ProposalStatus.ACCEPTED.value,
                "decided_ts_ms": now,
                "terms": canonical.decode(),
                "terms_digest": terms_digest(canonical),
            }
            if proposal.lender_sig is None:
                values["lender_key_id"], values["lender_sig"] = self._sign(loan.lender, canonical, conn)
            values["owner_key_id"], values["owner_sig"] = self._sign(owner, canonical, conn)
            store.set_proposal_fields(conn, proposal.id, values)
            store.insert_pledge(conn, asset_id, loan_id, int(proposal.haircut_bps), now)
            events = revalue(conn, [asset_id], self._settings, now, "pledge")
            events += revalue_loans(conn, [loan_id], self._settings, now, "pledge")
            notes = self._loan_notes(conn, events, now)
        self._publish(notes)
        return events

    def refuse_pledge(self, loan_id: str, asset_id: str, owner: str) -> None:
        """The borrower refuses a proposed pledge: it stays on record as refused and binds nothing."""
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            self._borrowers_loan(conn, loan_id, owner)
            proposal = store.lock_pledge_proposal(conn, loan_id, asset_id)
            if proposal is None:
                raise pledge_not_found(loan_id, asset_id)
            if proposal.status != ProposalStatus.PROPOSED.value:
                raise Conflict(
                    f"the pledge of {asset_id} to loan {loan_id} is already {proposal.status}",
                    code="pledge_not_proposed",
                    field="asset_id",
                )
            store.set_proposal_fields(conn, proposal.id, {"status": ProposalStatus.REFUSED.value, "decided_ts_ms": now})

    def verify_consent(self, loan_id: str) -> dict[str, Any]:
        """Check every signature given for a loan and its pledge proposals against the signers' registered
        public keys: ``{"loan": {org: bool}, "pledges": {proposal_id: {org: bool}}}`` (a missing signature
        is False)."""
        with self._engine.connect() as conn:
            found = store.loan_consent(conn, loan_id)
            if found is None:
                raise loan_not_found(loan_id)
            orgs = list(found["loan"]["signatures"])
            keys = {(k.org_id, k.key_id): k.public_key for k in ledger_reads.keys(conn, orgs)}

        def check(terms: str | None, signatures: dict[str, tuple[str | None, str | None]]) -> dict[str, bool]:
            out = {}
            for org, (key_id, sig) in signatures.items():
                public = keys.get((org, key_id or ""))
                out[org] = bool(
                    terms is not None
                    and public is not None
                    and sig is not None
                    and verify_signature(public, consent_message(terms.encode()), bytes.fromhex(sig))
                )
            return out

        return {
            "loan": check(found["loan"]["terms"], found["loan"]["signatures"]),
            "pledges": {p["proposal_id"]: check(p["terms"], p["signatures"]) for p in found["pledges"]},
        }

    def repay(self, loan_id: str, amount_minor: int) -> list[LoanEvent]:
        check_amount_minor(amount_minor)
        now = self._clock.now_ms()
        with self._engine.begin() as conn:
            loan = store.lock_loan(conn, loan_id)
            if loan is None:
                raise loan_not_found(loan_id)
            if loan.status != ProposalStatus.ACCEPTED.value:
                raise Conflict(
                    f"loan {loan_id} is {loan.status}: only an accepted loan takes repayments",
                    code="loan_not_accepted",
                )
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

    def borrower_loans(self, borrower: str) -> list[dict[str, Any]]:
        """The loans proposed to ``borrower`` (and those it accepted or refused), with their pledge proposals."""
        with self._engine.connect().execution_options(read_only=True) as conn:
            return store.loans_of_borrower(conn, borrower)

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
