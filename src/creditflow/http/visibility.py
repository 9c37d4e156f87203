"""Who may see what. An organisation never learns that another's object exists: objects it may not
see answer 404 with the very message a missing object gets; role violations on objects it may see
answer 403. Operator and auditor see every certificate and piece (seeing is not acting)."""

from __future__ import annotations

from creditflow.bootstrap import App
from creditflow.http.security import is_overseer
from creditflow.identity.access import Principal
from creditflow.kernel.errors import NotFound
from creditflow.ledger.model.certificates import Certificate, Piece
from creditflow.trade.payables import Payable


def piece_not_found(piece_id: str) -> NotFound:
    return NotFound(f"piece {piece_id!r} does not exist", code="piece_not_found", field="piece_id")


def certificate_not_found(certificate_id: str) -> NotFound:
    return NotFound(
        f"certificate {certificate_id!r} does not exist", code="certificate_not_found", field="certificate_id"
    )


def payable_not_found(payable_id: str) -> NotFound:
    return NotFound(f"payable {payable_id!r} does not exist", code="payable_not_found", field="payable_id")


def visible_piece(app: App, who: Principal, piece_id: str) -> Piece:
    """The piece, if the caller is party to it (holder, sender, issuer) or oversees; else 404."""
    piece = app.queries.piece(piece_id)
    if is_overseer(who) or app.queries.is_party_to_piece(who.org_id, piece):
        return piece
    raise piece_not_found(piece_id)


def can_see_certificate(app: App, who: Principal, cert: Certificate) -> bool:
    return is_overseer(who) or cert.issuer == who.org_id or app.queries.has_held(who.org_id, cert.id)


def visible_certificate(app: App, who: Principal, certificate_id: str) -> Certificate:
    cert = app.queries.certificate(certificate_id)
    if can_see_certificate(app, who, cert):
        return cert
    raise certificate_not_found(certificate_id)


def visible_payable(app: App, who: Principal, payable_id: str) -> Payable:
    """Payables are seen by their debtor and creditor only."""
    payable = app.payables.get_payable(payable_id)
    if who.org_id in (payable.debtor, payable.creditor):
        return payable
    raise payable_not_found(payable_id)
