"""Certificates (数字债权凭证) as trees of immutable pieces, and the rules every operation must obey.

This module is the deterministic heart of the ledger: `apply` takes one parsed operation, the time and
position the sequencer gave it, and a read-only view of current state, and returns the `Effects` to
write, or raises a `DomainError` and changes nothing. The live service and the offline replay in
`creditflow verify` run exactly this code, which is why the read model can be re-derived and compared.

Only *structural* rules live here (who may act, conservation, states, maturity). Policy limits that a
deployment may tune later (split fan-out, longest tenor, acceptance window) are checked by the service
before an operation is signed into the log, so that changing the config never makes old entries invalid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from creditflow.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from creditflow.ledger.model.operations import (
    Accept,
    Clear,
    Expire,
    Finance,
    Freeze,
    Issue,
    MarkOverdue,
    Operation,
    RegisterParty,
    Reject,
    Revoke,
    RotateKey,
    Split,
    Transfer,
    Unfreeze,
)
from creditflow.ledger.model.parties import HOLDER_ROLES, PLATFORM, Party, PartyKey, Role

CHINA_TZ = dt.timezone(dt.timedelta(hours=8))


class PieceState(StrEnum):
    PENDING = "pending"  # sent, waiting for the recipient to accept
    ACTIVE = "active"  # accepted, held
    SPENT = "spent"  # consumed by a transfer or split
    REJECTED = "rejected"  # refused by the recipient; value returned to the sender
    EXPIRED = "expired"  # not accepted before its deadline; value returned to the sender
    REVOKED = "revoked"  # the issuer withdrew the certificate before acceptance
    OVERDUE = "overdue"  # matured unpaid: still owed by the issuer, frozen in place
    CLEARED = "cleared"  # paid at maturity from the issuer's payment


# Pieces whose value the issuer still owes. Conservation: these plus the cleared ones add up to the face value.
LIVE_STATES = frozenset({PieceState.PENDING, PieceState.ACTIVE, PieceState.OVERDUE})


class CertificateState(StrEnum):
    PENDING = "pending"  # the first piece awaits acceptance
    OUTSTANDING = "outstanding"  # accepted: the issuer owes the face value
    VOID = "void"  # revoked, rejected or expired before acceptance: nothing is owed
    OVERDUE = "overdue"  # matured and not paid
    CLEARED = "cleared"  # paid: every holder has been paid


@dataclass(frozen=True, slots=True)
class Certificate:
    id: str
    issuer: str
    face_minor: int
    currency: str
    issue_date: dt.date
    maturity_date: dt.date
    payable_id: str
    payable_digest: str
    root_piece_id: str
    state: CertificateState
    created_seq: int


@dataclass(frozen=True, slots=True)
class Piece:
    id: str
    certificate_id: str
    parent_id: str | None
    holder: str
    sender: str | None  # who sent a pending piece; value goes back to them on reject/expiry
    amount_minor: int
    state: PieceState
    frozen: bool
    tier: int  # distance of the holder from the issuer along the flow of pieces (tier 1 = direct supplier)
    accept_by_ms: int | None
    created_seq: int
    closed_seq: int | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True, slots=True)
class PieceEvent:
    """Something that happened to an existing piece (accepted, transferred, split, frozen, ...).
    A piece's creation is not an event row: the piece itself records the entry that created it."""

    seq: int
    piece_id: str
    event: str
    actor: str
    ts_ms: int


class StateView(Protocol):
    """Read access to current state; implemented in memory (replay, tests) and by SQL batches."""

    def piece(self, piece_id: str) -> Piece | None: ...
    def certificate(self, certificate_id: str) -> Certificate | None: ...
    def party(self, org_id: str) -> Party | None: ...
    def keys(self, org_id: str) -> list[PartyKey]: ...


@dataclass(slots=True)
class Effects:
    pieces: list[Piece] = field(default_factory=list)  # new or replaced pieces
    certificates: list[Certificate] = field(default_factory=list)
    parties: list[Party] = field(default_factory=list)
    keys: list[PartyKey] = field(default_factory=list)
    events: list[PieceEvent] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Context:
    """Where the sequencer placed the operation: its log index and the platform time."""

    seq: int
    ts_ms: int

    @property
    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.ts_ms / 1000, CHINA_TZ).date()


def derive_id(op_id: str, label: str) -> str:
    """Ids of things an operation creates are derived from its op_id, so replay re-creates the same ids
    and clients need not invent them (op_ids are unique in the log)."""
    digest = hashlib.sha256(f"creditflow/id/v1\x00{op_id}\x00{label}".encode()).digest()
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8 (RFC 9562: custom, here SHA-256 based)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    return str(uuid.UUID(bytes=bytes(raw)))


# --------------------------------------------------------------------------------------------------
# helpers


def _party(state: StateView, org_id: str, *, field_name: str) -> Party:
    party = state.party(org_id)
    if party is None:
        raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field=field_name)
    return party


def _piece(state: StateView, piece_id: str) -> Piece:
    piece = state.piece(piece_id)
    if piece is None:
        raise NotFound(f"piece {piece_id!r} does not exist", code="piece_not_found", field="piece_id")
    return piece


def _certificate(state: StateView, certificate_id: str) -> Certificate:
    cert = state.certificate(certificate_id)
    if cert is None:
        raise NotFound(
            f"certificate {certificate_id!r} does not exist",
            code="certificate_not_found",
            field="certificate_id",
        )
    return cert


def _check_movable(state: StateView, piece: Piece, actor: str, ctx: Context, *, want: PieceState) -> Certificate:
    """The checks every holder action shares, in a fixed order so that the error is predictable."""
    if piece.holder != actor:
        raise Forbidden("only the holder of a piece may act on it", code="not_holder", field="piece_id")
    if piece.state != want:
        if piece.state == PieceState.SPENT:
            raise Conflict("the piece has already been spent", code="piece_already_spent", field="piece_id")
        if piece.state == PieceState.PENDING:
            raise Conflict("the piece has not been accepted yet", code="piece_pending", field="piece_id")
        if piece.state == PieceState.ACTIVE:
            raise Conflict("the piece is not pending", code="piece_not_pending", field="piece_id")
        raise Conflict(f"the piece is {piece.state.value}", code="piece_not_live", field="piece_id")
    if piece.frozen:
        raise Conflict("the piece is frozen", code="piece_frozen", field="piece_id")
    cert = _certificate(state, piece.certificate_id)
    if ctx.today >= cert.maturity_date:
        raise Conflict(
            f"the certificate matured on {cert.maturity_date.isoformat()}; nothing moves after maturity",
            code="certificate_matured",
        )
    return cert


def _check_recipient(state: StateView, to: str, cert: Certificate, sender: str) -> Party:
    party = _party(state, to, field_name="to")
    if party.role not in HOLDER_ROLES:
        raise InvalidInput(f"a {party.role.value} cannot hold certificates", code="invalid_recipient", field="to")
    if to == sender:
        raise InvalidInput("cannot send a piece to yourself", code="invalid_recipient", field="to")
    if to == cert.issuer:
        raise InvalidInput("cannot send a piece back to its issuer", code="invalid_recipient", field="to")
    return party


def _event(ctx: Context, piece_id: str, event: str, actor: str) -> PieceEvent:
    return PieceEvent(seq=ctx.seq, piece_id=piece_id, event=event, actor=actor, ts_ms=ctx.ts_ms)


def _close(piece: Piece, state: PieceState, ctx: Context) -> Piece:
    return replace(piece, state=state, closed_seq=ctx.seq)


# --------------------------------------------------------------------------------------------------
# the operations


def _register_party(op: RegisterParty, state: StateView, ctx: Context) -> Effects:
    if op.actor != PLATFORM:
        raise Forbidden("only the platform registers organisations", code="role_not_allowed")
    if op.org_id == PLATFORM:
        raise InvalidInput(f"{PLATFORM!r} is reserved for the platform itself", code="invalid_input", field="org_id")
    if state.party(op.org_id) is not None:
        raise Conflict(f"organisation {op.org_id!r} is already registered", code="party_exists", field="org_id")
    party = Party(org_id=op.org_id, name=op.name, role=op.role, uscc=op.uscc, created_seq=ctx.seq)
    key = PartyKey(org_id=op.org_id, key_id=op.key_id, public_key=op.public_key, valid_from_seq=ctx.seq)
    return Effects(parties=[party], keys=[key], result={"org_id": op.org_id, "key_id": op.key_id})


def _rotate_key(op: RotateKey, state: StateView, ctx: Context) -> Effects:
    if op.actor not in (op.org_id, PLATFORM):
        raise Forbidden("only the organisation itself or the platform rotates its key", code="role_not_allowed")
    _party(state, op.org_id, field_name="org_id")
    keys = state.keys(op.org_id)
    if any(k.key_id == op.key_id for k in keys):
        raise Conflict(f"key id {op.key_id!r} was used before", code="key_exists", field="key_id")
    if any(k.public_key == op.public_key for k in keys):
        raise Conflict("this public key was registered before", code="key_exists", field="public_key")
    retired = [replace(k, revoked_at_seq=ctx.seq + 1) for k in keys if k.revoked_at_seq is None]
    new = PartyKey(org_id=op.org_id, key_id=op.key_id, public_key=op.public_key, valid_from_seq=ctx.seq + 1)
    return Effects(keys=[*retired, new], result={"org_id": op.org_id, "key_id": op.key_id})


def _issue(op: Issue, state: StateView, ctx: Context) -> Effects:
    issuer = _party(state, op.actor, field_name="actor")
    if issuer.role != Role.CORE_ENTERPRISE:
        raise Forbidden("only a core enterprise issues certificates", code="role_not_allowed")
    if op.maturity_date <= op.issue_date:
        raise InvalidInput("maturity_date must be after issue_date", code="invalid_maturity", field="maturity_date")
    if ctx.today >= op.maturity_date:
        raise Conflict("the maturity date has already passed", code="certificate_matured", field="maturity_date")
    if op.accept_by_ms <= ctx.ts_ms:
        raise InvalidInput("accept_by_ms is in the past", code="invalid_deadline", field="accept_by_ms")
    cert_id = derive_id(op.op_id, "certificate")
    root_id = derive_id(op.op_id, "piece/0")
    cert = Certificate(
        id=cert_id,
        issuer=op.actor,
        face_minor=op.face_minor,
        currency=op.currency,
        issue_date=op.issue_date,
        maturity_date=op.maturity_date,
        payable_id=op.payable_id,
        payable_digest=op.payable_digest,
        root_piece_id=root_id,
        state=CertificateState.PENDING,
        created_seq=ctx.seq,
    )
    _check_recipient(state, op.to, cert, op.actor)
    root = Piece(
        id=root_id,
        certificate_id=cert_id,
        parent_id=None,
        holder=op.to,
        sender=op.actor,
        amount_minor=op.face_minor,
        state=PieceState.PENDING,
        frozen=False,
        tier=1,
        accept_by_ms=op.accept_by_ms,
        created_seq=ctx.seq,
    )
    return Effects(
        pieces=[root],
        certificates=[cert],
        result={"certificate_id": cert_id, "piece_id": root_id},
    )


def _accept(op: Accept, state: StateView, ctx: Context) -> Effects:
    piece = _piece(state, op.piece_id)
    cert = _check_movable(state, piece, op.actor, ctx, want=PieceState.PENDING)
    if piece.accept_by_ms is not None and ctx.ts_ms >= piece.accept_by_ms:
        raise Conflict(
            "the acceptance deadline has passed; the piece goes back to its sender",
            code="acceptance_deadline_passed",
            field="piece_id",
        )
    accepted = replace(piece, state=PieceState.ACTIVE, accept_by_ms=None)
    effects = Effects(pieces=[accepted], events=[_event(ctx, piece.id, "accepted", op.actor)])
    if piece.id == cert.root_piece_id:
        effects.certificates.append(replace(cert, state=CertificateState.OUTSTANDING))
    effects.result = {"piece_id": piece.id}
    return effects


def _return_to_sender(
    piece: Piece, cert: Certificate, ctx: Context, closed: PieceState, actor: str, op_id: str
) -> Effects:
    """Reject and expiry share this: the pending piece closes and its value goes back where it came from."""
    effects = Effects(pieces=[_close(piece, closed, ctx)], events=[_event(ctx, piece.id, closed.value, actor)])
    if piece.id == cert.root_piece_id:
        # The supplier never took the certificate: nothing is owed on it.
        effects.certificates.append(replace(cert, state=CertificateState.VOID))
        effects.result = {"piece_id": piece.id, "certificate_state": CertificateState.VOID.value}
        return effects
    assert piece.sender is not None and piece.parent_id is not None
    back = Piece(
        id=derive_id(op_id, "piece/return"),
        certificate_id=piece.certificate_id,
        parent_id=piece.id,
        holder=piece.sender,
        sender=None,
        amount_minor=piece.amount_minor,
        state=PieceState.ACTIVE,
        frozen=False,
        tier=piece.tier - 1,
        accept_by_ms=None,
        created_seq=ctx.seq,
    )
    effects.pieces.append(back)
    effects.result = {"piece_id": piece.id, "returned_piece_id": back.id}
    return effects


def _reject(op: Reject, state: StateView, ctx: Context) -> Effects:
    piece = _piece(state, op.piece_id)
    if piece.holder != op.actor:
        raise Forbidden("only the recipient may reject a piece", code="not_recipient", field="piece_id")
    cert = _check_movable(state, piece, op.actor, ctx, want=PieceState.PENDING)
    return _return_to_sender(piece, cert, ctx, PieceState.REJECTED, op.actor, op.op_id)


def _expire(op: Expire, state: StateView, ctx: Context) -> Effects:
    if op.actor != PLATFORM:
        raise Forbidden("only the platform expires pending pieces", code="role_not_allowed")
    piece = _piece(state, op.piece_id)
    if piece.state != PieceState.PENDING:
        raise Conflict("only a pending piece can expire", code="piece_not_pending", field="piece_id")
    assert piece.accept_by_ms is not None
    if ctx.ts_ms < piece.accept_by_ms:
        raise Conflict("the acceptance deadline has not passed", code="deadline_not_reached", field="piece_id")
    if piece.frozen:
        raise Conflict("the piece is frozen; it stays put until unfrozen", code="piece_frozen", field="piece_id")
    cert = _certificate(state, piece.certificate_id)
    return _return_to_sender(piece, cert, ctx, PieceState.EXPIRED, op.actor, op.op_id)


def _transfer(op: Transfer, state: StateView, ctx: Context) -> Effects:
    piece = _piece(state, op.piece_id)
    cert = _check_movable(state, piece, op.actor, ctx, want=PieceState.ACTIVE)
    if op.amount_minor > piece.amount_minor:
        raise Conflict(
            f"cannot transfer {op.amount_minor} fen out of a piece of {piece.amount_minor}",
            code="transfer_exceeds_amount",
            field="amount_minor",
        )
    if op.accept_by_ms <= ctx.ts_ms:
        raise InvalidInput("accept_by_ms is in the past", code="invalid_deadline", field="accept_by_ms")
    _check_recipient(state, op.to, cert, op.actor)
    sent = Piece(
        id=derive_id(op.op_id, "piece/0"),
        certificate_id=piece.certificate_id,
        parent_id=piece.id,
        holder=op.to,
        sender=op.actor,
        amount_minor=op.amount_minor,
        state=PieceState.PENDING,
        frozen=False,
        tier=piece.tier + 1,
        accept_by_ms=op.accept_by_ms,
        created_seq=ctx.seq,
    )
    effects = Effects(
        pieces=[_close(piece, PieceState.SPENT, ctx), sent],
        events=[_event(ctx, piece.id, "transferred", op.actor)],
        result={"piece_id": sent.id},
    )
    change_amount = piece.amount_minor - op.amount_minor
    if change_amount:
        change = replace(
            sent,
            id=derive_id(op.op_id, "piece/change"),
            holder=op.actor,
            sender=None,
            amount_minor=change_amount,
            state=PieceState.ACTIVE,
            tier=piece.tier,
            accept_by_ms=None,
        )
        effects.pieces.append(change)
        effects.result["change_piece_id"] = change.id
    return effects


def _split(op: Split, state: StateView, ctx: Context) -> Effects:
    piece = _piece(state, op.piece_id)
    _check_movable(state, piece, op.actor, ctx, want=PieceState.ACTIVE)
    total = sum(op.amounts_minor)
    if total != piece.amount_minor:
        code = "split_exceeds_amount" if total > piece.amount_minor else "split_does_not_add_up"
        raise Conflict(
            f"split amounts add up to {total} fen but the piece holds {piece.amount_minor}",
            code=code,
            field="amounts_minor",
        )
    children = [
        Piece(
            id=derive_id(op.op_id, f"piece/{i}"),
            certificate_id=piece.certificate_id,
            parent_id=piece.id,
            holder=op.actor,
            sender=None,
            amount_minor=amount,
            state=PieceState.ACTIVE,
            frozen=False,
            tier=piece.tier,
            accept_by_ms=None,
            created_seq=ctx.seq,
        )
        for i, amount in enumerate(op.amounts_minor)
    ]
    return Effects(
        pieces=[_close(piece, PieceState.SPENT, ctx), *children],
        events=[_event(ctx, piece.id, "split", op.actor)],
        result={"piece_ids": [c.id for c in children]},
    )


def _set_frozen(op: Freeze | Unfreeze, state: StateView, ctx: Context, frozen: bool) -> Effects:
    actor = _party(state, op.actor, field_name="actor")
    if actor.role != Role.OPERATOR:
        raise Forbidden("only the platform operator freezes or unfreezes pieces", code="role_not_allowed")
    piece = _piece(state, op.piece_id)
    if not piece.live:
        raise Conflict(f"the piece is {piece.state.value}", code="piece_not_live", field="piece_id")
    if piece.frozen == frozen:
        code = "piece_frozen" if frozen else "piece_not_frozen"
        raise Conflict(f"the piece is already {'frozen' if frozen else 'unfrozen'}", code=code, field="piece_id")
    event = "frozen" if frozen else "unfrozen"
    return Effects(
        pieces=[replace(piece, frozen=frozen)],
        events=[_event(ctx, piece.id, event, op.actor)],
        result={"piece_id": piece.id, "frozen": frozen},
    )


def _revoke(op: Revoke, state: StateView, ctx: Context) -> Effects:
    cert = _certificate(state, op.certificate_id)
    if cert.issuer != op.actor:
        raise Forbidden("only the issuer may revoke a certificate", code="not_issuer", field="certificate_id")
    root = _piece(state, cert.root_piece_id)
    if root.state != PieceState.PENDING:
        raise Conflict(
            "a certificate can be revoked only while its first piece is pending",
            code="revoke_not_allowed",
            field="certificate_id",
        )
    if root.frozen:
        raise Conflict("the piece is frozen", code="piece_frozen", field="certificate_id")
    return Effects(
        pieces=[_close(root, PieceState.REVOKED, ctx)],
        certificates=[replace(cert, state=CertificateState.VOID)],
        events=[_event(ctx, root.id, "revoked", op.actor)],
        result={"certificate_id": cert.id},
    )


def _finance(op: Finance, state: StateView, ctx: Context) -> Effects:
    piece = _piece(state, op.piece_id)
    _check_movable(state, piece, op.actor, ctx, want=PieceState.ACTIVE)
    bank = _party(state, op.bank, field_name="bank")
    if bank.role != Role.BANK:
        raise InvalidInput(f"{op.bank!r} is not a bank", code="invalid_recipient", field="bank")
    if op.bank == op.actor:
        raise InvalidInput("a bank cannot finance its own piece", code="invalid_recipient", field="bank")
    if op.amount_minor > piece.amount_minor:
        raise Conflict(
            f"cannot finance {op.amount_minor} fen of a piece of {piece.amount_minor}",
            code="finance_exceeds_amount",
            field="amount_minor",
        )
    bought = Piece(
        id=derive_id(op.op_id, "piece/0"),
        certificate_id=piece.certificate_id,
        parent_id=piece.id,
        holder=op.bank,
        sender=op.actor,
        amount_minor=op.amount_minor,
        state=PieceState.ACTIVE,  # the bank co-signed: nothing to accept
        frozen=False,
        tier=piece.tier,  # the bank steps into the seller's place in the chain
        accept_by_ms=None,
        created_seq=ctx.seq,
    )
    effects = Effects(
        pieces=[_close(piece, PieceState.SPENT, ctx), bought],
        events=[_event(ctx, piece.id, "financed", op.actor)],
        result={"piece_id": bought.id},
    )
    rest = piece.amount_minor - op.amount_minor
    if rest:
        change = replace(
            bought, id=derive_id(op.op_id, "piece/change"), holder=op.actor, sender=None, amount_minor=rest
        )
        effects.pieces.append(change)
        effects.result["change_piece_id"] = change.id
    return effects


def _outstanding_listed(op: Clear | MarkOverdue, state: StateView) -> tuple[Certificate, list[Piece]]:
    """The listed pieces must be exactly the certificate's outstanding pieces. They are complete when they
    add up to the face value: conservation makes the outstanding pieces sum to it, and every amount is > 0."""
    cert = _certificate(state, op.certificate_id)
    listed = []
    for piece_id in op.piece_ids:
        piece = _piece(state, piece_id)
        if piece.certificate_id != cert.id:
            raise InvalidInput(f"piece {piece_id} is not part of this certificate", field="piece_ids")
        if not piece.live:
            raise Conflict(f"piece {piece_id} is {piece.state.value}", code="piece_not_live", field="piece_ids")
        if piece.frozen:
            raise Conflict(f"piece {piece_id} is frozen: resolve it first", code="piece_frozen", field="piece_ids")
        listed.append(piece)
    total = sum(p.amount_minor for p in listed)
    if total != cert.face_minor:
        raise Conflict(
            f"the listed pieces add up to {total} fen, the face value is {cert.face_minor}",
            code="clearing_incomplete",
            field="piece_ids",
        )
    return cert, listed


def _clear(op: Clear, state: StateView, ctx: Context) -> Effects:
    if op.actor != PLATFORM:
        raise Forbidden("only the platform clears certificates", code="role_not_allowed")
    cert = _certificate(state, op.certificate_id)
    if cert.state not in (CertificateState.OUTSTANDING, CertificateState.OVERDUE):
        raise Conflict(f"the certificate is {cert.state.value}", code="certificate_not_outstanding")
    if ctx.today < cert.maturity_date:
        raise Conflict(f"the certificate matures on {cert.maturity_date}", code="not_matured")
    cert, listed = _outstanding_listed(op, state)
    return Effects(
        pieces=[_close(p, PieceState.CLEARED, ctx) for p in listed],
        certificates=[replace(cert, state=CertificateState.CLEARED)],
        events=[_event(ctx, p.id, "cleared", op.actor) for p in listed],
        result={"certificate_id": cert.id, "paid": {p.id: p.amount_minor for p in listed}},
    )


def _mark_overdue(op: MarkOverdue, state: StateView, ctx: Context) -> Effects:
    if op.actor != PLATFORM:
        raise Forbidden("only the platform marks certificates overdue", code="role_not_allowed")
    cert = _certificate(state, op.certificate_id)
    if cert.state != CertificateState.OUTSTANDING:
        raise Conflict(f"the certificate is {cert.state.value}", code="certificate_not_outstanding")
    if ctx.today <= cert.maturity_date:
        raise Conflict(f"the certificate matures on {cert.maturity_date}", code="not_matured")
    cert, listed = _outstanding_listed(op, state)
    return Effects(
        pieces=[replace(p, state=PieceState.OVERDUE, accept_by_ms=None) for p in listed],
        certificates=[replace(cert, state=CertificateState.OVERDUE)],
        events=[_event(ctx, p.id, "overdue", op.actor) for p in listed],
        result={"certificate_id": cert.id},
    )


def apply(op: Operation, state: StateView, ctx: Context) -> Effects:
    """Check ``op`` against ``state`` and return what it changes. Raises `DomainError`; never mutates."""
    match op:
        case Transfer():
            return _transfer(op, state, ctx)
        case Split():
            return _split(op, state, ctx)
        case Accept():
            return _accept(op, state, ctx)
        case Reject():
            return _reject(op, state, ctx)
        case Issue():
            return _issue(op, state, ctx)
        case Expire():
            return _expire(op, state, ctx)
        case Freeze():
            return _set_frozen(op, state, ctx, True)
        case Unfreeze():
            return _set_frozen(op, state, ctx, False)
        case Revoke():
            return _revoke(op, state, ctx)
        case RegisterParty():
            return _register_party(op, state, ctx)
        case RotateKey():
            return _rotate_key(op, state, ctx)
        case Finance():
            return _finance(op, state, ctx)
        case Clear():
            return _clear(op, state, ctx)
        case MarkOverdue():
            return _mark_overdue(op, state, ctx)
    raise AssertionError(f"unhandled operation {op!r}")
