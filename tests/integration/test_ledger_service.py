"""The ledger service end to end through `app.ledger` (platform custody), on SQLite and PostgreSQL.

Every refused command is checked for its stable code, the field it names, and that it changed nothing:
the log, the read model, the payables, the key store and what `app.queries` answers are all the same after.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Table, select

from conftest import ROLES, START_MS, USCC, issue_accepted, onboard, table_rows
from creditflow.bootstrap import App
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import DomainError
from creditflow.kernel.money import MAX_AMOUNT_MINOR
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.model.certificates import Certificate, CertificateState, Piece, PieceState
from creditflow.ledger.queries import Liability, TierValue
from creditflow.ledger.tables import (
    certificates,
    custody_keys,
    ledger_entries,
    log_head,
    merkle_nodes,
    parties,
    party_keys,
    piece_events,
    pieces,
    tree_heads,
)
from creditflow.trade.tables import payables

YUAN = 100
FACE = 1_000_000 * YUAN
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
TODAY = dt.date(2026, 3, 2)  # START_MS in China time
MATURITY = dt.date(2026, 9, 1)
ANY = object()

TABLES: tuple[Table, ...] = (
    log_head,
    ledger_entries,
    merkle_nodes,
    tree_heads,
    parties,
    party_keys,
    certificates,
    pieces,
    piece_events,
    payables,
    custody_keys,
)


# --------------------------------------------------------------------------------------------------
# helpers


def snapshot(app: App) -> dict[str, Any]:
    """Everything a command could change: every ledger, read-model and service table, and the queries."""
    state: dict[str, Any] = dict(table_rows(app, TABLES))
    q = app.queries
    state["pieces_by_holder"] = {org: q.pieces_by_holder(org, live_only=False, limit=500).items for org in ROLES}
    state["liability"] = [q.liability(org) for org in ("xcmg", "rival")]
    state["circulation_by_tier"] = q.circulation_by_tier()
    state["certificates_by_issuer"] = {org: q.certificates_by_issuer(org, limit=500).items for org in ("xcmg", "rival")}
    return state


def refused(app: App, action: Callable[[], object], code: str, field: object = ANY) -> DomainError:
    before = snapshot(app)
    with pytest.raises(DomainError) as caught:
        action()
    assert caught.value.code == code, caught.value
    if field is not ANY:
        assert caught.value.field == field, caught.value
    assert snapshot(app) == before
    return caught.value


def log_size(app: App) -> int:
    with app.engine.connect() as conn:
        return len(conn.execute(select(ledger_entries.c.seq)).all())


def issue(app: App, holder: str = "factory", face: int = FACE, *, maturity: dt.date = MATURITY) -> tuple[str, str, str]:
    """Record a payable and issue a certificate on all of it; return (certificate, root piece, payable) ids."""
    payable = app.payables.create_payable("xcmg", holder, face, f"PO-{uuid.uuid4().hex[:8]}")
    receipt = app.ledger.issue("xcmg", payable.id, face, maturity)
    return str(receipt.result["certificate_id"]), str(receipt.result["piece_id"]), payable.id


def live(app: App, holder: str) -> list[tuple[int, int, str]]:
    """(tier, amount, state) of a holder's live pieces, in creation order."""
    return [(p.tier, p.amount_minor, p.state.value) for p in app.queries.pieces_by_holder(holder).items]


def event(seq: int, name: str, actor: str, ts_ms: int) -> dict[str, Any]:
    return {"seq": seq, "event": name, "actor": actor, "ts_ms": ts_ms}


# --------------------------------------------------------------------------------------------------
# the demo story


def test_the_demo_story(world: App, clock: ManualClock) -> None:
    app, q = world, world.queries
    payable = app.payables.create_payable("xcmg", "factory", FACE, "PO-2026-0001")

    issued = app.ledger.issue("xcmg", payable.id, FACE, MATURITY)
    cert_id, root = issued.result["certificate_id"], issued.result["piece_id"]
    assert (issued.seq, issued.tree_size, issued.op_type) == (len(ROLES), len(ROLES) + 1, "issue")
    assert q.liability("xcmg") == Liability("xcmg", 0, FACE, 1)
    assert q.circulation_by_tier("xcmg") == [TierValue(1, FACE, 1, 1)]
    assert app.payables.get_payable(payable.id).issued_minor == FACE

    clock.advance(HOUR_MS)
    accepted = app.ledger.accept("factory", root)
    assert q.liability("xcmg") == Liability("xcmg", FACE, 0, 1)

    clock.advance(HOUR_MS)
    split = app.ledger.split("factory", root, [600_000 * YUAN, 400_000 * YUAN])
    p600, p400 = split.result["piece_ids"]

    clock.advance(HOUR_MS)
    to_steel = app.ledger.transfer("factory", p600, "steel", 600_000 * YUAN)
    at_steel = to_steel.result["piece_id"]
    assert "change_piece_id" not in to_steel.result

    clock.advance(HOUR_MS)
    steel_accepts = app.ledger.accept("steel", at_steel)

    clock.advance(HOUR_MS)
    to_ore = app.ledger.transfer("steel", at_steel, "ore", 200_000 * YUAN)
    at_ore, steel_change = to_ore.result["piece_id"], to_ore.result["change_piece_id"]

    clock.advance(HOUR_MS)
    ore_accepts = app.ledger.accept("ore", at_ore)

    receipts = [issued, accepted, split, to_steel, steel_accepts, to_ore, ore_accepts]
    assert [r.seq for r in receipts] == list(range(len(ROLES), len(ROLES) + 7))
    assert [r.ts_ms for r in receipts] == [START_MS + i * HOUR_MS for i in range(7)]
    seq_issue, seq_acc, seq_split, seq_tr1, seq_acc2, seq_tr2, seq_acc3 = (r.seq for r in receipts)

    def piece(**kw: Any) -> Piece:
        base: dict[str, Any] = {"certificate_id": cert_id, "frozen": False, "accept_by_ms": None, "closed_seq": None}
        return Piece(**{**base, **kw})

    expected = [
        piece(
            id=root,
            parent_id=None,
            holder="factory",
            sender="xcmg",
            amount_minor=FACE,
            state=PieceState.SPENT,
            tier=1,
            created_seq=seq_issue,
            closed_seq=seq_split,
        ),
        piece(
            id=p600,
            parent_id=root,
            holder="factory",
            sender=None,
            amount_minor=600_000 * YUAN,
            state=PieceState.SPENT,
            tier=1,
            created_seq=seq_split,
            closed_seq=seq_tr1,
        ),
        piece(
            id=p400,
            parent_id=root,
            holder="factory",
            sender=None,
            amount_minor=400_000 * YUAN,
            state=PieceState.ACTIVE,
            tier=1,
            created_seq=seq_split,
        ),
        piece(
            id=at_steel,
            parent_id=p600,
            holder="steel",
            sender="factory",
            amount_minor=600_000 * YUAN,
            state=PieceState.SPENT,
            tier=2,
            created_seq=seq_tr1,
            closed_seq=seq_tr2,
        ),
        piece(
            id=at_ore,
            parent_id=at_steel,
            holder="ore",
            sender="steel",
            amount_minor=200_000 * YUAN,
            state=PieceState.ACTIVE,
            tier=3,
            created_seq=seq_tr2,
        ),
        piece(
            id=steel_change,
            parent_id=at_steel,
            holder="steel",
            sender=None,
            amount_minor=400_000 * YUAN,
            state=PieceState.ACTIVE,
            tier=2,
            created_seq=seq_tr2,
        ),
    ]
    by_id = {p.id: p for p in expected}
    assert q.tree(cert_id) == sorted(expected, key=lambda p: (p.created_seq, p.id))

    assert q.provenance(at_ore) == [by_id[at_ore], by_id[at_steel], by_id[p600], by_id[root]]
    assert q.provenance(steel_change) == [by_id[steel_change], by_id[at_steel], by_id[p600], by_id[root]]
    assert q.provenance(root) == [by_id[root]]

    ts = {r.seq: r.ts_ms for r in receipts}
    assert q.history(root) == [
        event(seq_issue, "issued", "xcmg", ts[seq_issue]),
        event(seq_acc, "accepted", "factory", ts[seq_acc]),
        event(seq_split, "split", "factory", ts[seq_split]),
    ]
    assert q.history(p600) == [
        event(seq_split, "split_off", "factory", ts[seq_split]),
        event(seq_tr1, "transferred", "factory", ts[seq_tr1]),
    ]
    assert q.history(at_steel) == [
        event(seq_tr1, "received", "factory", ts[seq_tr1]),
        event(seq_acc2, "accepted", "steel", ts[seq_acc2]),
        event(seq_tr2, "transferred", "steel", ts[seq_tr2]),
    ]
    assert q.history(at_ore) == [
        event(seq_tr2, "received", "steel", ts[seq_tr2]),
        event(seq_acc3, "accepted", "ore", ts[seq_acc3]),
    ]
    assert q.history(steel_change) == [event(seq_tr2, "change", "steel", ts[seq_tr2])]
    assert q.history(p400) == [event(seq_split, "split_off", "factory", ts[seq_split])]

    assert q.certificate(cert_id) == Certificate(
        id=cert_id,
        issuer="xcmg",
        face_minor=FACE,
        currency="CNY",
        issue_date=TODAY,
        maturity_date=MATURITY,
        payable_id=payable.id,
        payable_digest=payable.digest,
        root_piece_id=root,
        state=CertificateState.OUTSTANDING,
        created_seq=seq_issue,
    )
    assert q.liability("xcmg") == Liability("xcmg", FACE, 0, 1)
    assert q.liability("rival") == Liability("rival", 0, 0, 0)
    tiers = [TierValue(1, 400_000 * YUAN, 1, 1), TierValue(2, 400_000 * YUAN, 1, 1), TierValue(3, 200_000 * YUAN, 1, 1)]
    assert q.circulation_by_tier("xcmg") == tiers
    assert q.circulation_by_tier() == tiers
    assert q.circulation_by_tier("rival") == []
    assert q.pieces_by_holder("factory").items == [by_id[p400]]
    assert q.pieces_by_holder("steel").items == [by_id[steel_change]]
    assert q.pieces_by_holder("ore").items == [by_id[at_ore]]
    assert q.pieces_by_holder("factory", live_only=False).items == sorted(
        [by_id[root], by_id[p600], by_id[p400]], key=lambda p: (p.created_seq, p.id)
    )

    report = app.verify()
    assert (report.entries, report.pieces, report.certificates) == (len(ROLES) + 7, 6, 1)


# --------------------------------------------------------------------------------------------------
# pending pieces: expiry, rejection, revocation


def test_a_pending_piece_expires_after_seven_days_and_returns_to_the_sender(world: App, clock: ManualClock) -> None:
    app, q = world, world.queries
    root = issue_accepted(app)
    sent = app.ledger.transfer("factory", root, "steel", 600_000 * YUAN)
    piece, change = sent.result["piece_id"], sent.result["change_piece_id"]
    assert q.piece(piece).accept_by_ms == START_MS + 7 * DAY_MS

    clock.advance(7 * DAY_MS - 1)
    before = snapshot(app)
    assert app.ledger.expire_due() == []
    assert snapshot(app) == before

    clock.advance(1)
    [expired] = app.ledger.expire_due()
    returned = expired.result["returned_piece_id"]
    assert (expired.op_type, expired.seq, expired.result["piece_id"]) == ("expire", sent.seq + 1, piece)
    assert q.piece(piece).state == PieceState.EXPIRED
    assert q.piece(piece).closed_seq == expired.seq
    assert q.history(piece) == [
        event(sent.seq, "received", "factory", START_MS),
        event(expired.seq, "expired", "platform", START_MS + 7 * DAY_MS),
    ]
    assert q.history(returned) == [event(expired.seq, "returned", "platform", START_MS + 7 * DAY_MS)]
    back = q.piece(returned)
    assert (back.holder, back.sender, back.parent_id) == ("factory", None, piece)
    assert (back.amount_minor, back.state, back.tier) == (600_000 * YUAN, PieceState.ACTIVE, 1)
    assert [p.id for p in q.pieces_by_holder("factory").items] == [change, returned]
    assert q.pieces_by_holder("steel").items == []
    assert q.circulation_by_tier() == [TierValue(1, FACE, 2, 1)]
    assert q.liability("xcmg") == Liability("xcmg", FACE, 0, 1)

    assert app.ledger.expire_due() == []
    app.ledger.transfer("factory", returned, "steel", 1)  # the returned value can move again
    assert app.verify().entries == expired.seq + 2


def test_an_unaccepted_certificate_expires_void_and_frees_its_payable(world: App, clock: ManualClock) -> None:
    app, q = world, world.queries
    cert, root, payable = issue(app)
    refused(app, lambda: app.ledger.issue("xcmg", payable, 1, MATURITY), "payable_exceeded", field="face_minor")

    clock.advance(7 * DAY_MS)
    [expired] = app.ledger.expire_due()
    assert expired.result == {"piece_id": root, "certificate_state": "void"}
    assert q.certificate(cert).state == CertificateState.VOID
    assert q.piece(root).state == PieceState.EXPIRED
    assert app.payables.get_payable(payable).issued_minor == 0
    assert q.liability("xcmg") == Liability("xcmg", 0, 0, 0)
    assert q.circulation_by_tier() == []

    again = app.ledger.issue("xcmg", payable, FACE, MATURITY)
    assert app.payables.get_payable(payable).issued_minor == FACE
    app.ledger.accept("factory", again.result["piece_id"])
    assert q.liability("xcmg") == Liability("xcmg", FACE, 0, 1)
    app.verify()


def test_the_recipient_may_reject_and_the_value_goes_back(world: App) -> None:
    app, q = world, world.queries
    root = issue_accepted(app)
    piece = app.ledger.transfer("factory", root, "steel", 250_000 * YUAN).result["piece_id"]
    refused(app, lambda: app.ledger.reject("factory", piece), "not_recipient", field="piece_id")
    refused(app, lambda: app.ledger.reject("ore", piece), "not_recipient", field="piece_id")

    rejected = app.ledger.reject("steel", piece)
    back = q.piece(rejected.result["returned_piece_id"])
    assert q.piece(piece).state == PieceState.REJECTED
    assert q.history(piece) == [
        event(rejected.seq - 1, "received", "factory", START_MS),
        event(rejected.seq, "rejected", "steel", START_MS),
    ]
    assert q.history(back.id) == [event(rejected.seq, "returned", "steel", START_MS)]
    assert (back.holder, back.amount_minor, back.tier, back.state) == ("factory", 250_000 * YUAN, 1, PieceState.ACTIVE)
    assert sum(p.amount_minor for p in q.pieces_by_holder("factory").items) == FACE
    refused(app, lambda: app.ledger.accept("steel", piece), "piece_not_live", field="piece_id")
    app.verify()


def test_rejecting_a_new_certificate_voids_it_and_frees_the_payable(world: App) -> None:
    app, q = world, world.queries
    cert, root, payable = issue(app, "steel", 300_000 * YUAN)
    app.ledger.reject("steel", root)
    assert q.certificate(cert).state == CertificateState.VOID
    assert app.payables.get_payable(payable).issued_minor == 0
    assert q.liability("xcmg") == Liability("xcmg", 0, 0, 0)
    app.ledger.issue("xcmg", payable, 300_000 * YUAN, MATURITY)
    app.verify()


def test_the_issuer_may_revoke_only_while_the_certificate_is_pending(world: App) -> None:
    app, q = world, world.queries
    cert, root, payable = issue(app)
    refused(app, lambda: app.ledger.revoke("rival", cert), "not_issuer", field="certificate_id")
    refused(app, lambda: app.ledger.revoke("factory", cert), "not_issuer", field="certificate_id")

    revoked = app.ledger.revoke("xcmg", cert)
    assert revoked.result == {"certificate_id": cert}
    assert q.certificate(cert).state == CertificateState.VOID
    assert q.piece(root).state == PieceState.REVOKED
    assert q.history(root) == [
        event(revoked.seq - 1, "issued", "xcmg", START_MS),
        event(revoked.seq, "revoked", "xcmg", START_MS),
    ]
    assert app.payables.get_payable(payable).issued_minor == 0
    refused(app, lambda: app.ledger.accept("factory", root), "piece_not_live", field="piece_id")
    refused(app, lambda: app.ledger.revoke("xcmg", cert), "revoke_not_allowed", field="certificate_id")

    again = app.ledger.issue("xcmg", payable, FACE, MATURITY)
    app.ledger.accept("factory", again.result["piece_id"])
    refused(
        app, lambda: app.ledger.revoke("xcmg", again.result["certificate_id"]), "revoke_not_allowed", "certificate_id"
    )
    assert app.payables.get_payable(payable).issued_minor == FACE
    app.verify()


# --------------------------------------------------------------------------------------------------
# freezing


def test_a_frozen_piece_cannot_move_until_the_operator_unfreezes_it(world: App) -> None:
    app, q = world, world.queries
    root = issue_accepted(app)
    frozen = app.ledger.freeze("operator", root, "court order 2026-17")
    assert frozen.result == {"piece_id": root, "frozen": True}
    assert q.piece(root).frozen

    refused(app, lambda: app.ledger.transfer("factory", root, "steel", 1), "piece_frozen", field="piece_id")
    refused(app, lambda: app.ledger.split("factory", root, [1, FACE - 1]), "piece_frozen", field="piece_id")
    refused(app, lambda: app.ledger.freeze("operator", root, "again"), "piece_frozen", field="piece_id")

    unfrozen = app.ledger.unfreeze("operator", root, "order lifted")
    assert not q.piece(root).frozen
    refused(app, lambda: app.ledger.unfreeze("operator", root, "again"), "piece_not_frozen", field="piece_id")
    split = app.ledger.split("factory", root, [1, FACE - 1])
    assert q.history(root) == [
        event(frozen.seq - 2, "issued", "xcmg", START_MS),
        event(frozen.seq - 1, "accepted", "factory", START_MS),
        event(frozen.seq, "frozen", "operator", START_MS),
        event(unfrozen.seq, "unfrozen", "operator", START_MS),
        event(split.seq, "split", "factory", START_MS),
    ]
    app.verify()


def test_a_frozen_pending_piece_cannot_be_accepted(world: App) -> None:
    app, q = world, world.queries
    root = issue_accepted(app)
    piece = app.ledger.transfer("factory", root, "steel", 1_000 * YUAN).result["piece_id"]
    app.ledger.freeze("operator", piece, "dispute")
    refused(app, lambda: app.ledger.accept("steel", piece), "piece_frozen", field="piece_id")
    refused(app, lambda: app.ledger.reject("steel", piece), "piece_frozen", field="piece_id")
    app.ledger.unfreeze("operator", piece, "settled")
    app.ledger.accept("steel", piece)
    assert q.piece(piece).state == PieceState.ACTIVE


@pytest.mark.parametrize("who", ["factory", "xcmg", "bank", "auditor", "steel"])
def test_only_the_operator_may_freeze(world: App, who: str) -> None:
    app = world
    root = issue_accepted(app)
    refused(app, lambda: app.ledger.freeze(who, root, "I say so"), "role_not_allowed")
    app.ledger.freeze("operator", root, "dispute")
    refused(app, lambda: app.ledger.unfreeze(who, root, "I say so"), "role_not_allowed")


# --------------------------------------------------------------------------------------------------
# bad input through the service: each is refused with its code and changes nothing


@dataclass(frozen=True)
class Stage:
    app: App
    piece: str  # factory's accepted piece of FACE
    payable: str  # xcmg owes factory 500,000 CNY, nothing issued on it yet
    pending_cert: str  # issued to steel, not yet accepted


@pytest.fixture
def stage(world: App) -> Stage:
    piece = issue_accepted(world)
    payable = world.payables.create_payable("xcmg", "factory", 500_000 * YUAN, "PO-stage")
    pending_cert, _, _ = issue(world, "steel", 10 * YUAN)
    return Stage(world, piece, payable.id, pending_cert)


GHOST = "0b7e2c1a-9d4f-4e3b-8a6c-5f2d1e0c9b8a"

BAD_INPUT: dict[str, tuple[Callable[[Stage], object], str, str | None]] = {
    "transfer negative": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "steel", -1),
        "invalid_amount",
        "amount_minor",
    ),
    "transfer zero": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "steel", 0),
        "invalid_amount",
        "amount_minor",
    ),
    "transfer over max": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "steel", MAX_AMOUNT_MINOR + 1),
        "invalid_amount",
        "amount_minor",
    ),
    "transfer float": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "steel", 1.5),  # type: ignore[arg-type]
        "invalid_amount",
        "amount_minor",
    ),
    "transfer bool": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "steel", True),
        "invalid_amount",
        "amount_minor",
    ),
    "transfer over piece": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "steel", FACE + 1),
        "transfer_exceeds_amount",
        "amount_minor",
    ),
    "transfer unknown piece": (
        lambda s: s.app.ledger.transfer("factory", GHOST, "steel", 1),
        "piece_not_found",
        "piece_id",
    ),
    "transfer malformed piece id": (
        lambda s: s.app.ledger.transfer("factory", "not-a-piece", "steel", 1),
        "invalid_input",
        "piece_id",
    ),
    "transfer to unknown org": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "nobody", 1),
        "party_not_found",
        "to",
    ),
    "transfer to auditor": (
        lambda s: s.app.ledger.transfer("factory", s.piece, "auditor", 1),
        "invalid_recipient",
        "to",
    ),
    "transfer by non-holder": (lambda s: s.app.ledger.transfer("steel", s.piece, "ore", 1), "not_holder", "piece_id"),
    "split zero part": (
        lambda s: s.app.ledger.split("factory", s.piece, [0, FACE]),
        "invalid_amount",
        "amounts_minor[0]",
    ),
    "split negative part": (
        lambda s: s.app.ledger.split("factory", s.piece, [FACE + 1, -1]),
        "invalid_amount",
        "amounts_minor[1]",
    ),
    "split one part": (lambda s: s.app.ledger.split("factory", s.piece, [FACE]), "invalid_input", "amounts_minor"),
    "split over": (
        lambda s: s.app.ledger.split("factory", s.piece, [FACE - 1, 2]),
        "split_exceeds_amount",
        "amounts_minor",
    ),
    "split under": (
        lambda s: s.app.ledger.split("factory", s.piece, [FACE - 2, 1]),
        "split_does_not_add_up",
        "amounts_minor",
    ),
    "split fan-out": (
        lambda s: s.app.ledger.split(
            "factory", s.piece, [1] * s.app.settings.split_fanout_max + [FACE - s.app.settings.split_fanout_max]
        ),
        "split_fanout_exceeded",
        "amounts_minor",
    ),
    "accept unknown piece": (lambda s: s.app.ledger.accept("factory", GHOST), "piece_not_found", "piece_id"),
    "accept by unknown org": (lambda s: s.app.ledger.accept("nobody", s.piece), "no_custody_key", None),
    "revoke unknown certificate": (
        lambda s: s.app.ledger.revoke("xcmg", GHOST),
        "certificate_not_found",
        "certificate_id",
    ),
    "issue zero": (lambda s: s.app.ledger.issue("xcmg", s.payable, 0, MATURITY), "invalid_amount", "face_minor"),
    "issue negative": (lambda s: s.app.ledger.issue("xcmg", s.payable, -5, MATURITY), "invalid_amount", "face_minor"),
    "issue over max": (
        lambda s: s.app.ledger.issue("xcmg", s.payable, MAX_AMOUNT_MINOR + 1, MATURITY),
        "invalid_amount",
        "face_minor",
    ),
    "issue over the payable": (
        lambda s: s.app.ledger.issue("xcmg", s.payable, 500_000 * YUAN + 1, MATURITY),
        "payable_exceeded",
        "face_minor",
    ),
    "issue on another's payable": (
        lambda s: s.app.ledger.issue("rival", s.payable, 1_000 * YUAN, MATURITY),
        "payable_mismatch",
        "payable_id",
    ),
    "issue on unknown payable": (
        lambda s: s.app.ledger.issue("xcmg", "pay-nothing", 1_000 * YUAN, MATURITY),
        "payable_not_found",
        "payable_id",
    ),
    "issue tenor 366 days": (
        lambda s: s.app.ledger.issue("xcmg", s.payable, 1_000 * YUAN, TODAY + dt.timedelta(days=366)),
        "tenor_exceeded",
        "maturity_date",
    ),
    "issue dated tomorrow": (
        lambda s: s.app.ledger.issue(
            "xcmg", s.payable, 1_000 * YUAN, MATURITY, issue_date=TODAY + dt.timedelta(days=1)
        ),
        "invalid_issue_date",
        "issue_date",
    ),
    "issue maturing today": (
        lambda s: s.app.ledger.issue("xcmg", s.payable, 1_000 * YUAN, TODAY),
        "invalid_maturity",
        "maturity_date",
    ),
    "issue by a supplier": (  # the ledger's role rule answers before the payable check
        lambda s: s.app.ledger.issue("factory", s.payable, 1_000 * YUAN, MATURITY),
        "role_not_allowed",
        None,
    ),
    "payable zero": (
        lambda s: s.app.payables.create_payable("xcmg", "factory", 0, "PO-0"),
        "invalid_amount",
        "amount_minor",
    ),
    "payable over max": (
        lambda s: s.app.payables.create_payable("xcmg", "factory", MAX_AMOUNT_MINOR + 1, "PO-0"),
        "invalid_amount",
        "amount_minor",
    ),
    "payable in USD": (
        lambda s: s.app.payables.create_payable("xcmg", "factory", 1, "PO-0", currency="USD"),
        "invalid_currency",
        "currency",
    ),
    "payable without reference": (
        lambda s: s.app.payables.create_payable("xcmg", "factory", 1, ""),
        "invalid_input",
        "reference",
    ),
    "payable of unknown debtor": (
        lambda s: s.app.payables.create_payable("nobody", "factory", 1, "PO-0"),
        "party_not_found",
        "debtor",
    ),
    "payable to unknown creditor": (
        lambda s: s.app.payables.create_payable("xcmg", "nobody", 1, "PO-0"),
        "party_not_found",
        "creditor",
    ),
    "payable of a supplier": (
        lambda s: s.app.payables.create_payable("factory", "steel", 1, "PO-0"),
        "role_not_allowed",
        "debtor",
    ),
    "payable id taken": (
        lambda s: s.app.payables.create_payable("xcmg", "factory", 1, "PO-0", payable_id=s.payable),
        "payable_exists",
        "payable_id",
    ),
    "rotate unknown org": (lambda s: s.app.ledger.rotate_key("nobody"), "party_not_found", "org_id"),
    "register malformed org id": (
        lambda s: s.app.ledger.register_organisation("bad id", "Bad", "supplier", make_uscc("91320300134789001")),
        "invalid_input",
        "org_id",
    ),
    "register unknown role": (
        lambda s: s.app.ledger.register_organisation("newco", "New", "king", make_uscc("91320300134789001")),
        "invalid_input",
        "role",
    ),
    "pieces_by_holder limit 0": (
        lambda s: s.app.queries.pieces_by_holder("factory", limit=0),
        "invalid_input",
        "limit",
    ),
    "unknown piece query": (lambda s: s.app.queries.piece(GHOST), "piece_not_found", "piece_id"),
    "unknown provenance": (lambda s: s.app.queries.provenance(GHOST), "piece_not_found", "piece_id"),
    "unknown history": (lambda s: s.app.queries.history(GHOST), "piece_not_found", "piece_id"),
    "unknown tree": (lambda s: s.app.queries.tree(GHOST), "certificate_not_found", "certificate_id"),
    "unknown party": (lambda s: s.app.queries.party("nobody"), "party_not_found", "org_id"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_and_changes_nothing(stage: Stage, case: str) -> None:
    action, code, field = BAD_INPUT[case]
    refused(stage.app, lambda: action(stage), code, field=field)


def test_the_limits_themselves_are_allowed(stage: Stage) -> None:
    app, fanout = stage.app, stage.app.settings.split_fanout_max
    assert fanout == 50
    split = app.ledger.split("factory", stage.piece, [1] * (fanout - 1) + [FACE - (fanout - 1)])
    assert len(split.result["piece_ids"]) == fanout
    year = app.ledger.issue("xcmg", stage.payable, 500_000 * YUAN, TODAY + dt.timedelta(days=365))
    assert app.queries.certificate(year.result["certificate_id"]).maturity_date == dt.date(2027, 3, 2)
    assert app.payables.get_payable(stage.payable).issued_minor == 500_000 * YUAN
    app.verify()


def test_a_payable_is_drawn_down_by_each_issue(world: App) -> None:
    app = world
    payable = app.payables.create_payable("xcmg", "factory", FACE, "PO-2026-0002").id
    app.ledger.issue("xcmg", payable, 600_000 * YUAN, MATURITY)
    app.ledger.issue("xcmg", payable, 400_000 * YUAN - 1, MATURITY)
    refused(app, lambda: app.ledger.issue("xcmg", payable, 2, MATURITY), "payable_exceeded", field="face_minor")
    app.ledger.issue("xcmg", payable, 1, MATURITY)
    assert app.payables.get_payable(payable).issued_minor == FACE
    assert app.queries.liability("xcmg") == Liability("xcmg", 0, FACE, 3)


# --------------------------------------------------------------------------------------------------
# paging


def _holdings(app: App) -> None:
    """Twelve live 10-yuan-or-so pieces for the factory across three log positions, four spent ones."""
    root = issue_accepted(app, 100 * YUAN)
    first = app.ledger.split("factory", root, [10 * YUAN] * 6 + [40 * YUAN]).result["piece_ids"]
    app.ledger.split("factory", first[6], [10 * YUAN] * 4)
    app.ledger.transfer("factory", first[0], "steel", 10 * YUAN)
    other = issue_accepted(app, 30 * YUAN)
    app.ledger.split("factory", other, [10 * YUAN] * 3)


def _walk(app: App, limit: int, *, live_only: bool = True) -> list[list[Piece]]:
    pages, cursor = [], None
    while True:
        page = app.queries.pieces_by_holder("factory", live_only=live_only, cursor=cursor, limit=limit)
        pages.append(page.items)
        assert len(pages) < 50, "the cursor does not advance"
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def _all_of_factory(app: App, *, live_only: bool) -> list[Piece]:
    with app.engine.connect() as conn:
        ids = conn.scalars(select(pieces.c.id).where(pieces.c.holder == "factory")).all()
    found = [app.queries.piece(i) for i in ids]
    return sorted((p for p in found if p.live or not live_only), key=lambda p: (p.created_seq, p.id))


@pytest.mark.parametrize("limit", [1, 3, 4, 5, 11, 12, 13])
def test_paging_through_a_holders_pieces(world: App, limit: int) -> None:
    _holdings(world)
    expected = _all_of_factory(world, live_only=True)
    assert len(expected) == 12

    pages = _walk(world, limit)
    assert len(pages) == max(1, math.ceil(12 / limit))
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit  # never an empty last page
    walked = [p for page in pages for p in page]
    assert walked == expected  # in order, no duplicates, no gaps
    assert len({p.id for p in walked}) == 12


def test_paging_over_spent_pieces_too(world: App) -> None:
    _holdings(world)
    expected = _all_of_factory(world, live_only=False)
    assert len(expected) == 16
    assert [p for page in _walk(world, 5, live_only=False) for p in page] == expected


def test_a_page_does_not_change_when_later_pieces_arrive(world: App) -> None:
    _holdings(world)
    first = world.queries.pieces_by_holder("factory", limit=5)
    issue_accepted(world, 7 * YUAN)
    rest = _walk_from(world, first.next_cursor)
    walked = first.items + rest
    assert len(walked) == 13
    assert len({p.id for p in walked}) == 13
    assert walked[-1].amount_minor == 7 * YUAN


def _walk_from(app: App, cursor: str | None) -> list[Piece]:
    out: list[Piece] = []
    while cursor is not None:
        page = app.queries.pieces_by_holder("factory", cursor=cursor, limit=5)
        out += page.items
        cursor = page.next_cursor
    return out


@pytest.mark.parametrize("cursor", ["garbage", "12", "abc:def", "1.5:x", ":"])
def test_a_bad_cursor_is_invalid_input(world: App, cursor: str) -> None:
    _holdings(world)
    refused(world, lambda: world.queries.pieces_by_holder("factory", cursor=cursor), "invalid_input", field="cursor")


@pytest.mark.parametrize("limit", [0, -1, 501, 10**6])
def test_a_limit_out_of_range_is_invalid_input(world: App, limit: int) -> None:
    refused(world, lambda: world.queries.pieces_by_holder("factory", limit=limit), "invalid_input", field="limit")
    assert world.queries.pieces_by_holder("factory", limit=world.settings.page_size_max).next_cursor is None


def test_a_cursor_beyond_int64_is_invalid_input(world: App) -> None:
    _holdings(world)
    refused(
        world,
        lambda: world.queries.pieces_by_holder("factory", cursor=f"{2**63}:x"),
        "invalid_input",
        field="cursor",
    )


# --------------------------------------------------------------------------------------------------
# onboarding


def test_a_uscc_can_be_registered_once(world: App) -> None:
    app = world
    refused(
        app,
        lambda: app.ledger.register_organisation("newco", "New Co", "supplier", USCC["factory"]),
        "uscc_exists",
        field="uscc",
    )
    refused(
        app,
        lambda: app.ledger.register_organisation("newco", "New Co", "supplier", " " + USCC["factory"].lower()),
        "uscc_exists",
        field="uscc",
    )


def test_an_org_id_can_be_registered_once(world: App) -> None:
    refused(
        world,
        lambda: world.ledger.register_organisation("factory", "Again", "supplier", make_uscc("91320300134789002")),
        "party_exists",
        field="org_id",
    )


@pytest.mark.parametrize(
    "uscc",
    [
        USCC["factory"][:-1] + ("0" if USCC["factory"][-1] != "0" else "1"),  # wrong check character
        USCC["factory"][:17],
        USCC["factory"] + "0",
        "91320300134780001I",
        "",
        "９１３２０３００１３４７８０００１Ｘ",
    ],
)
def test_an_invalid_uscc_is_refused(world: App, uscc: str) -> None:
    refused(
        world,
        lambda: world.ledger.register_organisation("newco", "New Co", "supplier", uscc),
        "invalid_uscc",
        field="uscc",
    )


def test_registering_a_new_organisation(app: App) -> None:
    onboard(app, "xcmg", "factory")
    receipt = app.ledger.register_organisation("newco", "New Co", "bank", make_uscc("91320300134789003"))
    assert receipt.result == {"org_id": "newco", "key_id": "k1"}
    party = app.queries.party("newco")
    assert (party.role.value, party.uscc, party.created_seq) == ("bank", make_uscc("91320300134789003"), receipt.seq)
    assert [p.org_id for p in app.queries.parties()] == ["factory", "newco", "xcmg"]
    assert log_size(app) == 3
    app.verify()
