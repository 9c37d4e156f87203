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

from creditflow.kernel.engine import Connection
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound
from creditflow.ledger import reads as ledger
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.certificates import CertificateState, Effects, PieceState, derive_id
from creditflow.ledger.model.state import MemoryState
from creditflow.trade import store

_RELEASING = (CertificateState.VOID, CertificateState.CLEARED)


def check_issue(conn: Connection, op: ops.Issue) -> None:
    status = store.payable_status(conn, op.payable_id)
    if status is None:
        raise NotFound(f"payable {op.payable_id!r} does not exist", code="payable_not_found", field="payable_id")
    if status != "confirmed":
        raise Conflict(
            "the payable has not been confirmed by two users of the core enterprise",
            code="payable_not_confirmed",
            field="payable_id",
        )
    if not store.draw_credit_line(conn, op.actor, op.face_minor):
        line = store.credit_line(conn, op.actor)
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
    found = ledger.parties_by_id(conn, [op.actor, op.to])
    uscc = {org_id: p.uscc for org_id, p in found.items()}
    gross_minor = store.invoice_by_digest(conn, op.trade_ref, uscc.get(op.actor, ""), uscc.get(op.to, ""))
    if gross_minor is None:
        raise Conflict(
            "no imported invoice with this digest from the recipient (seller) to the sender (buyer)",
            code="trade_invoice_not_found",
            field="trade_ref",
        )
    if not store.draw_invoice(conn, op.trade_ref, gross_minor, op.amount_minor):
        raise Conflict(
            "the certificate value already moved against this invoice would exceed its gross amount",
            code="invoice_exhausted",
            field="trade_ref",
        )
    store.cite_invoice(conn, derive_id(op.op_id, "piece/0"), op.trade_ref, op.amount_minor)


def release_trade_reservations(conn: Connection, effects: Effects, before: MemoryState) -> None:
    """Projection: give back credit-line use and invoice use when the value they backed is gone."""
    for cert in effects.certificates:
        old = before.certificate(cert.id)
        if cert.state in _RELEASING and old is not None and old.state not in _RELEASING:
            store.release_credit_line(conn, cert.issuer, cert.face_minor)
    for piece in effects.pieces:
        old_piece = before.piece(piece.id)
        if piece.state in (PieceState.REJECTED, PieceState.EXPIRED) and old_piece is not None and old_piece.live:
            store.release_invoice_use(conn, piece.id)
