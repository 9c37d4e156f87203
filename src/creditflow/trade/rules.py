"""The trade rules the ledger enforces when `enforce_trade_rules` is on (the default).

* an issue rests on a payable confirmed by two users of the core enterprise (maker-checker), and the
  issuer's live certificates plus the new one stay within its credit line (授信额度);
* a transfer up the chain cites a trade invoice (`trade_ref` = the invoice's digest) whose buyer is the
  sender and whose seller is the recipient, and across the whole platform the value moved against one
  invoice never exceeds its gross amount (no double financing on the same invoice).

Each check is a precheck run inside the sequencer's transaction (so concurrent requests serialise on
the log head and cannot both pass), reserving with a guarded ``UPDATE``; the projections give the
reservation back when a certificate goes void or is cleared, or a cited transfer is rejected or expires.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from creditflow.kernel.errors import Conflict, InvalidInput, NotFound
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.certificates import CertificateState, Effects, PieceState, derive_id
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.tables import parties
from creditflow.trade.tables import credit_lines, invoice_usage, payables, piece_trade_refs, trade_documents

_RELEASING = (CertificateState.VOID, CertificateState.CLEARED)


def check_issue(conn: Connection, op: ops.Issue) -> None:
    status = conn.execute(select(payables.c.status).where(payables.c.id == op.payable_id)).scalar()
    if status is None:
        raise NotFound(f"payable {op.payable_id!r} does not exist", code="payable_not_found", field="payable_id")
    if status != "confirmed":
        raise Conflict(
            "the payable has not been confirmed by two users of the core enterprise",
            code="payable_not_confirmed",
            field="payable_id",
        )
    drawn = conn.execute(
        update(credit_lines)
        .where(
            credit_lines.c.org_id == op.actor, credit_lines.c.used_minor + op.face_minor <= credit_lines.c.limit_minor
        )
        .values(used_minor=credit_lines.c.used_minor + op.face_minor)
    )
    if drawn.rowcount != 1:
        line = conn.execute(select(credit_lines).where(credit_lines.c.org_id == op.actor)).first()
        if line is None:
            raise Conflict("the core enterprise has no credit line", code="no_credit_line", field="face_minor")
        raise Conflict(
            f"outstanding plus this certificate would exceed the credit line "
            f"({line.limit_minor - line.used_minor} fen free)",
            code="credit_line_exceeded",
            field="face_minor",
        )


def check_transfer(conn: Connection, op: ops.Transfer) -> None:
    if op.trade_ref is None:
        raise InvalidInput(
            "a transfer must cite the trade invoice it pays (trade_ref: the invoice's digest)",
            code="trade_ref_required",
            field="trade_ref",
        )
    uscc = dict(
        conn.execute(select(parties.c.org_id, parties.c.uscc).where(parties.c.org_id.in_([op.actor, op.to]))).all()
    )
    invoice = conn.execute(
        select(trade_documents.c.id, trade_documents.c.gross_minor).where(
            trade_documents.c.kind == "invoice",
            trade_documents.c.digest == op.trade_ref,
            trade_documents.c.buyer_uscc == uscc.get(op.actor, ""),
            trade_documents.c.seller_uscc == uscc.get(op.to, ""),
        )
    ).first()
    if invoice is None:
        raise Conflict(
            "no imported invoice with this digest from the recipient (seller) to the sender (buyer)",
            code="trade_invoice_not_found",
            field="trade_ref",
        )
    if conn.execute(select(invoice_usage.c.trade_ref).where(invoice_usage.c.trade_ref == op.trade_ref)).first() is None:
        conn.execute(
            insert(invoice_usage).values(trade_ref=op.trade_ref, gross_minor=invoice.gross_minor, used_minor=0)
        )
    used = conn.execute(
        update(invoice_usage)
        .where(
            invoice_usage.c.trade_ref == op.trade_ref,
            invoice_usage.c.used_minor + op.amount_minor <= invoice_usage.c.gross_minor,
        )
        .values(used_minor=invoice_usage.c.used_minor + op.amount_minor)
    )
    if used.rowcount != 1:
        raise Conflict(
            "the certificate value already moved against this invoice would exceed its gross amount",
            code="invoice_exhausted",
            field="trade_ref",
        )
    conn.execute(
        insert(piece_trade_refs).values(
            piece_id=derive_id(op.op_id, "piece/0"), trade_ref=op.trade_ref, amount_minor=op.amount_minor
        )
    )


def release_trade_reservations(conn: Connection, effects: Effects, before: MemoryState) -> None:
    """Projection: give back credit-line use and invoice use when the value they backed is gone."""
    for cert in effects.certificates:
        old = before.certificate(cert.id)
        if cert.state in _RELEASING and old is not None and old.state not in _RELEASING:
            conn.execute(
                update(credit_lines)
                .where(credit_lines.c.org_id == cert.issuer, credit_lines.c.used_minor >= cert.face_minor)
                .values(used_minor=credit_lines.c.used_minor - cert.face_minor)
            )
    for piece in effects.pieces:
        old_piece = before.piece(piece.id)
        if piece.state in (PieceState.REJECTED, PieceState.EXPIRED) and old_piece is not None and old_piece.live:
            ref = conn.execute(select(piece_trade_refs).where(piece_trade_refs.c.piece_id == piece.id)).first()
            if ref is not None:
                conn.execute(
                    update(invoice_usage)
                    .where(invoice_usage.c.trade_ref == ref.trade_ref)
                    .values(used_minor=invoice_usage.c.used_minor - ref.amount_minor)
                )
