"""SQL for the financing context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here.

Products, limits, ratings and blacklists (set up by banks and the operator), financing requests and agreements,
settlement accounts, payments and clearing runs. Rows come back as the context's own types (`Product`,
`pain001.Account`) or as plain dicts keyed by column name (requests and agreements, which the API shows as they are).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from creditflow.financing import pain001
from creditflow.financing.accounts import PendingChange
from creditflow.financing.policy import Product
from creditflow.financing.tables import (
    bank_blacklist,
    bank_limits,
    bank_products,
    clearing_runs,
    core_ratings,
    financing_agreements,
    financing_requests,
    held_payouts,
    payments,
    payout_releases,
    settlement_account_changes,
    settlement_accounts,
)
from creditflow.kernel.engine import after_key

_IN_CHUNK = 900  # stays under SQLite's bound-parameter limit


# --- products --------------------------------------------------------------------------------------


def _product_from_row(r: Any) -> Product:
    rates = {rating: {int(k): int(v) for k, v in b.items()} for rating, b in json.loads(r.rates_json).items()}
    return Product(
        r.id,
        r.bank,
        r.name,
        rates,
        r.fee_bps,
        r.fee_fixed_minor,
        r.min_minor,
        r.max_minor,
        bool(r.with_recourse),
    )


def insert_product(conn: Connection, product: Product, created_ts_ms: int) -> None:
    """Rates are stored as JSON with the tenor buckets (days) as string keys."""
    conn.execute(
        insert(bank_products).values(
            id=product.id,
            bank=product.bank,
            name=product.name,
            rates_json=json.dumps({r: {str(k): v for k, v in b.items()} for r, b in product.rates_bps.items()}),
            fee_bps=product.fee_bps,
            fee_fixed_minor=product.fee_fixed_minor,
            min_minor=product.min_minor,
            max_minor=product.max_minor,
            with_recourse=product.with_recourse,
            created_ts_ms=created_ts_ms,
        )
    )


def product(conn: Connection, product_id: str) -> Product | None:
    row = conn.execute(select(bank_products).where(bank_products.c.id == product_id)).first()
    return None if row is None else _product_from_row(row)


def products(
    conn: Connection, bank: str | None = None, *, after: Sequence[int | str] | None = None, limit: int | None = None
) -> list[Product]:
    """Products by id (``bank``: of that bank only; ``after``: with an id after that key; at most ``limit``)."""
    stmt = select(bank_products)
    if bank:
        stmt = stmt.where(bank_products.c.bank == bank)
    if after:
        stmt = stmt.where(after_key((bank_products.c.id,), after))
    stmt = stmt.order_by(bank_products.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_product_from_row(r) for r in conn.execute(stmt)]


# --- limits, ratings, blacklists ---------------------------------------------------------------------


def limit_of(conn: Connection, bank: str, core: str) -> tuple[int, int] | None:
    """(limit, used) of the bank's limit to that core enterprise, in fen; None if it has none."""
    row = conn.execute(
        select(bank_limits.c.limit_minor, bank_limits.c.used_minor).where(
            bank_limits.c.bank == bank, bank_limits.c.core == core
        )
    ).first()
    return None if row is None else (int(row.limit_minor), int(row.used_minor))


def insert_limit(conn: Connection, bank: str, core: str, limit_minor: int) -> None:
    conn.execute(insert(bank_limits).values(bank=bank, core=core, limit_minor=limit_minor, used_minor=0))


def update_limit(conn: Connection, bank: str, core: str, limit_minor: int) -> None:
    conn.execute(
        update(bank_limits)
        .where(bank_limits.c.bank == bank, bank_limits.c.core == core)
        .values(limit_minor=limit_minor)
    )


def draw_limit(conn: Connection, bank: str, core: str, amount_minor: int) -> bool:
    """Use ``amount_minor`` of the limit if that much is free (one guarded update, so concurrent draws cannot
    overrun it); False, and nothing changed, if not."""
    drawn = conn.execute(
        update(bank_limits)
        .where(
            bank_limits.c.bank == bank,
            bank_limits.c.core == core,
            bank_limits.c.used_minor + amount_minor <= bank_limits.c.limit_minor,
        )
        .values(used_minor=bank_limits.c.used_minor + amount_minor)
    )
    return drawn.rowcount == 1


def release_limit(conn: Connection, bank: str, core: str, amount_minor: int) -> None:
    """Give ``amount_minor`` back to the limit (never below zero used)."""
    conn.execute(
        update(bank_limits)
        .where(
            bank_limits.c.bank == bank,
            bank_limits.c.core == core,
            bank_limits.c.used_minor >= amount_minor,
        )
        .values(used_minor=bank_limits.c.used_minor - amount_minor)
    )


def rating_of(conn: Connection, core: str) -> str | None:
    rating = conn.execute(select(core_ratings.c.rating).where(core_ratings.c.org_id == core)).scalar()
    return None if rating is None else str(rating)


def replace_rating(conn: Connection, core: str, rating: str, set_ts_ms: int) -> None:
    conn.execute(core_ratings.delete().where(core_ratings.c.org_id == core))
    conn.execute(insert(core_ratings).values(org_id=core, rating=rating, set_ts_ms=set_ts_ms))


def is_blacklisted(conn: Connection, bank: str, org_id: str) -> bool:
    row = conn.execute(
        select(bank_blacklist.c.org_id).where(bank_blacklist.c.bank == bank, bank_blacklist.c.org_id == org_id)
    ).first()
    return row is not None


def replace_blacklist_entry(conn: Connection, bank: str, org_id: str, reason: str) -> None:
    conn.execute(bank_blacklist.delete().where(bank_blacklist.c.bank == bank, bank_blacklist.c.org_id == org_id))
    conn.execute(insert(bank_blacklist).values(bank=bank, org_id=org_id, reason=reason))


# --- requests and agreements -------------------------------------------------------------------------


def insert_request(
    conn: Connection,
    *,
    request_id: str,
    piece_id: str,
    holder: str,
    bank: str,
    product_id: str,
    amount_minor: int,
    status: str,
    reasons: Sequence[Mapping[str, Any]],
    requested_ts_ms: int,
    decision_us: int,
) -> None:
    conn.execute(
        insert(financing_requests).values(
            id=request_id,
            piece_id=piece_id,
            holder=holder,
            bank=bank,
            product_id=product_id,
            amount_minor=amount_minor,
            status=status,
            reasons_json=json.dumps(list(reasons), ensure_ascii=False),
            requested_ts_ms=requested_ts_ms,
            decision_us=decision_us,
        )
    )


def insert_agreement(
    conn: Connection,
    *,
    agreement_id: str,
    piece_id: str,
    bank_piece_id: str,
    certificate_id: str,
    seller: str,
    bank: str,
    core: str,
    product_id: str,
    face_minor: int,
    rate_bps: int,
    days: int,
    interest_minor: int,
    fees_minor: int,
    disbursement_minor: int,
    with_recourse: bool,
    tier: int,
    financed_on: dt.date,
    financed_ts_ms: int,
    agreement_digest: str,
) -> None:
    conn.execute(
        insert(financing_agreements).values(
            id=agreement_id,
            piece_id=piece_id,
            bank_piece_id=bank_piece_id,
            certificate_id=certificate_id,
            seller=seller,
            bank=bank,
            core=core,
            product_id=product_id,
            face_minor=face_minor,
            rate_bps=rate_bps,
            days=days,
            interest_minor=interest_minor,
            fees_minor=fees_minor,
            disbursement_minor=disbursement_minor,
            with_recourse=with_recourse,
            tier=tier,
            financed_on=financed_on,
            financed_ts_ms=financed_ts_ms,
            agreement_digest=agreement_digest,
        )
    )


def _request_from_row(r: Any) -> dict[str, Any]:
    return {**r._mapping, "reasons": json.loads(r.reasons_json)}


def requests(conn: Connection, org_id: str, *, as_bank: bool) -> list[dict[str, Any]]:
    """Requests made by a holder (or received by a bank), oldest first: every column, ``reasons`` decoded."""
    column = financing_requests.c.bank if as_bank else financing_requests.c.holder
    stmt = select(financing_requests).where(column == org_id).order_by(financing_requests.c.requested_ts_ms)
    return [_request_from_row(r) for r in conn.execute(stmt)]


def requests_page(
    conn: Connection, org_id: str, *, as_bank: bool, after: Sequence[int | str] | None, limit: int
) -> list[dict[str, Any]]:
    """At most ``limit`` of `requests`, by (time, id), after the ``after`` key."""
    column = financing_requests.c.bank if as_bank else financing_requests.c.holder
    order = (financing_requests.c.requested_ts_ms, financing_requests.c.id)
    stmt = select(financing_requests).where(column == org_id)
    if after:
        stmt = stmt.where(after_key(order, after))
    return [_request_from_row(r) for r in conn.execute(stmt.order_by(*order).limit(limit))]


def agreements(conn: Connection, *, bank: str | None = None, seller: str | None = None) -> list[dict[str, Any]]:
    """Agreements, oldest first, as dicts of every column (``bank``/``seller``: of that bank or seller only)."""
    stmt = select(financing_agreements).order_by(financing_agreements.c.financed_ts_ms)
    if bank:
        stmt = stmt.where(financing_agreements.c.bank == bank)
    if seller:
        stmt = stmt.where(financing_agreements.c.seller == seller)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def agreements_page(
    conn: Connection, *, bank: str | None, seller: str | None, after: Sequence[int | str] | None, limit: int
) -> list[dict[str, Any]]:
    """At most ``limit`` of `agreements`, by (time, id), after the ``after`` key."""
    order = (financing_agreements.c.financed_ts_ms, financing_agreements.c.id)
    stmt = select(financing_agreements)
    if bank:
        stmt = stmt.where(financing_agreements.c.bank == bank)
    if seller:
        stmt = stmt.where(financing_agreements.c.seller == seller)
    if after:
        stmt = stmt.where(after_key(order, after))
    return [dict(r._mapping) for r in conn.execute(stmt.order_by(*order).limit(limit))]


def all_agreements(conn: Connection) -> list[dict[str, Any]]:
    """Every agreement, in no particular order (the network views)."""
    return [dict(r._mapping) for r in conn.execute(select(financing_agreements))]


def recourse_agreements(conn: Connection) -> dict[str, dict[str, Any]]:
    """Agreements with recourse, by the bank piece they created."""
    rows = conn.execute(select(financing_agreements).where(financing_agreements.c.with_recourse.is_(True)))
    return {r.bank_piece_id: dict(r._mapping) for r in rows}


# --- settlement accounts, payments, clearing runs ----------------------------------------------------


def replace_account(conn: Connection, org_id: str, account: pain001.Account) -> None:
    conn.execute(settlement_accounts.delete().where(settlement_accounts.c.org_id == org_id))
    conn.execute(
        insert(settlement_accounts).values(
            org_id=org_id, account_name=account.name, account_number=account.account_number, bic=account.bic
        )
    )


def accounts(conn: Connection, org_ids: Iterable[str]) -> dict[str, pain001.Account]:
    """The settlement accounts on file among ``org_ids`` (those without one are absent)."""
    wanted = sorted(set(org_ids))
    out: dict[str, pain001.Account] = {}
    for i in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[i : i + _IN_CHUNK]
        for r in conn.execute(select(settlement_accounts).where(settlement_accounts.c.org_id.in_(chunk))):
            out[r.org_id] = pain001.Account(r.account_name, r.account_number, r.bic)
    return out


def is_paid(conn: Connection, certificate_id: str) -> bool:
    row = conn.execute(select(payments.c.certificate_id).where(payments.c.certificate_id == certificate_id)).first()
    return row is not None


def paid_certificate_ids(conn: Connection) -> set[str]:
    return set(conn.scalars(select(payments.c.certificate_id)))


def insert_payment(
    conn: Connection, certificate_id: str, payer: str, amount_minor: int, reference: str, paid_ts_ms: int
) -> None:
    conn.execute(
        insert(payments).values(
            certificate_id=certificate_id,
            payer=payer,
            amount_minor=amount_minor,
            reference=reference,
            paid_ts_ms=paid_ts_ms,
        )
    )


def insert_clearing_run(
    conn: Connection,
    certificate_id: str,
    message_id: str,
    payment_file: bytes | None,
    total_minor: int,
    transfers: int,
    created_ts_ms: int,
) -> None:
    conn.execute(
        insert(clearing_runs).values(
            certificate_id=certificate_id,
            message_id=message_id,
            payment_file=payment_file,
            total_minor=total_minor,
            transfers=transfers,
            created_ts_ms=created_ts_ms,
        )
    )


def clearing_run(conn: Connection, certificate_id: str) -> tuple[str, bytes | None] | None:
    """(message_id, payment file or None when every payout was held) of the certificate's clearing run."""
    row = conn.execute(
        select(clearing_runs.c.message_id, clearing_runs.c.payment_file).where(
            clearing_runs.c.certificate_id == certificate_id
        )
    ).first()
    if row is None:
        return None
    return row.message_id, None if row.payment_file is None else bytes(row.payment_file)


def release_file(conn: Connection, certificate_id: str, message_id: str) -> bytes | None:
    row = conn.execute(
        select(payout_releases.c.payment_file).where(
            payout_releases.c.certificate_id == certificate_id, payout_releases.c.message_id == message_id
        )
    ).first()
    return None if row is None else bytes(row.payment_file)


# --- account changes (the waiting period) ----------------------------------------------------------


def pending_changes(conn: Connection, org_ids: Iterable[str]) -> dict[str, PendingChange]:
    wanted = sorted(set(org_ids))
    out: dict[str, PendingChange] = {}
    c = settlement_account_changes.c
    for i in range(0, len(wanted), _IN_CHUNK):
        for r in conn.execute(select(settlement_account_changes).where(c.org_id.in_(wanted[i : i + _IN_CHUNK]))):
            out[r.org_id] = PendingChange(
                r.org_id,
                r.account_name,
                r.account_number,
                r.bic,
                r.requested_ts_ms,
                r.effective_ts_ms,
                r.requested_by,
            )
    return out


def put_pending_change(conn: Connection, change: PendingChange) -> None:
    delete_pending_change(conn, change.org_id)
    conn.execute(
        insert(settlement_account_changes).values(
            org_id=change.org_id,
            account_name=change.account_name,
            account_number=change.account_number,
            bic=change.bic,
            requested_ts_ms=change.requested_ts_ms,
            effective_ts_ms=change.effective_ts_ms,
            requested_by=change.requested_by,
        )
    )


def delete_pending_change(conn: Connection, org_id: str) -> int:
    c = settlement_account_changes.c
    return conn.execute(settlement_account_changes.delete().where(c.org_id == org_id)).rowcount or 0


# --- held payouts -------------------------------------------------------------------------------------


def insert_held_payout(
    conn: Connection,
    *,
    piece_id: str,
    certificate_id: str,
    holder: str,
    amount_minor: int,
    code: str,
    reason: str,
    held_ts_ms: int,
) -> None:
    conn.execute(
        insert(held_payouts).values(
            piece_id=piece_id,
            certificate_id=certificate_id,
            holder=holder,
            amount_minor=amount_minor,
            code=code,
            reason=reason[:500],
            held_ts_ms=held_ts_ms,
        )
    )


def held_payouts_of(conn: Connection, certificate_id: str) -> list[dict[str, Any]]:
    """Every held payout of the certificate (released ones too), by piece id."""
    h = held_payouts.c
    rows = conn.execute(select(held_payouts).where(h.certificate_id == certificate_id).order_by(h.piece_id))
    return [dict(r._mapping) for r in rows]


def mark_released(conn: Connection, piece_ids: Sequence[str], message_id: str, released_ts_ms: int) -> int:
    h = held_payouts.c
    result = conn.execute(
        update(held_payouts)
        .where(h.piece_id.in_(list(piece_ids)), h.released_message_id.is_(None))
        .values(released_message_id=message_id, released_ts_ms=released_ts_ms)
    )
    return result.rowcount or 0


def insert_release(
    conn: Connection,
    *,
    message_id: str,
    certificate_id: str,
    payment_file: bytes,
    total_minor: int,
    transfers: int,
    created_ts_ms: int,
) -> None:
    conn.execute(
        insert(payout_releases).values(
            message_id=message_id,
            certificate_id=certificate_id,
            payment_file=payment_file,
            total_minor=total_minor,
            transfers=transfers,
            created_ts_ms=created_ts_ms,
        )
    )
