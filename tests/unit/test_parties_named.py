"""Who an entry names (`parties_named`): the parties entitled to its inclusion proof. One expectation per
operation type (a new type fails until it has one), and every identifier field of every type is classified
as a party or not, so a new field naming an organisation cannot slip past the rule."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_typed_operations import CASES

from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.parties import PLATFORM

# operation type -> the parties its CASES entry names (CASES: tests/unit/test_typed_operations.py)
EXPECTED: dict[str, frozenset[str]] = {
    "register_party": frozenset({PLATFORM, "acme"}),  # the platform registers acme: acme gets the proof
    "rotate_key": frozenset({"acme"}),
    "issue": frozenset({"acme", "supp"}),  # issuer and recipient
    "accept": frozenset({"supp"}),
    "reject": frozenset({"supp"}),
    "expire": frozenset({PLATFORM}),
    "transfer": frozenset({"supp", "t2"}),  # holder and recipient
    "split": frozenset({"supp"}),
    "freeze": frozenset({"bank"}),
    "unfreeze": frozenset({"bank"}),
    "revoke": frozenset({"acme"}),
    "finance": frozenset({"supp", "bank"}),  # holder and the co-signing bank
    "clear": frozenset({PLATFORM}),
    "mark_overdue": frozenset({PLATFORM}),
}


def test_every_operation_type_has_an_expectation() -> None:
    assert set(EXPECTED) == set(ops.OPERATION_TYPES)
    assert {typed.TYPE for _, typed in CASES} == set(ops.OPERATION_TYPES)


@pytest.mark.parametrize("typed", [t for _, t in CASES], ids=[f"{t.TYPE}-{i}" for i, (_, t) in enumerate(CASES)])
def test_parties_named_per_operation_type(typed: ops.Operation) -> None:
    assert ops.parties_named(typed) == EXPECTED[typed.TYPE]
    # The parties the operation names are among those it reads, and include everyone who must sign it.
    assert ops.parties_named(typed) <= typed.references().parties
    assert set(typed.signers()) <= ops.parties_named(typed)


def test_a_registration_by_another_names_both() -> None:
    op = ops.RotateKey(op_id=CASES[0][1].op_id, actor=PLATFORM, org_id="acme", key_id="k3", public_key=bytes(32))
    assert ops.parties_named(op) == {PLATFORM, "acme"}


def test_every_identifier_field_is_classified() -> None:
    """A field parsed as an organisation-shaped identifier is either a party or declared not to be one."""
    identifier_fields = {
        f.name
        for cls in ops.OPERATION_TYPES.values()
        for f in fields(cls)
        if ops._FIELD_PARSERS.get(f.name) is ops._ident
    }
    assert identifier_fields == set(ops.PARTY_FIELDS) | set(ops.NOT_PARTY_FIELDS)
    assert not set(ops.PARTY_FIELDS) & set(ops.NOT_PARTY_FIELDS)


ORG = st.from_regex(r"\A[a-z][a-z0-9-]{0,15}\Z")


@given(actor=ORG, to=ORG, bank=ORG, amount=st.integers(1, 10**12))
def test_a_stranger_is_never_named(actor: str, to: str, bank: str, amount: int) -> None:
    """Whoever is not in an operation's party fields is not named, whatever the amounts or ids."""
    piece = "11111111-1111-4111-8111-111111111111"
    transfer = ops.Transfer(
        op_id=CASES[0][1].op_id, actor=actor, piece_id=piece, to=to, amount_minor=amount, accept_by_ms=1
    )
    finance = ops.Finance(
        op_id=CASES[0][1].op_id, actor=actor, piece_id=piece, bank=bank, amount_minor=amount, agreement_digest="ab" * 32
    )
    assert ops.parties_named(transfer) == {actor, to}
    assert ops.parties_named(finance) == {actor, bank}
    stranger = actor + to + bank + "-x"
    assert stranger not in ops.parties_named(transfer) | ops.parties_named(finance)
