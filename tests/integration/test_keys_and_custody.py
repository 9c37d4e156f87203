"""Signatures, keys and custody, on SQLite and PostgreSQL.

Platform custody (the platform holds an organisation's sealed key and signs for it) and self custody (the
organisation signs on its own side and calls `submit_signed`) end in the same check against the key
registered on the ledger. Every refusal is checked for its code and that it changed nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import ROLES, START_MS, issue_accepted, make_settings, onboard, table_rows
from creditflow.bootstrap import App, build
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.errors import DomainError
from creditflow.kernel.uscc import make_uscc
from creditflow.ledger.custody import WrongPassphrase
from creditflow.ledger.entries import SignatureBlock, SignedOperation, parse_entry, sign_operation
from creditflow.ledger.model.certificates import PieceState
from creditflow.ledger.model.parties import PLATFORM
from creditflow.ledger.signing import Signer, op_message, verify_signature
from creditflow.ledger.tables import (
    certificates,
    custody_keys,
    custody_meta,
    ledger_entries,
    log_head,
    log_key_custody,
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
DAY_MS = 86_400_000
SELF_USCC = make_uscc("91320300134789100")
ANY = object()
CHECK_PLAINTEXT = b"creditflow custody check v1"  # what custody_meta.check_box seals
PLATFORM_CUSTODY = sorted(ROLES)
ROLES_SEQ = {name: i for i, name in enumerate(ROLES)}  # onboard registers the cast in this order
SELFCO_SEQ = len(ROLES)  # registered right after the cast
TABLES = (
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
    custody_meta,
    custody_keys,
)


# --------------------------------------------------------------------------------------------------
# helpers


def snapshot(app: App) -> dict[str, Any]:
    state: dict[str, Any] = dict(table_rows(app, TABLES))
    q = app.queries
    state["queries"] = (
        [q.pieces_by_holder(org, live_only=False, limit=500).items for org in [*ROLES, "selfco"]],
        q.liability("xcmg"),
        q.circulation_by_tier(),
    )
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


def payload(actor: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "op_id": str(uuid.uuid4()), "actor": actor, **fields}


def signed(signer: Signer, actor: str, **fields: Any) -> SignedOperation:
    """An operation built and signed by hand, as a self-custody client does it."""
    return sign_operation(payload(actor, **fields), [signer])


def resigned(op: SignedOperation, *blocks: SignatureBlock) -> SignedOperation:
    return SignedOperation(payload=op.payload, op=op.op, sigs=blocks)


def issue_to(app: App, holder: str, face: int = FACE) -> str:
    """Issue a certificate from xcmg to ``holder`` (pending); return the root piece id."""
    payable = app.payables.create_payable("xcmg", holder, face, f"PO-{uuid.uuid4().hex[:8]}")
    return str(app.ledger.issue("xcmg", payable.id, face, dt.date(2026, 9, 1)).result["piece_id"])


def keys_of(app: App, org: str) -> dict[str, tuple[bytes, int, int | None]]:
    with app.engine.connect() as conn:
        rows = conn.execute(select(party_keys).where(party_keys.c.org_id == org)).all()
    return {r.key_id: (bytes(r.public_key), r.valid_from_seq, r.revoked_at_seq) for r in rows}


def custody_rows(app: App, org: str) -> dict[str, bool]:
    with app.engine.connect() as conn:
        rows = conn.execute(select(custody_keys).where(custody_keys.c.org_id == org)).all()
    return {r.key_id: bool(r.retired) for r in rows}


@pytest.fixture
def selfco(world: App) -> Signer:
    """A supplier that keeps its own private key: the platform only ever sees the public half."""
    signer = Signer.generate("k1")
    world.ledger.register_organisation("selfco", "Self Co", "supplier", SELF_USCC, public_key=signer.public_key)
    return signer


# --------------------------------------------------------------------------------------------------
# self custody


def test_a_self_custody_organisation_signs_its_own_operations(world: App, selfco: Signer, clock: ManualClock) -> None:
    app, q = world, world.queries
    assert custody_rows(app, "selfco") == {}
    assert keys_of(app, "selfco") == {"k1": (selfco.public_key, SELFCO_SEQ, None)}

    root = issue_to(app, "selfco")
    refused(app, lambda: app.ledger.accept("selfco", root), "no_custody_key")

    accepted = app.ledger.submit_signed(signed(selfco, "selfco", type="accept", piece_id=root))
    assert accepted.op_type == "accept"
    assert q.piece(root).state == PieceState.ACTIVE

    parts = app.ledger.submit_signed(
        signed(selfco, "selfco", type="split", piece_id=root, amounts_minor=[700_000 * YUAN, 300_000 * YUAN])
    ).result["piece_ids"]
    sent = app.ledger.submit_signed(
        signed(
            selfco,
            "selfco",
            type="transfer",
            piece_id=parts[0],
            to="factory",
            amount_minor=700_000 * YUAN,
            accept_by_ms=clock.now_ms() + DAY_MS,
        )
    ).result["piece_id"]
    app.ledger.accept("factory", sent)  # platform custody on the other side
    assert [(p.holder, p.amount_minor, p.tier) for p in q.pieces_by_holder("factory").items] == [
        ("factory", 700_000 * YUAN, 2)
    ]
    assert [p.amount_minor for p in q.pieces_by_holder("selfco").items] == [300_000 * YUAN]
    assert app.verify().entries == log_size(app)


def test_a_signed_operation_travels_as_json(world: App, selfco: Signer) -> None:
    root = issue_to(world, "selfco")
    wire = signed(selfco, "selfco", type="accept", piece_id=root).to_json()
    receipt = world.ledger.submit_signed(SignedOperation.from_json(wire))
    assert receipt.result == {"piece_id": root}


def test_platform_and_self_custody_are_verified_the_same_way(world: App, selfco: Signer) -> None:
    app = world
    root = issue_to(app, "selfco")
    app.ledger.submit_signed(signed(selfco, "selfco", type="accept", piece_id=root))
    factory_piece = issue_accepted(app)
    app.ledger.split("factory", factory_piece, [1, FACE - 1])

    with app.engine.connect() as conn:
        entries = [parse_entry(bytes(r.entry)) for r in conn.execute(select(ledger_entries).order_by("seq"))]
    signers_seen = set()
    for entry in entries:
        [block] = entry.signed.sigs
        assert block.signer == entry.signed.op.actor
        message = op_message(entry.signed.payload)
        if block.signer == PLATFORM:
            assert verify_signature(app.log_signer.public_key, message, block.sig)
            continue
        public, valid_from, revoked_at = keys_of(app, block.signer)[block.key_id]
        assert valid_from <= entry.seq and revoked_at is None
        assert verify_signature(public, message, block.sig)
        signers_seen.add(block.signer)
    assert {"selfco", "factory", "xcmg"} <= signers_seen
    assert keys_of(app, "factory")["k1"][0] == app.custody.signer("factory").public_key
    assert keys_of(app, "selfco")["k1"][0] == selfco.public_key
    app.verify()


# --------------------------------------------------------------------------------------------------
# signatures that must not pass


def test_a_forged_signature_is_refused(world: App, selfco: Signer) -> None:
    app = world
    root = issue_to(app, "selfco")
    forger = Signer.generate("k1")  # same key id, another key
    refused(
        app, lambda: app.ledger.submit_signed(signed(forger, "selfco", type="accept", piece_id=root)), "bad_signature"
    )

    factory_root = issue_to(app, "factory")
    forged = signed(forger, "factory", type="accept", piece_id=factory_root)  # a platform-custody org, forged
    refused(app, lambda: app.ledger.submit_signed(forged), "bad_signature", field="sigs")

    genuine = signed(selfco, "selfco", type="accept", piece_id=root)
    other_piece = issue_to(app, "selfco")
    tampered = dataclasses.replace(
        genuine,
        payload={**genuine.payload, "piece_id": other_piece},
        op=dataclasses.replace(genuine.op, piece_id=other_piece),  # type: ignore[call-arg]
    )
    refused(app, lambda: app.ledger.submit_signed(tampered), "bad_signature", field="sigs")
    bad_bytes = resigned(genuine, SignatureBlock("selfco", "k1", bytes(64)))
    refused(app, lambda: app.ledger.submit_signed(bad_bytes), "bad_signature", field="sigs")

    app.ledger.submit_signed(genuine)  # the real one still goes through


def test_the_right_key_id_under_the_wrong_signer_name_is_refused(world: App, selfco: Signer) -> None:
    app = world
    root = issue_to(app, "selfco")
    genuine = signed(selfco, "selfco", type="accept", piece_id=root)
    [block] = genuine.sigs
    as_steel = resigned(genuine, SignatureBlock("steel", block.key_id, block.sig))
    refused(app, lambda: app.ledger.submit_signed(as_steel), "bad_signature", field="sigs")
    both = resigned(genuine, block, SignatureBlock("steel", block.key_id, block.sig))
    refused(app, lambda: app.ledger.submit_signed(both), "bad_signature", field="sigs")
    unsigned = resigned(genuine)
    refused(app, lambda: app.ledger.submit_signed(unsigned), "bad_signature", field="sigs")

    # the factory's own key, presented as the factory's, over an operation whose actor is selfco
    factory = app.custody.signer("factory")
    by_factory = resigned(genuine, SignatureBlock("factory", "k1", factory.sign(genuine.message)))
    refused(app, lambda: app.ledger.submit_signed(by_factory), "bad_signature", field="sigs")


def test_a_replayed_operation_is_refused_and_logged_once(world: App, selfco: Signer) -> None:
    app = world
    root = issue_to(app, "selfco")
    op = signed(selfco, "selfco", type="accept", piece_id=root)
    size = log_size(app)

    first = app.ledger.submit_signed(op)
    assert log_size(app) == size + 1
    refused(app, lambda: app.ledger.submit_signed(op), "replayed_operation", field="op_id")
    assert log_size(app) == size + 1

    # the same op_id with other content, freshly signed, is still a replay
    again = sign_operation({**op.payload, "type": "reject"}, [selfco])
    refused(app, lambda: app.ledger.submit_signed(again), "replayed_operation", field="op_id")
    assert first.seq == size


def test_an_unknown_key_id_is_refused(world: App, selfco: Signer) -> None:
    app = world
    root = issue_to(app, "selfco")
    genuine = signed(selfco, "selfco", type="accept", piece_id=root)
    [block] = genuine.sigs
    other_id = resigned(genuine, SignatureBlock("selfco", "k9", block.sig))
    refused(app, lambda: app.ledger.submit_signed(other_id), "unknown_key", field="sigs")

    stranger = Signer.generate("k1")
    refused(
        app,
        lambda: app.ledger.submit_signed(signed(stranger, "ghost", type="accept", piece_id=root)),
        "unknown_key",
        field="sigs",
    )


def test_clients_cannot_submit_platform_operations(world: App, selfco: Signer) -> None:
    app = world
    root = issue_to(app, "selfco")
    as_platform = sign_operation(payload(PLATFORM, type="expire", piece_id=root), [app.log_signer])
    refused(app, lambda: app.ledger.submit_signed(as_platform), "role_not_allowed")
    register = signed(
        selfco,
        "selfco",
        type="register_party",
        org_id="sockpuppet",
        name="Sock",
        role="supplier",
        uscc=make_uscc("91320300134789101"),
        key_id="k1",
        public_key=selfco.public_key.hex(),
    )
    refused(app, lambda: app.ledger.submit_signed(register), "role_not_allowed")


# --------------------------------------------------------------------------------------------------
# key rotation


def test_rotating_a_custodied_key(world: App) -> None:
    app, q = world, world.queries
    root = issue_to(app, "factory")
    old = app.custody.signer("factory")
    signed_before = signed(old, "factory", type="accept", piece_id=root)

    rotation = app.ledger.rotate_key("factory")
    assert rotation.result == {"org_id": "factory", "key_id": "k2"}
    new = app.custody.signer("factory")
    assert new.key_id == "k2" and new.public_key != old.public_key
    assert keys_of(app, "factory") == {
        "k1": (old.public_key, ROLES_SEQ["factory"], rotation.seq + 1),
        "k2": (new.public_key, rotation.seq + 1, None),
    }
    assert custody_rows(app, "factory") == {"k1": True, "k2": False}
    with app.engine.connect() as conn:
        entry = parse_entry(
            bytes(conn.execute(select(ledger_entries.c.entry).where(ledger_entries.c.seq == rotation.seq)).scalar_one())
        )
    assert [(b.signer, b.key_id) for b in entry.signed.sigs] == [("factory", "k1")]  # the old key signs the new one

    refused(app, lambda: app.ledger.submit_signed(signed_before), "key_not_valid", field="sigs")
    refused(
        app, lambda: app.ledger.submit_signed(signed(old, "factory", type="accept", piece_id=root)), "key_not_valid"
    )

    app.ledger.accept("factory", root)  # custody now signs with k2
    assert q.piece(root).state == PieceState.ACTIVE
    app.ledger.submit_signed(signed(new, "factory", type="split", piece_id=root, amounts_minor=[1, FACE - 1]))

    second = app.ledger.rotate_key("factory")
    assert second.result["key_id"] == "k3"
    assert custody_rows(app, "factory") == {"k1": True, "k2": True, "k3": False}
    report = app.verify()  # the old signatures still verify where they stand in the log
    assert report.entries == log_size(app)


def test_rotating_a_self_custody_key(world: App, selfco: Signer) -> None:
    app = world
    root = issue_to(app, "selfco")
    new = Signer.generate("k2")

    # The service signs a rotation with the custodied key, so it cannot rotate a key it does not hold.
    refused(app, lambda: app.ledger.rotate_key("selfco", new_public_key=new.public_key), "no_custody_key")

    def rotate(signer: Signer, key_id: str, public: bytes, org: str = "selfco") -> SignedOperation:
        return signed(signer, "selfco", type="rotate_key", org_id=org, key_id=key_id, public_key=public.hex())

    refused(app, lambda: app.ledger.submit_signed(rotate(new, "k2", new.public_key)), "unknown_key", field="sigs")
    refused(app, lambda: app.ledger.submit_signed(rotate(selfco, "k1", new.public_key)), "key_exists", field="key_id")
    refused(
        app, lambda: app.ledger.submit_signed(rotate(selfco, "k2", selfco.public_key)), "key_exists", field="public_key"
    )
    refused(app, lambda: app.ledger.submit_signed(rotate(selfco, "k2", new.public_key, "factory")), "role_not_allowed")

    rotation = app.ledger.submit_signed(rotate(selfco, "k2", new.public_key))
    assert keys_of(app, "selfco") == {
        "k1": (selfco.public_key, SELFCO_SEQ, rotation.seq + 1),
        "k2": (new.public_key, rotation.seq + 1, None),
    }
    assert custody_rows(app, "selfco") == {}

    refused(
        app, lambda: app.ledger.submit_signed(signed(selfco, "selfco", type="accept", piece_id=root)), "key_not_valid"
    )
    app.ledger.submit_signed(signed(new, "selfco", type="accept", piece_id=root))
    assert app.verify().entries == log_size(app)


def test_handing_a_custodied_key_over_to_the_organisation(world: App) -> None:
    app = world
    root = issue_to(app, "factory")
    own = Signer.generate("k2")
    rotation = app.ledger.rotate_key("factory", new_public_key=own.public_key)
    assert rotation.result == {"org_id": "factory", "key_id": "k2"}
    assert custody_rows(app, "factory") == {"k1": True}  # the platform's copy of the old key is retired
    refused(app, lambda: app.ledger.accept("factory", root), "no_custody_key")
    app.ledger.submit_signed(signed(own, "factory", type="accept", piece_id=root))
    app.verify()


def test_a_rotation_to_a_used_key_id_with_a_given_public_key_is_refused(world: App) -> None:
    own = Signer.generate("k1")
    refused(
        world,
        lambda: world.ledger.rotate_key("factory", new_public_key=own.public_key, key_id="k1"),
        "key_exists",
        "key_id",
    )


def test_a_rotation_to_a_used_key_id_is_refused(world: App) -> None:
    refused(world, lambda: world.ledger.rotate_key("factory", key_id="k1"), "key_exists", field="key_id")


# --------------------------------------------------------------------------------------------------
# keys at rest


def _every_stored_byte(app: App, store_url: str) -> list[bytes]:
    chunks: list[bytes] = []
    with app.engine.connect() as conn:
        for table in TABLES:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
    if store_url.startswith("sqlite:///"):
        db = Path(store_url.removeprefix("sqlite:///"))
        chunks += [f.read_bytes() for f in db.parent.glob(db.name + "*")]
    return chunks


def test_private_keys_are_encrypted_at_rest(world: App, store_url: str) -> None:
    app = world
    retired = app.custody.signer("factory")
    app.ledger.rotate_key("factory")
    signers = {org: app.custody.signer(org) for org in PLATFORM_CUSTODY}
    signers[PLATFORM] = app.log_signer
    signers["factory, retired k1"] = retired

    with app.engine.connect() as conn:
        rows = conn.execute(select(custody_keys)).all()
        meta = conn.execute(select(custody_meta)).one()
        log_rows = conn.execute(select(log_key_custody)).all()
    assert len(rows) == len(PLATFORM_CUSTODY) + 1  # every org and the factory's retired k1
    assert PLATFORM not in {r.org_id for r in rows}  # the log key is sealed apart
    assert [r.key_id for r in log_rows] == [app.log_signer.key_id]
    sealed = [bytes(r.sealed_seed) for r in rows] + [bytes(r.sealed_seed) for r in log_rows]
    assert len(set(sealed)) == len(sealed)
    assert all(len(s) == 24 + 32 + 16 for s in sealed)  # nonce + seed + Poly1305 tag
    for s in signers.values():
        assert len(s.seed) == 32
        for box in sealed:
            assert s.seed not in box
    assert CHECK_PLAINTEXT not in bytes(meta.check_box)

    stored = _every_stored_byte(app, store_url)
    for org, s in signers.items():
        assert not any(s.seed in chunk or s.seed.hex().encode() in chunk for chunk in stored), org


def test_a_wrong_passphrase_is_refused_at_start(store_url: str, clock: ManualClock) -> None:
    with build(make_settings(store_url, key_passphrase="the right one"), clock=clock) as first:
        onboard(first, "xcmg", "factory")
        factory_key = first.custody.signer("factory").public_key
        log_key = first.log_signer.public_key
        size = log_size(first)

    with pytest.raises(WrongPassphrase):
        build(make_settings(store_url, key_passphrase="the wrong one"), clock=clock)
    _collect_quietly()

    with build(make_settings(store_url, key_passphrase="the right one"), clock=clock) as again:
        assert log_size(again) == size
        assert again.log_signer.public_key == log_key
        assert again.custody.signer("factory").public_key == factory_key
        issue_accepted(again)  # the reopened keys still sign for xcmg and the factory
        assert again.verify().entries == size + 2


def _collect_quietly() -> list[warnings.WarningMessage]:
    """Collect garbage now, returning (not raising) the ResourceWarnings of connections left open."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_refused_start_leaves_no_connection_open(pg_url: str, clock: ManualClock) -> None:
    build(make_settings(pg_url, key_passphrase="the right one"), clock=clock).close()  # sets the passphrase
    _collect_quietly()
    with pytest.raises(WrongPassphrase):
        build(make_settings(pg_url, key_passphrase="the wrong one"), clock=clock)
    assert _collect_quietly() == []


def test_the_platform_name_cannot_be_taken_by_an_organisation(world: App, store_url: str, clock: ManualClock) -> None:
    refused(
        world,
        lambda: world.ledger.register_organisation(PLATFORM, "Impostor", "supplier", make_uscc("91320300134789102")),
        "invalid_input",
        field="org_id",
    )
    with build(make_settings(store_url), clock=clock) as reopened:
        assert reopened.log_signer.key_id == "log-1"
        assert reopened.log_signer.public_key == world.log_signer.public_key
        reopened.verify()


def test_custodied_keys_survive_a_restart(store_url: str, clock: ManualClock) -> None:
    with build(make_settings(store_url), clock=clock) as first:
        onboard(first)
        first.ledger.rotate_key("steel")
    clock.set(START_MS + DAY_MS)
    with build(make_settings(store_url), clock=clock) as again:
        assert again.custody.signer("steel").key_id == "k2"
        piece = issue_accepted(again, holder="steel")
        assert again.queries.piece(piece).state == PieceState.ACTIVE
        again.verify()
