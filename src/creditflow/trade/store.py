"""SQL for the trade context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from creditflow.kernel.engine import Connection
from creditflow.trade.documents import (
    DocKind,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    PoLine,
    PurchaseOrder,
    ReceiptLine,
    TradeDocument,
    decimal_text,
)
from creditflow.trade.tables import (
    credit_lines,
    invoice_usage,
    payable_approvals,
    payables,
    piece_trade_refs,
    trade_documents,
    trade_lines,
)

CHUNK = 500


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


# --- trade documents --------------------------------------------------------------------------------


class DocumentRace(Exception):
    """Another import stored one of these documents first (the unique key refused an insert); the
    transaction is lost, and looking again finds the stored document."""


class DocumentRecord(NamedTuple):
    id: int
    document: TradeDocument
    digest: str
    imported_by: str
    imported_ts_ms: int


def _doc_values(doc: TradeDocument) -> dict[str, Any]:
    return {
        "kind": doc.kind.value,
        "number": doc.number,
        "buyer_uscc": doc.buyer_uscc,
        "seller_uscc": doc.seller_uscc,
        "doc_date": doc.doc_date,
        "currency": doc.currency,
        "net_minor": doc.net_minor,
        "tax_minor": doc.tax_minor,
        "gross_minor": doc.gross_minor,
        "po_number": doc.po_number,
    }


def _line_values(document_id: int, doc: TradeDocument) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in doc.lines:
        values: dict[str, Any] = {
            "document_id": document_id,
            "line_no": line.line_no,
            "po_line_no": None,
            "item": line.item,
            "quantity": None,
            "unit_price": None,
            "net_minor": None,
            "tax_rate_pct": None,
            "tax_minor": None,
            "gross_minor": None,
            "quantity_received": None,
        }
        if isinstance(line, ReceiptLine):
            values |= {"po_line_no": line.po_line_no, "quantity_received": decimal_text(line.quantity_received)}
        else:
            values |= {
                "quantity": decimal_text(line.quantity),
                "unit_price": decimal_text(line.unit_price),
                "net_minor": line.net_minor,
            }
        if isinstance(line, InvoiceLine):
            values |= {
                "po_line_no": line.po_line_no,
                "tax_rate_pct": line.tax_rate_pct,
                "tax_minor": line.tax_minor,
                "gross_minor": line.gross_minor,
            }
        out.append(values)
    return out


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _document_from_rows(row: Any, lines: Sequence[Any]) -> TradeDocument:
    kind = DocKind(row.kind)
    date = _as_date(row.doc_date)
    ordered = sorted(lines, key=lambda r: r.line_no)
    if kind is DocKind.PO:
        return PurchaseOrder(
            number=row.number,
            buyer_uscc=row.buyer_uscc,
            seller_uscc=row.seller_uscc,
            order_date=date,
            currency=row.currency,
            lines=tuple(
                PoLine(r.line_no, r.item, Decimal(r.quantity), Decimal(r.unit_price), int(r.net_minor)) for r in ordered
            ),
        )
    if kind is DocKind.RECEIPT:
        return GoodsReceipt(
            number=row.number,
            po_number=row.po_number,
            buyer_uscc=row.buyer_uscc,
            seller_uscc=row.seller_uscc,
            receipt_date=date,
            lines=tuple(ReceiptLine(r.line_no, r.po_line_no, r.item, Decimal(r.quantity_received)) for r in ordered),
        )
    return Invoice(
        number=row.number,
        po_number=row.po_number,
        buyer_uscc=row.buyer_uscc,
        seller_uscc=row.seller_uscc,
        invoice_date=date,
        currency=row.currency,
        lines=tuple(
            InvoiceLine(
                r.line_no,
                r.po_line_no,
                r.item,
                Decimal(r.quantity),
                Decimal(r.unit_price),
                int(r.net_minor),
                int(r.tax_rate_pct),
                int(r.tax_minor),
                int(r.gross_minor),
            )
            for r in ordered
        ),
    )


def stored_keys(
    conn: Connection, kind: DocKind, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str, dt.date]]:
    """(seller USCC, number) -> (id, digest, date) of the stored documents of ``kind`` among ``keys``;
    one query per seller and chunk, each on the unique index (kind, seller_uscc, number)."""
    by_seller: dict[str, set[str]] = {}
    for seller, number in keys:
        by_seller.setdefault(seller, set()).add(number)
    found: dict[tuple[str, str], tuple[int, str, dt.date]] = {}
    t = trade_documents
    for seller, numbers in sorted(by_seller.items()):
        for chunk in _chunks(sorted(numbers)):
            rows = conn.execute(
                select(t.c.id, t.c.number, t.c.digest, t.c.doc_date).where(
                    t.c.kind == kind.value, t.c.seller_uscc == seller, t.c.number.in_(chunk)
                )
            )
            for r in rows:
                found[(seller, r.number)] = (int(r.id), r.digest, _as_date(r.doc_date))
    return found


def insert_documents(
    conn: Connection, batch: Sequence[tuple[TradeDocument, str]], imported_by: str, imported_ts_ms: int
) -> list[int]:
    """Store documents (with their digests) and their lines; their new ids, in the order of ``batch``.
    Raises `DocumentRace` when another import stored one of them first."""
    t = trade_documents
    try:
        # one multi-row INSERT ... RETURNING per batch; ids come back in the order of the parameters
        ids = [
            int(i)
            for i in conn.execute(
                t.insert().returning(t.c.id, sort_by_parameter_order=True),
                [
                    {**_doc_values(doc), "digest": digest, "imported_by": imported_by, "imported_ts_ms": imported_ts_ms}
                    for doc, digest in batch
                ],
            )
            .scalars()
            .all()
        ]
        assert len(ids) == len(batch)
        conn.execute(
            trade_lines.insert(),
            [v for (doc, _), doc_id in zip(batch, ids, strict=True) for v in _line_values(doc_id, doc)],
        )
    except IntegrityError as exc:
        raise DocumentRace(str(exc)) from exc
    return ids


def load_documents(
    conn: Connection,
    *,
    document_id: int | None = None,
    kind: DocKind | None = None,
    seller_uscc: str | None = None,
    buyer_uscc: str | None = None,
    number: str | None = None,
    po_number: str | None = None,
    id_below: int | None = None,
) -> list[DocumentRecord]:
    """The stored documents matching every given criterion, with their lines, by id."""
    t = trade_documents
    where: list[ColumnElement[bool]] = []
    if document_id is not None:
        where.append(t.c.id == document_id)
    if kind is not None:
        where.append(t.c.kind == kind.value)
    if seller_uscc is not None:
        where.append(t.c.seller_uscc == seller_uscc)
    if buyer_uscc is not None:
        where.append(t.c.buyer_uscc == buyer_uscc)
    if number is not None:
        where.append(t.c.number == number)
    if po_number is not None:
        where.append(t.c.po_number == po_number)
    if id_below is not None:
        where.append(t.c.id < id_below)
    rows = conn.execute(select(t).where(and_(*where)).order_by(t.c.id)).all()
    if not rows:
        return []
    lines: dict[int, list[Any]] = {int(r.id): [] for r in rows}
    for chunk in _chunks([int(r.id) for r in rows]):
        for line in conn.execute(select(trade_lines).where(trade_lines.c.document_id.in_(chunk))):
            lines[int(line.document_id)].append(line)
    return [
        DocumentRecord(
            id=int(r.id),
            document=_document_from_rows(r, lines[int(r.id)]),
            digest=r.digest,
            imported_by=r.imported_by,
            imported_ts_ms=int(r.imported_ts_ms),
        )
        for r in rows
    ]


def invoice_by_digest(conn: Connection, digest: str, buyer_uscc: str, seller_uscc: str) -> int | None:
    """The gross amount of the imported invoice with this digest between this buyer and seller, if any."""
    t = trade_documents
    row = conn.execute(
        select(t.c.id, t.c.gross_minor).where(
            t.c.kind == "invoice", t.c.digest == digest, t.c.buyer_uscc == buyer_uscc, t.c.seller_uscc == seller_uscc
        )
    ).first()
    return None if row is None else int(row.gross_minor)


# --- invoice use (no double financing) ---------------------------------------------------------------


def draw_invoice(conn: Connection, trade_ref: str, gross_minor: int, amount_minor: int) -> bool:
    """Move ``amount_minor`` against the invoice ``trade_ref``, if it stays within its gross amount (a
    guarded ``UPDATE``; the usage row is created at the first citation). False if it would not."""
    if conn.execute(select(invoice_usage.c.trade_ref).where(invoice_usage.c.trade_ref == trade_ref)).first() is None:
        conn.execute(insert(invoice_usage).values(trade_ref=trade_ref, gross_minor=gross_minor, used_minor=0))
    used = conn.execute(
        update(invoice_usage)
        .where(
            invoice_usage.c.trade_ref == trade_ref,
            invoice_usage.c.used_minor + amount_minor <= invoice_usage.c.gross_minor,
        )
        .values(used_minor=invoice_usage.c.used_minor + amount_minor)
    )
    return bool(used.rowcount == 1)


def cite_invoice(conn: Connection, piece_id: str, trade_ref: str, amount_minor: int) -> None:
    """Record that the piece ``piece_id`` moved ``amount_minor`` against the invoice ``trade_ref``."""
    conn.execute(insert(piece_trade_refs).values(piece_id=piece_id, trade_ref=trade_ref, amount_minor=amount_minor))


def release_invoice_use(conn: Connection, piece_id: str) -> None:
    """Give back what the piece moved against the invoice it cited (nothing if it cited none)."""
    ref = conn.execute(select(piece_trade_refs).where(piece_trade_refs.c.piece_id == piece_id)).first()
    if ref is not None:
        conn.execute(
            update(invoice_usage)
            .where(invoice_usage.c.trade_ref == ref.trade_ref)
            .values(used_minor=invoice_usage.c.used_minor - ref.amount_minor)
        )


# --- credit lines ------------------------------------------------------------------------------------


class CreditLine(NamedTuple):
    limit_minor: int
    used_minor: int


def credit_line(conn: Connection, org_id: str) -> CreditLine | None:
    row = conn.execute(select(credit_lines).where(credit_lines.c.org_id == org_id)).first()
    return None if row is None else CreditLine(int(row.limit_minor), int(row.used_minor))


def set_credit_line(conn: Connection, org_id: str, limit_minor: int, used_minor: int, set_ts_ms: int) -> None:
    conn.execute(credit_lines.delete().where(credit_lines.c.org_id == org_id))
    conn.execute(
        insert(credit_lines).values(org_id=org_id, limit_minor=limit_minor, used_minor=used_minor, set_ts_ms=set_ts_ms)
    )


def draw_credit_line(conn: Connection, org_id: str, amount_minor: int) -> bool:
    """Use ``amount_minor`` of the credit line if it stays within the limit (a guarded ``UPDATE``)."""
    drawn = conn.execute(
        update(credit_lines)
        .where(credit_lines.c.org_id == org_id, credit_lines.c.used_minor + amount_minor <= credit_lines.c.limit_minor)
        .values(used_minor=credit_lines.c.used_minor + amount_minor)
    )
    return bool(drawn.rowcount == 1)


def release_credit_line(conn: Connection, org_id: str, amount_minor: int) -> None:
    conn.execute(
        update(credit_lines)
        .where(credit_lines.c.org_id == org_id, credit_lines.c.used_minor >= amount_minor)
        .values(used_minor=credit_lines.c.used_minor - amount_minor)
    )


# --- payables and their approvals ------------------------------------------------------------------------


def payable_status(conn: Connection, payable_id: str) -> str | None:
    """The payable's status (draft, matched, confirmed), or None if there is no such payable."""
    status = conn.execute(select(payables.c.status).where(payables.c.id == payable_id)).scalar()
    return None if status is None else str(status)


def set_payable_status(conn: Connection, payable_id: str, status: str) -> None:
    conn.execute(update(payables).where(payables.c.id == payable_id).values(status=status))


def set_payable_invoice(conn: Connection, payable_id: str, invoice_id: str) -> None:
    conn.execute(update(payables).where(payables.c.id == payable_id).values(invoice_id=invoice_id))


def approvers(conn: Connection, payable_id: str) -> set[str]:
    """The users who approved the payable so far."""
    return set(conn.scalars(select(payable_approvals.c.user_id).where(payable_approvals.c.payable_id == payable_id)))


def add_approval(
    conn: Connection,
    payable_id: str,
    user_id: str,
    approved_ts_ms: int,
    *,
    auth: str,
    credential: str | None,
    ordinal: int,
) -> None:
    conn.execute(
        insert(payable_approvals).values(
            payable_id=payable_id,
            user_id=user_id,
            approved_ts_ms=approved_ts_ms,
            auth=auth,
            credential=credential,
            ordinal=ordinal,
        )
    )


class ApprovalRow(NamedTuple):
    user_id: str
    approved_ts_ms: int
    auth: str
    credential: str | None


def approvals(conn: Connection, payable_id: str) -> list[ApprovalRow]:
    """The payable's approvals in the order they were given: who, when, how they were authenticated."""
    a = payable_approvals.c
    rows = conn.execute(
        select(a.user_id, a.approved_ts_ms, a.auth, a.credential)
        .where(a.payable_id == payable_id)
        .order_by(a.ordinal, a.approved_ts_ms, a.user_id)
    )
    return [ApprovalRow(r.user_id, int(r.approved_ts_ms), r.auth, r.credential) for r in rows]


def lock_payable_status(conn: Connection, payable_id: str) -> str | None:
    """The payable's status with its row locked (PostgreSQL), so that two approvals of one payable are
    counted one after the other; None if there is no such payable."""
    status = conn.execute(select(payables.c.status).where(payables.c.id == payable_id).with_for_update()).scalar()
    return None if status is None else str(status)


class PayableRow(NamedTuple):
    id: str
    debtor: str
    creditor: str
    amount_minor: int
    currency: str
    reference: str
    digest: str
    issued_minor: int
    status: str
    created_by: str | None = None


class AwaitingRow(NamedTuple):
    id: str
    creditor: str
    amount_minor: int
    currency: str
    reference: str
    status: str
    created_ts_ms: int
    approved_by: tuple[str, ...]
    created_by: str | None = None


def _payable_row(r: Any) -> PayableRow:
    return PayableRow(
        r.id,
        r.debtor,
        r.creditor,
        r.amount_minor,
        r.currency,
        r.reference,
        r.digest,
        r.issued_minor,
        r.status,
        r.created_by,
    )


def load_payable(conn: Connection, payable_id: str) -> PayableRow | None:
    row = conn.execute(select(payables).where(payables.c.id == payable_id)).first()
    return None if row is None else _payable_row(row)


def insert_payable(conn: Connection, payable: PayableRow, created_ts_ms: int) -> None:
    conn.execute(payables.insert().values(**payable._asdict(), created_ts_ms=created_ts_ms))


def draw_payable(conn: Connection, payable_id: str, face_minor: int) -> bool:
    """Issue ``face_minor`` against the payable if it stays within its amount (a guarded ``UPDATE``)."""
    result = conn.execute(
        update(payables)
        .where(payables.c.id == payable_id, payables.c.issued_minor + face_minor <= payables.c.amount_minor)
        .values(issued_minor=payables.c.issued_minor + face_minor)
    )
    return bool(result.rowcount == 1)


def release_payable(conn: Connection, payable_id: str, face_minor: int) -> None:
    conn.execute(
        update(payables).where(payables.c.id == payable_id).values(issued_minor=payables.c.issued_minor - face_minor)
    )


def issued_by_payable(conn: Connection) -> list[tuple[str, int]]:
    """(id, issued_minor) of every payable."""
    return [(r.id, int(r.issued_minor)) for r in conn.execute(select(payables.c.id, payables.c.issued_minor))]


def awaiting_payables(conn: Connection, debtor: str, after: tuple[int, str] | None, limit: int) -> list[AwaitingRow]:
    """The debtor's payables not confirmed yet, by (created_ts_ms, id) strictly after ``after``, at most
    ``limit``, each with the users who approved it so far (in approval order)."""
    stmt = select(payables).where(payables.c.debtor == debtor, payables.c.status != "confirmed")
    if after is not None:
        ts, pid = after
        stmt = stmt.where(or_(payables.c.created_ts_ms > ts, and_(payables.c.created_ts_ms == ts, payables.c.id > pid)))
    stmt = stmt.order_by(payables.c.created_ts_ms, payables.c.id).limit(limit)
    rows = list(conn.execute(stmt))
    approvals: dict[str, list[str]] = {r.id: [] for r in rows}
    if rows:
        found = conn.execute(
            select(payable_approvals.c.payable_id, payable_approvals.c.user_id)
            .where(payable_approvals.c.payable_id.in_(list(approvals)))
            .order_by(payable_approvals.c.ordinal, payable_approvals.c.approved_ts_ms, payable_approvals.c.user_id)
        )
        for payable_id, user_id in found:
            approvals[payable_id].append(user_id)
    return [
        AwaitingRow(
            r.id,
            r.creditor,
            int(r.amount_minor),
            r.currency,
            r.reference,
            r.status,
            int(r.created_ts_ms),
            tuple(approvals[r.id]),
            r.created_by,
        )
        for r in rows
    ]


# --- for financing ---


def pieces_citing_trade(conn: Connection, piece_ids: Iterable[str]) -> set[str]:
    """Those of ``piece_ids`` whose transfer cited a trade invoice."""
    wanted = sorted(set(piece_ids))
    cited: set[str] = set()
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        cited.update(conn.scalars(select(piece_trade_refs.c.piece_id).where(piece_trade_refs.c.piece_id.in_(chunk))))
    return cited
