"""Typed operations: for every type, the dict path (`ops.parse`) and the typed path (a service building the
frozen dataclass) give equal objects and identical signed bytes; `references()` and `signers()` declare
what the sequencer loads and who must sign, as the field-name rules they replaced did."""

from __future__ import annotations

import datetime as dt
from dataclasses import fields
from typing import Any

import pytest

from creditflow.kernel.encoding import encode
from creditflow.kernel.errors import InvalidInput
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.parties import PLATFORM, Role
from creditflow.ledger.signing import op_message

OP = "0b7c3f3e-8d0c-4c8e-9a55-1f6f0f0a1b2c"
P1 = "11111111-1111-4111-8111-111111111111"
P2 = "22222222-2222-4222-8222-222222222222"
C1 = "33333333-3333-4333-8333-333333333333"
KEY = bytes(range(32))
DIGEST = "ab" * 32

# (the untrusted dict a client or the log gives, the typed value a service builds)
CASES: list[tuple[dict[str, Any], ops.Operation]] = [
    (
        {
            "type": "register_party",
            "actor": PLATFORM,
            "org_id": "acme",
            "name": "Acme 有限公司",
            "role": "core_enterprise",
            "uscc": "91350100M000100Y43",
            "key_id": "k1",
            "public_key": KEY.hex(),
        },
        ops.RegisterParty(
            op_id=OP,
            actor=PLATFORM,
            org_id="acme",
            name="Acme 有限公司",
            role=Role.CORE_ENTERPRISE,
            uscc="91350100M000100Y43",
            key_id="k1",
            public_key=KEY,
        ),
    ),
    (
        {"type": "rotate_key", "actor": "acme", "org_id": "acme", "key_id": "k2", "public_key": KEY.hex()},
        ops.RotateKey(op_id=OP, actor="acme", org_id="acme", key_id="k2", public_key=KEY),
    ),
    (
        {
            "type": "issue",
            "actor": "acme",
            "to": "supp",
            "face_minor": 100_000_00,
            "currency": "CNY",
            "issue_date": "2026-01-05",
            "maturity_date": "2026-07-05",
            "accept_by_ms": 1_770_000_000_000,
            "payable_id": "pay-1",
            "payable_digest": DIGEST,
        },
        ops.Issue(
            op_id=OP,
            actor="acme",
            to="supp",
            face_minor=100_000_00,
            currency="CNY",
            issue_date=dt.date(2026, 1, 5),
            maturity_date=dt.date(2026, 7, 5),
            accept_by_ms=1_770_000_000_000,
            payable_id="pay-1",
            payable_digest=DIGEST,
        ),
    ),
    ({"type": "accept", "actor": "supp", "piece_id": P1}, ops.Accept(op_id=OP, actor="supp", piece_id=P1)),
    ({"type": "reject", "actor": "supp", "piece_id": P1}, ops.Reject(op_id=OP, actor="supp", piece_id=P1)),
    ({"type": "expire", "actor": PLATFORM, "piece_id": P1}, ops.Expire(op_id=OP, actor=PLATFORM, piece_id=P1)),
    (
        {"type": "transfer", "actor": "supp", "piece_id": P1, "to": "t2", "amount_minor": 5, "accept_by_ms": 9},
        ops.Transfer(op_id=OP, actor="supp", piece_id=P1, to="t2", amount_minor=5, accept_by_ms=9),
    ),
    (
        {
            "type": "transfer",
            "actor": "supp",
            "piece_id": P1,
            "to": "t2",
            "amount_minor": 5,
            "accept_by_ms": 9,
            "trade_ref": DIGEST,
        },
        ops.Transfer(op_id=OP, actor="supp", piece_id=P1, to="t2", amount_minor=5, accept_by_ms=9, trade_ref=DIGEST),
    ),
    (
        {"type": "split", "actor": "supp", "piece_id": P1, "amounts_minor": [3, 7, 1]},
        ops.Split(op_id=OP, actor="supp", piece_id=P1, amounts_minor=(3, 7, 1)),
    ),
    (
        {"type": "freeze", "actor": "bank", "piece_id": P1, "reason": "court order"},
        ops.Freeze(op_id=OP, actor="bank", piece_id=P1, reason="court order"),
    ),
    (
        {"type": "unfreeze", "actor": "bank", "piece_id": P1, "reason": "lifted"},
        ops.Unfreeze(op_id=OP, actor="bank", piece_id=P1, reason="lifted"),
    ),
    (
        {"type": "revoke", "actor": "acme", "certificate_id": C1},
        ops.Revoke(op_id=OP, actor="acme", certificate_id=C1),
    ),
    (
        {
            "type": "finance",
            "actor": "supp",
            "piece_id": P1,
            "bank": "bank",
            "amount_minor": 5,
            "agreement_digest": DIGEST,
        },
        ops.Finance(op_id=OP, actor="supp", piece_id=P1, bank="bank", amount_minor=5, agreement_digest=DIGEST),
    ),
    (
        {"type": "clear", "actor": PLATFORM, "certificate_id": C1, "payment_ref": "PAY-9", "piece_ids": [P2, P1]},
        ops.Clear(op_id=OP, actor=PLATFORM, certificate_id=C1, payment_ref="PAY-9", piece_ids=(P2, P1)),
    ),
    (
        {"type": "mark_overdue", "actor": PLATFORM, "certificate_id": C1, "piece_ids": [P1, P2]},
        ops.MarkOverdue(op_id=OP, actor=PLATFORM, certificate_id=C1, piece_ids=(P1, P2)),
    ),
]


def _by_field_names(op: ops.Operation) -> tuple[set[str], set[str], set[str]]:
    """The sequencer's former guess from field names, kept here as the reference for `references()`."""
    piece_ids: set[str] = set()
    cert_ids: set[str] = set()
    party_ids = {op.actor}
    if hasattr(op, "piece_id"):
        piece_ids.add(op.piece_id)
    if hasattr(op, "piece_ids"):
        piece_ids.update(op.piece_ids)
    if hasattr(op, "certificate_id"):
        cert_ids.add(op.certificate_id)
    for name in ("to", "org_id", "bank"):
        if hasattr(op, name):
            party_ids.add(getattr(op, name))
    return piece_ids, cert_ids, party_ids


def test_every_operation_type_has_a_case() -> None:
    assert {typed.TYPE for _, typed in CASES} == set(ops.OPERATION_TYPES)


@pytest.mark.parametrize(("data", "typed"), CASES, ids=[f"{t.TYPE}-{i}" for i, (_, t) in enumerate(CASES)])
def test_dict_path_and_typed_path_agree(data: dict[str, Any], typed: ops.Operation) -> None:
    parsed = ops.parse({"v": ops.PAYLOAD_VERSION, "op_id": OP, **data})
    assert parsed == typed
    assert ops.checked(typed) == typed
    assert ops.payload(typed) == ops.payload(parsed) == {"v": ops.PAYLOAD_VERSION, "op_id": OP, **data}
    assert encode(ops.payload(typed)) == encode(ops.payload(parsed))
    assert op_message(ops.payload(typed)) == op_message(ops.payload(parsed))


@pytest.mark.parametrize(("data", "typed"), CASES, ids=[f"{t.TYPE}-{i}" for i, (_, t) in enumerate(CASES)])
def test_references_and_signers(data: dict[str, Any], typed: ops.Operation) -> None:
    refs = typed.references()
    assert (set(refs.pieces), set(refs.certificates), set(refs.parties)) == _by_field_names(typed)
    expected = (typed.actor, typed.bank) if isinstance(typed, ops.Finance) else (typed.actor,)
    assert typed.signers() == expected
    assert {f.name for f in fields(typed)} >= {"op_id", "actor"}


def test_checked_refuses_what_parse_refuses() -> None:
    bad = ops.Accept(op_id=OP, actor="supp", piece_id="not-a-uuid")
    with pytest.raises(InvalidInput) as typed_err:
        ops.checked(bad)
    with pytest.raises(InvalidInput) as dict_err:
        ops.parse({"v": 1, "type": "accept", "op_id": OP, "actor": "supp", "piece_id": "not-a-uuid"})
    assert (typed_err.value.code, typed_err.value.field, typed_err.value.message) == (
        dict_err.value.code,
        dict_err.value.field,
        dict_err.value.message,
    )
