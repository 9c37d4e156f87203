"""Who may see what. An organisation never learns that another's object exists: objects it may not
see answer 404 with the very message a missing object gets; role violations on objects it may see
answer 403. Operator and auditor see every certificate and piece (seeing is not acting).

Need to know (issue 13): a holder sees its own pieces, the issuer and the maturity of their certificate;
of the pieces above its own (provenance) it sees the tier, the state and a salted commitment
(`creditflow.ledger.commitments`), never another holder's name or amount; it sees the face value only if
it holds or held the first piece (whose amount is the face). The issuer, the operator and the auditor see
everything. The API (`provenance_view`, `certificate_view`) and the pages use these same functions."""

from __future__ import annotations

from dataclasses import dataclass

from creditflow.bootstrap import App
from creditflow.http.schemas import CertificateOut, ProvenancePieceOut
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


def sees_whole_certificate(who: Principal, cert: Certificate) -> bool:
    """The issuer, the operator and the auditor read every piece of a certificate."""
    return is_overseer(who) or cert.issuer == who.org_id


def reads_piece(who: Principal, cert: Certificate, piece: Piece) -> bool:
    """Whether ``who`` may read ``piece``'s holder and amount: its holder, its sender (who made it), or
    one who sees the whole certificate."""
    return sees_whole_certificate(who, cert) or who.org_id in (piece.holder, piece.sender)


@dataclass(frozen=True, slots=True)
class PieceView:
    """A piece as one viewer may see it: in clear, or redacted to its tier, state and commitment."""

    piece: Piece
    clear: bool
    commitment: str
    salt: str | None

    def out(self) -> ProvenancePieceOut:
        p = self.piece
        return ProvenancePieceOut(
            id=p.id,
            certificate_id=p.certificate_id,
            parent_id=p.parent_id,
            holder=p.holder if self.clear else None,
            sender=p.sender if self.clear else None,
            amount_minor=p.amount_minor if self.clear else None,
            state=p.state,
            frozen=p.frozen,
            tier=p.tier,
            accept_by_ms=p.accept_by_ms if self.clear else None,
            created_seq=p.created_seq,
            closed_seq=p.closed_seq,
            redacted=not self.clear,
            commitment=self.commitment,
            commitment_salt=self.salt,
        )


def provenance_view(app: App, who: Principal, piece: Piece) -> list[PieceView]:
    """The walk from ``piece`` (which the caller may see) up to its certificate's first piece, each piece
    in clear or redacted for ``who``."""
    cert = app.queries.certificate(piece.certificate_id)
    views = []
    for p in app.queries.provenance(piece.id):
        commitment, salt = app.queries.commitment(p)
        clear = reads_piece(who, cert, p)
        views.append(PieceView(p, clear, commitment, salt if clear else None))
    return views


def sees_face(app: App, who: Principal, cert: Certificate) -> bool:
    """The face value (and the payable behind it): the issuer, the overseers, and the first holder."""
    if sees_whole_certificate(who, cert):
        return True
    return reads_piece(who, cert, app.queries.piece(cert.root_piece_id))


def certificate_view(app: App, who: Principal, cert: Certificate) -> CertificateOut:
    out = CertificateOut.model_validate(cert, from_attributes=True)
    if sees_face(app, who, cert):
        return out
    return out.model_copy(update={"face_minor": None, "payable_id": None, "payable_digest": None})


def visible_payable(app: App, who: Principal, payable_id: str) -> Payable:
    """Payables are seen by their debtor and creditor only."""
    payable = app.payables.get_payable(payable_id)
    if who.org_id in (payable.debtor, payable.creditor):
        return payable
    raise payable_not_found(payable_id)
