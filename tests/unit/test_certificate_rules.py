"""The certificate rules (`creditflow.ledger.model.certificates.apply`), told as stories on an in-memory ledger.

No database, no clock: a `Book` applies one operation per step at a log position and a time it moves by
hand, folds the effects into a `MemoryState`, and checks after every step that each certificate still
conserves its face value. Every refusal is checked for its stable code, the field it names, and that it
changed nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import uuid
from typing import Any

import pytest

from creditflow.kernel.errors import DomainError, InvalidInput
from creditflow.kernel.money import MAX_AMOUNT_MINOR
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.certificates import (
    CHINA_TZ,
    Certificate,
    CertificateState,
    Context,
    Effects,
    Piece,
    PieceEvent,
    PieceState,
    apply,
    derive_id,
)
from creditflow.ledger.model.parties import PLATFORM, Party, PartyKey, Role
from creditflow.ledger.model.state import MemoryState

YUAN = 100
DAY_MS = 86_400_000
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ)
START_MS = int(START.timestamp() * 1000)
ISSUE_DATE = START.date()
MATURITY = dt.date(2026, 9, 1)
# The certificate matures at local midnight in China (UTC+8), which is still 31 August in UTC.
MATURITY_MIDNIGHT_MS = int(dt.datetime(2026, 9, 1, 0, 0, tzinfo=CHINA_TZ).timestamp() * 1000)
FACE = 1_000_000 * YUAN

CAST = {
    "xcmg": Role.CORE_ENTERPRISE,
    "rival": Role.CORE_ENTERPRISE,
    "factory": Role.SUPPLIER,
    "steel": Role.SUPPLIER,
    "ore": Role.SUPPLIER,
    "bank": Role.BANK,
    "auditor": Role.AUDITOR,
    "operator": Role.OPERATOR,
}
ANY = object()  # "the error's field is not checked"


def public_key_of(name: str) -> bytes:
    return hashlib.sha256(f"test key of {name}".encode()).digest()


def uscc_for(n: int) -> str:
    return make_uscc(f"91320300134780{n:03d}")


# --------------------------------------------------------------------------------------------------
# the book: an in-memory ledger the stories are told on

Snapshot = tuple[Any, ...]


def snapshot(state: MemoryState) -> Snapshot:
    return (
        dict(state.pieces),
        dict(state.certificates),
        dict(state.parties),
        {org: dict(keys) for org, keys in state.party_keys.items()},
        list(state.events),
    )


def assert_conserved(state: MemoryState) -> None:
    """Every certificate: live pieces (plus any cleared ones) add up to its face value (nothing is owed on
    a void one); every piece is positive, and every child belongs to its parent's certificate."""
    for cert in state.certificates.values():
        mine = [p for p in state.pieces.values() if p.certificate_id == cert.id]
        owed_or_paid = sum(p.amount_minor for p in mine if p.live or p.state.value == "cleared")
        assert owed_or_paid == (0 if cert.state == CertificateState.VOID else cert.face_minor), cert
        assert all(p.amount_minor > 0 for p in mine)
        for p in mine:
            if p.parent_id is None:
                assert p.id == cert.root_piece_id
            else:
                assert state.pieces[p.parent_id].certificate_id == cert.id


class Book:
    def __init__(self) -> None:
        self.state = MemoryState()
        self.seq = 0
        self.now_ms = START_MS
        self._op_numbers = itertools.count(1)

    # --- time and place --------------------------------------------------------------------------

    def ctx(self) -> Context:
        return Context(seq=self.seq, ts_ms=self.now_ms)

    def at(self, ts_ms: int) -> None:
        self.now_ms = ts_ms

    def new_op_id(self) -> str:
        return str(uuid.UUID(int=next(self._op_numbers)))

    # --- applying ---------------------------------------------------------------------------------

    def do(self, op: ops.Operation) -> Effects:
        effects = apply(op, self.state, self.ctx())
        self.state.apply_effects(effects)
        self.seq += 1
        assert_conserved(self.state)
        return effects

    def refuses(self, op: ops.Operation, code: str, field: object = ANY) -> DomainError:
        before = snapshot(self.state)
        with pytest.raises(DomainError) as caught:
            apply(op, self.state, self.ctx())
        assert caught.value.code == code, caught.value
        if field is not ANY:
            assert caught.value.field == field, caught.value
        assert snapshot(self.state) == before
        assert_conserved(self.state)
        return caught.value

    def piece(self, piece_id: str) -> Piece:
        return self.state.pieces[piece_id]

    def certificate(self, certificate_id: str) -> Certificate:
        return self.state.certificates[certificate_id]

    def live_pieces_of(self, holder: str) -> list[Piece]:
        return sorted(
            (p for p in self.state.pieces.values() if p.holder == holder and p.live),
            key=lambda p: (p.created_seq, p.id),
        )

    # --- operations, as values ----------------------------------------------------------------------

    def deadline(self) -> int:
        return self.now_ms + 7 * DAY_MS

    def register_op(self, org: str, role: Role, *, by: str = PLATFORM, key_id: str = "k1") -> ops.RegisterParty:
        return ops.RegisterParty(
            op_id=self.new_op_id(),
            actor=by,
            org_id=org,
            name=org.title(),
            role=role,
            uscc=uscc_for(len(self.state.parties) + 1),
            key_id=key_id,
            public_key=public_key_of(org),
        )

    def rotate_op(self, org: str, key_id: str, public_key: bytes, *, by: str | None = None) -> ops.RotateKey:
        return ops.RotateKey(op_id=self.new_op_id(), actor=by or org, org_id=org, key_id=key_id, public_key=public_key)

    def issue_op(
        self,
        to: str = "factory",
        face: int = FACE,
        *,
        by: str = "xcmg",
        issue_date: dt.date = ISSUE_DATE,
        maturity: dt.date = MATURITY,
        accept_by_ms: int | None = None,
        op_id: str | None = None,
    ) -> ops.Issue:
        return ops.Issue(
            op_id=op_id or self.new_op_id(),
            actor=by,
            to=to,
            face_minor=face,
            currency="CNY",
            issue_date=issue_date,
            maturity_date=maturity,
            accept_by_ms=self.deadline() if accept_by_ms is None else accept_by_ms,
            payable_id="pay-0001",
            payable_digest=hashlib.sha256(b"payable").hexdigest(),
        )

    def accept_op(self, who: str, piece: str) -> ops.Accept:
        return ops.Accept(op_id=self.new_op_id(), actor=who, piece_id=piece)

    def reject_op(self, who: str, piece: str) -> ops.Reject:
        return ops.Reject(op_id=self.new_op_id(), actor=who, piece_id=piece)

    def expire_op(self, piece: str, *, by: str = PLATFORM) -> ops.Expire:
        return ops.Expire(op_id=self.new_op_id(), actor=by, piece_id=piece)

    def transfer_op(
        self, who: str, piece: str, to: str, amount: int, *, accept_by_ms: int | None = None, op_id: str | None = None
    ) -> ops.Transfer:
        return ops.Transfer(
            op_id=op_id or self.new_op_id(),
            actor=who,
            piece_id=piece,
            to=to,
            amount_minor=amount,
            accept_by_ms=self.deadline() if accept_by_ms is None else accept_by_ms,
        )

    def split_op(self, who: str, piece: str, *amounts: int, op_id: str | None = None) -> ops.Split:
        return ops.Split(op_id=op_id or self.new_op_id(), actor=who, piece_id=piece, amounts_minor=amounts)

    def freeze_op(self, piece: str, *, by: str = "operator") -> ops.Freeze:
        return ops.Freeze(op_id=self.new_op_id(), actor=by, piece_id=piece, reason="court order 2026-17")

    def unfreeze_op(self, piece: str, *, by: str = "operator") -> ops.Unfreeze:
        return ops.Unfreeze(op_id=self.new_op_id(), actor=by, piece_id=piece, reason="order lifted")

    def revoke_op(self, certificate: str, *, by: str = "xcmg") -> ops.Revoke:
        return ops.Revoke(op_id=self.new_op_id(), actor=by, certificate_id=certificate)

    # --- the story verbs ----------------------------------------------------------------------------

    def register(self, org: str, role: Role) -> None:
        self.do(self.register_op(org, role))

    def issue(self, to: str = "factory", face: int = FACE, **kw: Any) -> tuple[str, str]:
        """Issue a certificate; return (certificate id, root piece id)."""
        result = self.do(self.issue_op(to, face, **kw)).result
        return result["certificate_id"], result["piece_id"]

    def issued_and_accepted(self, to: str = "factory", face: int = FACE) -> str:
        _, root = self.issue(to, face)
        self.accept(to, root)
        return root

    def accept(self, who: str, piece: str) -> None:
        self.do(self.accept_op(who, piece))

    def reject(self, who: str, piece: str) -> dict[str, Any]:
        return self.do(self.reject_op(who, piece)).result

    def expire(self, piece: str) -> dict[str, Any]:
        return self.do(self.expire_op(piece)).result

    def transfer(self, who: str, piece: str, to: str, amount: int) -> dict[str, Any]:
        return self.do(self.transfer_op(who, piece, to, amount)).result

    def pay(self, who: str, piece: str, to: str, amount: int) -> str:
        """Transfer and have the recipient accept; return the recipient's piece."""
        sent = self.transfer(who, piece, to, amount)["piece_id"]
        self.accept(to, sent)
        return str(sent)

    def split(self, who: str, piece: str, *amounts: int) -> list[str]:
        return list(self.do(self.split_op(who, piece, *amounts)).result["piece_ids"])

    def freeze(self, piece: str) -> None:
        self.do(self.freeze_op(piece))

    def unfreeze(self, piece: str) -> None:
        self.do(self.unfreeze_op(piece))

    def revoke(self, certificate: str) -> None:
        self.do(self.revoke_op(certificate))


@pytest.fixture
def book() -> Book:
    """A ledger with the cast registered: two core enterprises, three suppliers, a bank, an auditor, an operator."""
    b = Book()
    for org, role in CAST.items():
        b.register(org, role)
    return b


# --------------------------------------------------------------------------------------------------
# issue, accept, reject, expire


def test_issuing_sends_a_pending_tier_one_piece_to_the_supplier(book: Book) -> None:
    op = book.issue_op("factory", FACE)
    effects = book.do(op)

    cert_id, root_id = derive_id(op.op_id, "certificate"), derive_id(op.op_id, "piece/0")
    assert effects.result == {"certificate_id": cert_id, "piece_id": root_id}
    assert book.certificate(cert_id) == Certificate(
        id=cert_id,
        issuer="xcmg",
        face_minor=FACE,
        currency="CNY",
        issue_date=ISSUE_DATE,
        maturity_date=MATURITY,
        payable_id="pay-0001",
        payable_digest=op.payable_digest,
        root_piece_id=root_id,
        state=CertificateState.PENDING,
        created_seq=len(CAST),
    )
    assert book.piece(root_id) == Piece(
        id=root_id,
        certificate_id=cert_id,
        parent_id=None,
        holder="factory",
        sender="xcmg",
        amount_minor=FACE,
        state=PieceState.PENDING,
        frozen=False,
        tier=1,
        accept_by_ms=op.accept_by_ms,
        created_seq=len(CAST),
    )
    assert effects.events == []  # creation is recorded on the piece, not as an event


def test_accepting_the_first_piece_makes_the_certificate_outstanding(book: Book) -> None:
    cert, root = book.issue()
    effects = book.do(book.accept_op("factory", root))

    assert book.piece(root).state == PieceState.ACTIVE
    assert book.piece(root).accept_by_ms is None
    assert book.certificate(cert).state == CertificateState.OUTSTANDING
    assert effects.events == [PieceEvent(book.seq - 1, root, "accepted", "factory", book.now_ms)]


def test_a_core_enterprise_may_pay_another_core_enterprise_or_a_bank(book: Book) -> None:
    _, to_rival = book.issue("rival", 10 * YUAN)
    _, to_bank = book.issue("bank", 10 * YUAN)
    assert book.piece(to_rival).holder == "rival"
    assert book.piece(to_bank).holder == "bank"


def test_rejecting_the_first_piece_voids_the_certificate(book: Book) -> None:
    cert, root = book.issue()
    result = book.reject("factory", root)

    assert result == {"piece_id": root, "certificate_state": "void"}
    assert book.piece(root).state == PieceState.REJECTED
    assert book.piece(root).closed_seq == book.seq - 1
    assert book.certificate(cert).state == CertificateState.VOID
    assert book.live_pieces_of("factory") == []
    assert book.live_pieces_of("xcmg") == []  # nothing comes back to the issuer: nothing was owed


def test_rejecting_a_transferred_piece_returns_its_value_to_the_sender(book: Book) -> None:
    root = book.issued_and_accepted()
    sent = book.transfer("factory", root, "steel", 300_000 * YUAN)
    piece = sent["piece_id"]

    op = book.reject_op("steel", piece)
    result = book.do(op).result

    back = derive_id(op.op_id, "piece/return")
    assert result == {"piece_id": piece, "returned_piece_id": back}
    assert book.piece(piece).state == PieceState.REJECTED
    returned = book.piece(back)
    assert (returned.holder, returned.sender, returned.parent_id) == ("factory", None, piece)
    assert (returned.amount_minor, returned.state, returned.tier) == (300_000 * YUAN, PieceState.ACTIVE, 1)
    assert sum(p.amount_minor for p in book.live_pieces_of("factory")) == FACE


def test_an_unaccepted_piece_expires_at_its_deadline_and_goes_back(book: Book) -> None:
    root = book.issued_and_accepted()
    deadline = book.now_ms + DAY_MS
    sent = book.do(book.transfer_op("factory", root, "steel", 100 * YUAN, accept_by_ms=deadline)).result["piece_id"]

    book.at(deadline - 1)
    book.refuses(book.expire_op(sent), "deadline_not_reached", field="piece_id")

    book.at(deadline)
    result = book.expire(sent)
    assert book.piece(sent).state == PieceState.EXPIRED
    returned = book.piece(result["returned_piece_id"])
    assert (returned.holder, returned.amount_minor, returned.tier) == ("factory", 100 * YUAN, 1)
    assert book.state.events[-1] == PieceEvent(book.seq - 1, sent, "expired", PLATFORM, deadline)


def test_an_unaccepted_certificate_expires_void(book: Book) -> None:
    cert, root = book.issue()
    book.at(book.piece(root).accept_by_ms or 0)
    assert book.expire(root) == {"piece_id": root, "certificate_state": "void"}
    assert book.certificate(cert).state == CertificateState.VOID
    assert book.piece(root).state == PieceState.EXPIRED


# --------------------------------------------------------------------------------------------------
# transfer and split


def test_transferring_a_whole_piece_leaves_no_change(book: Book) -> None:
    root = book.issued_and_accepted()
    op = book.transfer_op("factory", root, "steel", FACE)
    effects = book.do(op)

    assert effects.result == {"piece_id": derive_id(op.op_id, "piece/0")}
    sent = book.piece(effects.result["piece_id"])
    assert (sent.holder, sent.sender, sent.parent_id) == ("steel", "factory", root)
    assert (sent.amount_minor, sent.state, sent.tier) == (FACE, PieceState.PENDING, 2)
    assert sent.accept_by_ms == op.accept_by_ms
    assert book.piece(root).state == PieceState.SPENT
    assert book.live_pieces_of("factory") == []
    assert effects.events == [PieceEvent(book.seq - 1, root, "transferred", "factory", book.now_ms)]


def test_transferring_part_of_a_piece_gives_the_sender_change(book: Book) -> None:
    root = book.issued_and_accepted()
    op = book.transfer_op("factory", root, "steel", 200_000 * YUAN)
    result = book.do(op).result

    assert result == {
        "piece_id": derive_id(op.op_id, "piece/0"),
        "change_piece_id": derive_id(op.op_id, "piece/change"),
    }
    change = book.piece(result["change_piece_id"])
    assert (change.holder, change.sender, change.parent_id) == ("factory", None, root)
    assert (change.amount_minor, change.state, change.tier) == (800_000 * YUAN, PieceState.ACTIVE, 1)
    assert change.accept_by_ms is None
    assert book.piece(result["piece_id"]).amount_minor == 200_000 * YUAN


def test_splitting_makes_active_pieces_of_the_same_holder_and_tier(book: Book) -> None:
    root = book.issued_and_accepted()
    op = book.split_op("factory", root, 600_000 * YUAN, 300_000 * YUAN, 100_000 * YUAN)
    effects = book.do(op)

    ids = [derive_id(op.op_id, f"piece/{i}") for i in range(3)]
    assert effects.result == {"piece_ids": ids}
    assert [book.piece(i).amount_minor for i in ids] == [600_000 * YUAN, 300_000 * YUAN, 100_000 * YUAN]
    for i in ids:
        child = book.piece(i)
        assert (child.holder, child.parent_id, child.state, child.tier) == ("factory", root, PieceState.ACTIVE, 1)
    assert book.piece(root).state == PieceState.SPENT
    assert effects.events == [PieceEvent(book.seq - 1, root, "split", "factory", book.now_ms)]


def test_tiers_count_the_distance_from_the_issuer(book: Book) -> None:
    root = book.issued_and_accepted()  # tier 1: the factory
    assert book.piece(root).tier == 1
    part_a, part_b = book.split("factory", root, 600_000 * YUAN, 400_000 * YUAN)
    assert book.piece(part_a).tier == book.piece(part_b).tier == 1  # split: same tier

    at_steel = book.pay("factory", part_a, "steel", 600_000 * YUAN)
    assert book.piece(at_steel).tier == 2  # transfer: one further

    sent = book.transfer("steel", at_steel, "ore", 200_000 * YUAN)
    assert book.piece(sent["piece_id"]).tier == 3
    assert book.piece(sent["change_piece_id"]).tier == 2  # change: stays with the sender's tier
    book.accept("ore", sent["piece_id"])

    to_bank = book.transfer("ore", sent["piece_id"], "bank", 50_000 * YUAN)
    assert book.piece(to_bank["piece_id"]).tier == 4
    returned = book.reject("bank", to_bank["piece_id"])["returned_piece_id"]
    assert book.piece(returned).tier == 3  # returned: back to the sender's tier
    assert book.piece(returned).holder == "ore"

    to_factory = book.transfer("steel", sent["change_piece_id"], "factory", 400_000 * YUAN)["piece_id"]
    assert book.piece(to_factory).tier == 3  # tier follows the flow, not who the holder is
    book.at(book.piece(to_factory).accept_by_ms or 0)
    back = book.expire(to_factory)["returned_piece_id"]
    assert book.piece(back).tier == 2
    assert book.piece(back).holder == "steel"

    assert [(p.tier, p.amount_minor) for p in book.live_pieces_of("ore")] == [
        (3, 150_000 * YUAN),
        (3, 50_000 * YUAN),
    ]


def test_value_is_conserved_through_a_long_story(book: Book) -> None:
    """`Book.do` checks conservation after every step; this story takes every kind of step."""
    cert, root = book.issue("factory", 10_000 * YUAN)
    book.accept("factory", root)
    a, b, c = book.split("factory", root, 5_000 * YUAN, 3_000 * YUAN, 2_000 * YUAN)
    at_steel = book.pay("factory", a, "steel", 4_000 * YUAN)
    book.freeze(at_steel)
    book.unfreeze(at_steel)
    x, y = book.split("steel", at_steel, 1 * YUAN, 3_999 * YUAN)
    rejected = book.transfer("steel", y, "ore", 3_999 * YUAN)["piece_id"]
    book.reject("ore", rejected)
    book.transfer("factory", b, "bank", 1)
    book.at(book.now_ms + 8 * DAY_MS)
    for piece in [p.id for p in book.state.pieces.values() if p.state == PieceState.PENDING]:
        book.expire(piece)
    live = [p for p in book.state.pieces.values() if p.live]
    assert sum(p.amount_minor for p in live) == 10_000 * YUAN
    assert book.certificate(cert).state == CertificateState.OUTSTANDING
    assert {p.holder for p in live} == {"factory", "steel"}
    assert c in {p.id for p in live} and x in {p.id for p in live}


# --------------------------------------------------------------------------------------------------
# freeze, unfreeze, revoke


def test_a_frozen_piece_cannot_move_until_it_is_unfrozen(book: Book) -> None:
    root = book.issued_and_accepted()
    book.do(book.freeze_op(root))
    assert book.piece(root).frozen
    assert book.state.events[-1].event == "frozen"
    assert book.state.events[-1].actor == "operator"

    book.refuses(book.transfer_op("factory", root, "steel", 1), "piece_frozen", field="piece_id")
    book.refuses(book.split_op("factory", root, 1, FACE - 1), "piece_frozen", field="piece_id")

    book.unfreeze(root)
    assert not book.piece(root).frozen
    assert book.state.events[-1].event == "unfrozen"
    book.transfer("factory", root, "steel", 1)


def test_a_frozen_pending_piece_cannot_be_accepted_or_rejected(book: Book) -> None:
    root = book.issued_and_accepted()
    sent = book.transfer("factory", root, "steel", 1_000 * YUAN)["piece_id"]
    book.freeze(sent)
    book.refuses(book.accept_op("steel", sent), "piece_frozen", field="piece_id")
    book.refuses(book.reject_op("steel", sent), "piece_frozen", field="piece_id")
    book.unfreeze(sent)
    book.accept("steel", sent)


def test_the_issuer_may_revoke_while_the_first_piece_is_pending(book: Book) -> None:
    cert, root = book.issue()
    effects = book.do(book.revoke_op(cert))
    assert effects.result == {"certificate_id": cert}
    assert book.certificate(cert).state == CertificateState.VOID
    assert book.piece(root).state == PieceState.REVOKED
    assert book.state.events[-1] == PieceEvent(book.seq - 1, root, "revoked", "xcmg", book.now_ms)
    book.refuses(book.accept_op("factory", root), "piece_not_live", field="piece_id")


# --------------------------------------------------------------------------------------------------
# parties and keys


def test_the_platform_registers_an_organisation_with_its_first_key(book: Book) -> None:
    op = book.register_op("newco", Role.SUPPLIER)
    effects = book.do(op)
    seq = book.seq - 1
    assert effects.result == {"org_id": "newco", "key_id": "k1"}
    assert book.state.party("newco") == Party("newco", "Newco", Role.SUPPLIER, op.uscc, seq)
    assert book.state.keys("newco") == [PartyKey("newco", "k1", public_key_of("newco"), seq, None)]


def test_rotating_a_key_retires_the_old_one_after_the_rotation_entry(book: Book) -> None:
    new_key = public_key_of("factory, second key")
    effects = book.do(book.rotate_op("factory", "k2", new_key))
    seq = book.seq - 1
    assert effects.result == {"org_id": "factory", "key_id": "k2"}
    old, new = sorted(book.state.keys("factory"), key=lambda k: k.key_id)
    # The rotation entry itself is signed by the old key, so the old key is valid up to and including it.
    assert old.valid_at(seq) and not old.valid_at(seq + 1)
    assert not new.valid_at(seq) and new.valid_at(seq + 1)
    assert (new.public_key, old.revoked_at_seq, new.revoked_at_seq) == (new_key, seq + 1, None)

    book.do(book.rotate_op("factory", "k3", public_key_of("factory, third key"), by=PLATFORM))
    assert [k.revoked_at_seq for k in sorted(book.state.keys("factory"), key=lambda k: k.key_id)] == [
        seq + 1,
        seq + 2,
        None,
    ]


# --------------------------------------------------------------------------------------------------
# maturity: China time, boundary at local midnight


@pytest.mark.parametrize(
    ("when_ms", "matured"),
    [
        (MATURITY_MIDNIGHT_MS - 1, False),  # 23:59:59.999 on the eve, Beijing time
        (MATURITY_MIDNIGHT_MS, True),  # 00:00 Beijing = 16:00 UTC the day before
        (MATURITY_MIDNIGHT_MS + 15 * 3_600_000, True),
        (MATURITY_MIDNIGHT_MS + 30 * DAY_MS, True),
    ],
    ids=["eve", "midnight", "maturity-day", "a-month-later"],
)
@pytest.mark.parametrize("action", ["transfer", "split", "accept"])
def test_nothing_moves_from_the_maturity_date_on(book: Book, action: str, when_ms: int, matured: bool) -> None:
    assert dt.datetime.fromtimestamp(MATURITY_MIDNIGHT_MS / 1000, dt.UTC).date() == dt.date(2026, 8, 31)
    root = book.issued_and_accepted()
    book.at(MATURITY_MIDNIGHT_MS - 2 * DAY_MS)
    pending = book.transfer("factory", root, "steel", 1_000 * YUAN)
    book.at(when_ms)
    op: ops.Operation = {
        "transfer": lambda: book.transfer_op("factory", pending["change_piece_id"], "ore", 1),
        "split": lambda: book.split_op("factory", pending["change_piece_id"], 1, FACE - 1_000 * YUAN - 1),
        "accept": lambda: book.accept_op("steel", pending["piece_id"]),
    }[action]()
    if matured:
        book.refuses(op, "certificate_matured")
    else:
        book.do(op)


def test_a_certificate_cannot_be_issued_on_or_after_its_maturity_date(book: Book) -> None:
    book.at(MATURITY_MIDNIGHT_MS)
    book.refuses(book.issue_op(), "certificate_matured", field="maturity_date")
    book.at(MATURITY_MIDNIGHT_MS - 1)
    book.issue()


def test_rejecting_a_pending_piece_is_refused_after_maturity_but_it_still_expires(book: Book) -> None:
    root = book.issued_and_accepted()
    book.at(MATURITY_MIDNIGHT_MS - DAY_MS)
    sent = book.transfer("factory", root, "steel", 1_000 * YUAN)["piece_id"]
    book.at(MATURITY_MIDNIGHT_MS)
    book.refuses(book.reject_op("steel", sent), "certificate_matured")
    book.at(book.piece(sent).accept_by_ms or 0)
    book.expire(sent)


# --------------------------------------------------------------------------------------------------
# every refusal code


def test_not_holder(book: Book) -> None:
    root = book.issued_and_accepted()
    book.refuses(book.transfer_op("steel", root, "ore", 1), "not_holder", field="piece_id")
    book.refuses(book.split_op("steel", root, 1, FACE - 1), "not_holder", field="piece_id")
    book.refuses(book.transfer_op("xcmg", root, "ore", 1), "not_holder", field="piece_id")  # not even the issuer
    sent = book.transfer("factory", root, "steel", 1)["piece_id"]
    book.refuses(book.accept_op("ore", sent), "not_holder", field="piece_id")
    book.refuses(book.accept_op("factory", sent), "not_holder", field="piece_id")  # the sender cannot accept


def test_not_recipient(book: Book) -> None:
    root = book.issued_and_accepted()
    sent = book.transfer("factory", root, "steel", 1)["piece_id"]
    book.refuses(book.reject_op("factory", sent), "not_recipient", field="piece_id")
    book.refuses(book.reject_op("ore", sent), "not_recipient", field="piece_id")


def test_not_issuer(book: Book) -> None:
    cert, _ = book.issue()
    book.refuses(book.revoke_op(cert, by="rival"), "not_issuer", field="certificate_id")
    book.refuses(book.revoke_op(cert, by="factory"), "not_issuer", field="certificate_id")


@pytest.mark.parametrize("who", ["factory", "bank", "auditor", "operator"])
def test_role_not_allowed_to_issue(book: Book, who: str) -> None:
    book.refuses(book.issue_op("steel", by=who), "role_not_allowed")


@pytest.mark.parametrize("who", ["factory", "xcmg", "bank", "auditor"])
def test_role_not_allowed_to_freeze_or_unfreeze(book: Book, who: str) -> None:
    root = book.issued_and_accepted()
    book.refuses(book.freeze_op(root, by=who), "role_not_allowed")
    book.freeze(root)
    book.refuses(book.unfreeze_op(root, by=who), "role_not_allowed")


def test_role_not_allowed_for_platform_operations(book: Book) -> None:
    _, root = book.issue()
    book.at(book.now_ms + 8 * DAY_MS)
    book.refuses(book.expire_op(root, by="operator"), "role_not_allowed")
    book.refuses(book.expire_op(root, by="factory"), "role_not_allowed")
    book.refuses(book.register_op("newco", Role.SUPPLIER, by="operator"), "role_not_allowed")
    book.refuses(book.rotate_op("factory", "k2", public_key_of("x"), by="steel"), "role_not_allowed")
    book.refuses(book.rotate_op("factory", "k2", public_key_of("x"), by="operator"), "role_not_allowed")


def test_piece_already_spent(book: Book) -> None:
    root = book.issued_and_accepted()
    book.split("factory", root, 1, FACE - 1)
    book.refuses(book.split_op("factory", root, 1, FACE - 1), "piece_already_spent", field="piece_id")
    book.refuses(book.transfer_op("factory", root, "steel", 1), "piece_already_spent", field="piece_id")
    book.refuses(book.accept_op("factory", root), "piece_already_spent", field="piece_id")


def test_piece_pending(book: Book) -> None:
    _, root = book.issue()
    book.refuses(book.transfer_op("factory", root, "steel", 1), "piece_pending", field="piece_id")
    book.refuses(book.split_op("factory", root, 1, FACE - 1), "piece_pending", field="piece_id")


def test_piece_not_pending(book: Book) -> None:
    root = book.issued_and_accepted()
    book.refuses(book.accept_op("factory", root), "piece_not_pending", field="piece_id")
    book.refuses(book.reject_op("factory", root), "piece_not_pending", field="piece_id")
    book.at(book.now_ms + 30 * DAY_MS)
    book.refuses(book.expire_op(root), "piece_not_pending", field="piece_id")
    spent_and_gone = book.transfer("factory", root, "steel", FACE)["piece_id"]
    book.accept("steel", spent_and_gone)
    book.refuses(book.expire_op(root), "piece_not_pending", field="piece_id")


def test_piece_not_live(book: Book) -> None:
    root = book.issued_and_accepted()
    rejected = book.transfer("factory", root, "steel", 10 * YUAN)["piece_id"]
    book.reject("steel", rejected)
    book.refuses(book.accept_op("steel", rejected), "piece_not_live", field="piece_id")
    book.refuses(book.reject_op("steel", rejected), "piece_not_live", field="piece_id")
    book.refuses(book.freeze_op(rejected), "piece_not_live", field="piece_id")
    book.refuses(book.freeze_op(root), "piece_not_live", field="piece_id")  # spent is not live either

    _, expired_root = book.issue("steel")
    book.at(book.piece(expired_root).accept_by_ms or 0)
    book.expire(expired_root)
    book.refuses(book.transfer_op("steel", expired_root, "ore", 1), "piece_not_live", field="piece_id")
    book.refuses(book.accept_op("steel", expired_root), "piece_not_live", field="piece_id")

    cert, revoked_root = book.issue("ore")
    book.revoke(cert)
    book.refuses(book.split_op("ore", revoked_root, 1, FACE - 1), "piece_not_live", field="piece_id")
    book.refuses(book.unfreeze_op(revoked_root), "piece_not_live", field="piece_id")


def test_piece_frozen_and_piece_not_frozen(book: Book) -> None:
    cert, root = book.issue()
    book.refuses(book.unfreeze_op(root), "piece_not_frozen", field="piece_id")
    book.freeze(root)
    book.refuses(book.freeze_op(root), "piece_frozen", field="piece_id")
    book.refuses(book.revoke_op(cert), "piece_frozen", field="certificate_id")
    book.refuses(book.accept_op("factory", root), "piece_frozen", field="piece_id")


def test_transfer_exceeds_amount(book: Book) -> None:
    root = book.issued_and_accepted(face=500 * YUAN)
    book.refuses(book.transfer_op("factory", root, "steel", 500 * YUAN + 1), "transfer_exceeds_amount", "amount_minor")
    book.refuses(
        book.transfer_op("factory", root, "steel", MAX_AMOUNT_MINOR), "transfer_exceeds_amount", "amount_minor"
    )


def test_split_must_add_up_exactly(book: Book) -> None:
    root = book.issued_and_accepted(face=500 * YUAN)
    book.refuses(book.split_op("factory", root, 300 * YUAN, 200 * YUAN + 1), "split_exceeds_amount", "amounts_minor")
    book.refuses(book.split_op("factory", root, 300 * YUAN, 200 * YUAN - 1), "split_does_not_add_up", "amounts_minor")
    book.refuses(book.split_op("factory", root, 1, 1), "split_does_not_add_up", "amounts_minor")


@pytest.mark.parametrize(
    ("to", "why"),
    [("factory", "self"), ("xcmg", "issuer"), ("auditor", "auditor"), ("operator", "operator")],
)
def test_invalid_recipient_of_a_transfer(book: Book, to: str, why: str) -> None:
    root = book.issued_and_accepted()
    error = book.refuses(book.transfer_op("factory", root, to, 1), "invalid_recipient", field="to")
    assert isinstance(error, InvalidInput), why


@pytest.mark.parametrize("to", ["xcmg", "auditor", "operator"])
def test_invalid_recipient_of_an_issue(book: Book, to: str) -> None:
    book.refuses(book.issue_op(to), "invalid_recipient", field="to")


def test_party_not_found(book: Book) -> None:
    root = book.issued_and_accepted()
    book.refuses(book.transfer_op("factory", root, "nobody", 1), "party_not_found", field="to")
    book.refuses(book.issue_op("nobody"), "party_not_found", field="to")
    book.refuses(book.issue_op("steel", by="nobody"), "party_not_found", field="actor")
    book.refuses(book.freeze_op(root, by="nobody"), "party_not_found", field="actor")
    book.refuses(book.freeze_op(root, by=PLATFORM), "party_not_found", field="actor")  # the platform is no party
    book.refuses(book.rotate_op("nobody", "k2", public_key_of("nobody")), "party_not_found", field="org_id")


def test_piece_not_found_and_certificate_not_found(book: Book) -> None:
    ghost = str(uuid.UUID(int=10**30))
    book.refuses(book.accept_op("factory", ghost), "piece_not_found", field="piece_id")
    book.refuses(book.reject_op("factory", ghost), "piece_not_found", field="piece_id")
    book.refuses(book.expire_op(ghost), "piece_not_found", field="piece_id")
    book.refuses(book.transfer_op("factory", ghost, "steel", 1), "piece_not_found", field="piece_id")
    book.refuses(book.split_op("factory", ghost, 1, 1), "piece_not_found", field="piece_id")
    book.refuses(book.freeze_op(ghost), "piece_not_found", field="piece_id")
    book.refuses(book.unfreeze_op(ghost), "piece_not_found", field="piece_id")
    book.refuses(book.revoke_op(ghost), "certificate_not_found", field="certificate_id")


def test_revoke_not_allowed_once_the_first_piece_is_no_longer_pending(book: Book) -> None:
    accepted, root = book.issue()
    book.accept("factory", root)
    book.refuses(book.revoke_op(accepted), "revoke_not_allowed", field="certificate_id")

    rejected, other = book.issue("steel")
    book.reject("steel", other)
    book.refuses(book.revoke_op(rejected), "revoke_not_allowed", field="certificate_id")

    revoked, _ = book.issue("ore")
    book.revoke(revoked)
    book.refuses(book.revoke_op(revoked), "revoke_not_allowed", field="certificate_id")


def test_invalid_deadline(book: Book) -> None:
    root = book.issued_and_accepted()
    now = book.now_ms
    book.refuses(book.issue_op(accept_by_ms=now), "invalid_deadline", field="accept_by_ms")
    book.refuses(book.issue_op(accept_by_ms=-1), "invalid_deadline", field="accept_by_ms")
    book.refuses(book.transfer_op("factory", root, "steel", 1, accept_by_ms=now), "invalid_deadline", "accept_by_ms")
    book.do(book.transfer_op("factory", root, "steel", 1, accept_by_ms=now + 1))


@pytest.mark.parametrize("maturity", [ISSUE_DATE, ISSUE_DATE - dt.timedelta(days=1)])
def test_invalid_maturity(book: Book, maturity: dt.date) -> None:
    book.refuses(book.issue_op(maturity=maturity), "invalid_maturity", field="maturity_date")


def test_party_exists(book: Book) -> None:
    book.refuses(book.register_op("factory", Role.SUPPLIER), "party_exists", field="org_id")


def test_key_exists(book: Book) -> None:
    book.refuses(book.rotate_op("factory", "k1", public_key_of("fresh")), "key_exists", field="key_id")
    book.refuses(book.rotate_op("factory", "k2", public_key_of("factory")), "key_exists", field="public_key")
    book.do(book.rotate_op("factory", "k2", public_key_of("fresh")))
    book.refuses(book.rotate_op("factory", "k3", public_key_of("factory")), "key_exists", field="public_key")
    book.refuses(book.rotate_op("factory", "k2", public_key_of("fresher")), "key_exists", field="key_id")


def test_holder_checks_come_in_a_fixed_order(book: Book) -> None:
    """Not the holder beats spent; spent beats frozen; frozen beats matured."""
    root = book.issued_and_accepted()
    a, _ = book.split("factory", root, 1, FACE - 1)
    book.freeze(a)
    book.at(MATURITY_MIDNIGHT_MS)
    book.refuses(book.transfer_op("steel", root, "ore", 1), "not_holder")
    book.refuses(book.transfer_op("factory", root, "ore", 1), "piece_already_spent")
    book.refuses(book.transfer_op("factory", a, "ore", 1), "piece_frozen")


def test_a_piece_cannot_be_accepted_once_its_deadline_has_passed(book: Book) -> None:
    root = book.issued_and_accepted()
    sent = book.transfer("factory", root, "steel", 1)["piece_id"]
    book.at(book.piece(sent).accept_by_ms or 0)
    before = snapshot(book.state)
    with pytest.raises(DomainError):
        apply(book.accept_op("steel", sent), book.state, book.ctx())
    assert snapshot(book.state) == before


def test_no_organisation_may_take_the_platform_name(book: Book) -> None:
    book.refuses(book.register_op(PLATFORM, Role.SUPPLIER), "invalid_input", field="org_id")


# --------------------------------------------------------------------------------------------------
# derived ids: the same operation always creates the same things


def test_derived_ids_depend_only_on_the_op_id(book: Book) -> None:
    root = book.issued_and_accepted()
    op_id = str(uuid.uuid4())
    split = book.split_op("factory", root, 1, 2, FACE - 3, op_id=op_id)

    first = apply(split, book.state, book.ctx())
    again = apply(split, book.state, Context(seq=book.seq + 5, ts_ms=book.now_ms + 1))
    assert first.result == again.result
    assert [p.id for p in first.pieces] == [p.id for p in again.pieces]

    other = apply(book.split_op("factory", root, 1, 2, FACE - 3), book.state, book.ctx())
    assert set(first.result["piece_ids"]).isdisjoint(other.result["piece_ids"])

    ids = [derive_id(op_id, label) for label in ("piece/0", "piece/1", "piece/change", "certificate")]
    assert ids == [derive_id(op_id, label) for label in ("piece/0", "piece/1", "piece/change", "certificate")]
    assert len(set(ids)) == 4
    for ident in ids:
        assert uuid.UUID(ident).version == 8
        assert ops.parse({"v": 1, "type": "accept", "op_id": op_id, "actor": "a", "piece_id": ident}).piece_id == ident


def test_two_replays_of_the_same_operations_build_the_same_state() -> None:
    def story(b: Book) -> None:
        for org, role in CAST.items():
            b.register(org, role)
        root = b.issued_and_accepted()
        a, c = b.split("factory", root, 1_000, FACE - 1_000)
        b.pay("factory", a, "steel", 400)
        b.transfer("factory", c, "ore", 5)

    first, second = Book(), Book()
    story(first)
    story(second)
    assert snapshot(first.state) == snapshot(second.state)


# --------------------------------------------------------------------------------------------------
# operations.parse: the gate for untrusted payloads

OP_ID = "2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
PIECE_ID = "7d3e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"
CERT_ID = "0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d"
DIGEST = hashlib.sha256(b"payable").hexdigest()
KEY = public_key_of("someone").hex()


def valid_payloads() -> dict[str, dict[str, Any]]:
    base = {"v": 1, "op_id": OP_ID, "actor": "factory"}
    return {
        "register_party": {
            **base,
            "actor": PLATFORM,
            "type": "register_party",
            "org_id": "newco",
            "name": "New Co. 新公司",
            "role": "supplier",
            "uscc": uscc_for(7),
            "key_id": "k1",
            "public_key": KEY,
        },
        "rotate_key": {**base, "type": "rotate_key", "org_id": "factory", "key_id": "k2", "public_key": KEY},
        "issue": {
            **base,
            "actor": "xcmg",
            "type": "issue",
            "to": "factory",
            "face_minor": FACE,
            "currency": "CNY",
            "issue_date": "2026-03-02",
            "maturity_date": "2026-09-01",
            "accept_by_ms": START_MS + DAY_MS,
            "payable_id": "pay-0001",
            "payable_digest": DIGEST,
        },
        "accept": {**base, "type": "accept", "piece_id": PIECE_ID},
        "reject": {**base, "type": "reject", "piece_id": PIECE_ID},
        "expire": {**base, "actor": PLATFORM, "type": "expire", "piece_id": PIECE_ID},
        "transfer": {
            **base,
            "type": "transfer",
            "piece_id": PIECE_ID,
            "to": "steel",
            "amount_minor": 1,
            "accept_by_ms": START_MS + DAY_MS,
        },
        "split": {**base, "type": "split", "piece_id": PIECE_ID, "amounts_minor": [1, 2, 3]},
        "freeze": {**base, "actor": "operator", "type": "freeze", "piece_id": PIECE_ID, "reason": "dispute"},
        "unfreeze": {**base, "actor": "operator", "type": "unfreeze", "piece_id": PIECE_ID, "reason": "settled"},
        "revoke": {**base, "actor": "xcmg", "type": "revoke", "certificate_id": CERT_ID},
    }


KINDS = sorted(valid_payloads())


def test_the_operations_told_here_are_all_known_types() -> None:
    assert set(KINDS) <= set(ops.OPERATION_TYPES)
    assert len(KINDS) == 11


@pytest.mark.parametrize("kind", KINDS)
def test_parse_and_payload_are_inverses(kind: str) -> None:
    data = valid_payloads()[kind]
    op = ops.parse(data)
    assert type(op) is ops.OPERATION_TYPES[kind]
    assert ops.payload(op) == data
    assert ops.parse(ops.payload(op)) == op


def test_parse_gives_typed_values() -> None:
    issue = ops.parse(valid_payloads()["issue"])
    assert isinstance(issue, ops.Issue)
    assert (issue.issue_date, issue.maturity_date) == (ISSUE_DATE, MATURITY)
    split = ops.parse(valid_payloads()["split"])
    assert isinstance(split, ops.Split) and split.amounts_minor == (1, 2, 3)
    reg = ops.parse(valid_payloads()["register_party"])
    assert isinstance(reg, ops.RegisterParty) and reg.role is Role.SUPPLIER and reg.public_key == bytes.fromhex(KEY)


def refused_payload(data: Any, code: str, field: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        ops.parse(data)
    assert caught.value.code == code, caught.value
    assert caught.value.field == field, caught.value


BAD_AMOUNTS = [-1, 0, -(10**20), 1.5, 1.0, True, False, "100", None, [1], MAX_AMOUNT_MINOR + 1, 10**30]


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
@pytest.mark.parametrize(("kind", "name"), [("transfer", "amount_minor"), ("issue", "face_minor")])
def test_parse_refuses_bad_amounts(kind: str, name: str, value: object) -> None:
    refused_payload({**valid_payloads()[kind], name: value}, "invalid_amount", name)


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
def test_parse_refuses_bad_split_amounts_naming_the_position(value: object) -> None:
    refused_payload({**valid_payloads()["split"], "amounts_minor": [5, value, 7]}, "invalid_amount", "amounts_minor[1]")


def test_parse_accepts_the_largest_amount() -> None:
    op = ops.parse({**valid_payloads()["transfer"], "amount_minor": MAX_AMOUNT_MINOR})
    assert isinstance(op, ops.Transfer) and op.amount_minor == MAX_AMOUNT_MINOR


@pytest.mark.parametrize("amounts", [[], [FACE], "1,2", None, {"a": 1}], ids=repr)
def test_parse_refuses_a_split_into_fewer_than_two(amounts: object) -> None:
    refused_payload({**valid_payloads()["split"], "amounts_minor": amounts}, "invalid_input", "amounts_minor")


def test_parse_refuses_a_split_beyond_the_structural_cap() -> None:
    data = {**valid_payloads()["split"], "amounts_minor": [1] * (ops.MAX_SPLIT_PIECES + 1)}
    refused_payload(data, "split_fanout_exceeded", "amounts_minor")
    assert ops.parse({**data, "amounts_minor": [1] * ops.MAX_SPLIT_PIECES})


@pytest.mark.parametrize("kind", KINDS)
def test_parse_refuses_unknown_fields(kind: str) -> None:
    refused_payload({**valid_payloads()[kind], "memo": "hello"}, "invalid_input", "memo")


@pytest.mark.parametrize("version", [0, 2, "1", None, 1.5])
def test_parse_refuses_other_versions(version: object) -> None:
    refused_payload({**valid_payloads()["accept"], "v": version}, "unsupported_version", "v")
    no_version = dict(valid_payloads()["accept"])
    del no_version["v"]
    refused_payload(no_version, "unsupported_version", "v")


@pytest.mark.parametrize("version", [True, 1.0])
def test_parse_refuses_a_version_that_only_compares_equal_to_one(version: object) -> None:
    refused_payload({**valid_payloads()["accept"], "v": version}, "unsupported_version", "v")


@pytest.mark.parametrize("kind", ["mint", "", "Accept", None, 3, ["accept"]])
def test_parse_refuses_unknown_types(kind: object) -> None:
    refused_payload({**valid_payloads()["accept"], "type": kind}, "unknown_operation", "type")


@pytest.mark.parametrize("data", [None, [], "accept", 1, b"{}"], ids=repr)
def test_parse_refuses_what_is_not_an_object(data: object) -> None:
    refused_payload(data, "invalid_input", "operation")


BAD_UUIDS = [
    "7D3E1F2A-3B4C-4D5E-8F6A-7B8C9D0E1F2A",  # upper case
    "7d3e1f2a3b4c4d5e8f6a7b8c9d0e1f2a",  # no hyphens
    "{7d3e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a}",
    "7d3e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2",  # one short
    "7d3e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2ab",
    "7d3e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2g",
    " 7d3e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
    "",
    None,
    123,
]


@pytest.mark.parametrize("value", BAD_UUIDS, ids=repr)
@pytest.mark.parametrize(
    ("kind", "name"), [("accept", "op_id"), ("transfer", "piece_id"), ("revoke", "certificate_id")]
)
def test_parse_refuses_bad_uuids(kind: str, name: str, value: object) -> None:
    refused_payload({**valid_payloads()[kind], name: value}, "invalid_input", name)


BAD_DATES = [
    "2026-02-30",
    "2026-9-1",
    "20260901",
    "2026-09-01T00:00:00",
    "2026-W36-2",
    "01/09/2026",
    "",
    None,
    20260901,
]


@pytest.mark.parametrize("value", BAD_DATES, ids=repr)
@pytest.mark.parametrize("name", ["issue_date", "maturity_date"])
def test_parse_refuses_bad_dates(name: str, value: object) -> None:
    refused_payload({**valid_payloads()["issue"], name: value}, "invalid_input", name)


@pytest.mark.parametrize(
    ("kind", "name", "value", "code"),
    [
        ("transfer", "actor", "has space", "invalid_input"),
        ("transfer", "actor", "-leading-dash", "invalid_input"),
        ("transfer", "actor", "x" * 65, "invalid_input"),
        ("transfer", "to", "", "invalid_input"),
        ("transfer", "to", 7, "invalid_input"),
        ("transfer", "accept_by_ms", True, "invalid_input"),
        ("transfer", "accept_by_ms", 1.5, "invalid_input"),
        ("transfer", "accept_by_ms", "1772413200000", "invalid_input"),
        ("issue", "currency", "USD", "invalid_currency"),
        ("issue", "currency", "cny", "invalid_currency"),
        ("issue", "payable_digest", DIGEST.upper(), "invalid_input"),
        ("issue", "payable_digest", DIGEST[:-2], "invalid_input"),
        ("rotate_key", "public_key", KEY[:-2], "invalid_input"),
        ("rotate_key", "key_id", "k 2", "invalid_input"),
        ("register_party", "role", "king", "invalid_input"),
        ("register_party", "uscc", "91320300134780007X", "invalid_uscc"),
        ("register_party", "name", "x" * 201, "invalid_input"),
        ("freeze", "reason", "", "invalid_input"),
    ],
)
def test_parse_names_the_bad_field(kind: str, name: str, value: object, code: str) -> None:
    refused_payload({**valid_payloads()[kind], name: value}, code, name)


@pytest.mark.parametrize("kind", KINDS)
def test_parse_names_a_missing_field(kind: str) -> None:
    data = valid_payloads()[kind]
    for name in [k for k in data if k not in ("v", "type")]:
        incomplete = {k: v for k, v in data.items() if k != name}
        with pytest.raises(InvalidInput) as caught:
            ops.parse(incomplete)
        assert caught.value.field == name


def test_money_cannot_carry_a_fraction_of_a_fen() -> None:
    """Amounts are ints in fen, so half a fen cannot even be written: 0.5 is a float and is refused."""
    refused_payload({**valid_payloads()["transfer"], "amount_minor": 0.5}, "invalid_amount", "amount_minor")
    refused_payload({**valid_payloads()["transfer"], "amount_minor": 100.01}, "invalid_amount", "amount_minor")


@pytest.mark.parametrize(
    ("kind", "name"),
    [("accept", "op_id"), ("accept", "piece_id"), ("accept", "actor"), ("register_party", "org_id")],
)
def test_parse_refuses_ids_with_a_trailing_newline(kind: str, name: str) -> None:
    data = valid_payloads()[kind]
    refused_payload({**data, name: data[name] + "\n"}, "invalid_input", name)


def test_apply_handles_every_parsed_operation_type(book: Book) -> None:
    """Every operation type reaches a rule: a result or a refusal, never the unhandled-operation assertion."""
    outcomes = {}
    for kind, data in valid_payloads().items():
        try:
            outcomes[kind] = type(apply(ops.parse(data), book.state, book.ctx())).__name__
        except DomainError as exc:
            outcomes[kind] = exc.code
    assert outcomes == {
        "register_party": "Effects",
        "rotate_key": "Effects",
        "issue": "Effects",
        "accept": "piece_not_found",
        "reject": "piece_not_found",
        "expire": "piece_not_found",
        "transfer": "piece_not_found",
        "split": "piece_not_found",
        "freeze": "piece_not_found",
        "unfreeze": "piece_not_found",
        "revoke": "certificate_not_found",
    }
