"""Ledger operations as typed values, and their one payload form (what is signed and logged).

`parse` is the gate for untrusted input (HTTP bodies, client-signed operations, log entries during
replay): every field is checked for type and shape and a bad one is named in the error. `payload`
is its inverse; ``parse(payload(op)) == op`` for every valid op (tested).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from creditflow.kernel.errors import InvalidInput
from creditflow.kernel.money import check_amount_minor, check_currency
from creditflow.kernel.uscc import validate_uscc
from creditflow.ledger.model.parties import Role

PAYLOAD_VERSION = 1
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_SPLIT_PIECES = 1000  # structural cap; the configurable, usually smaller, fan-out is enforced by the service
MAX_TEXT = 200


def _bad(field: str, rule: str, code: str = "invalid_input") -> InvalidInput:
    return InvalidInput(f"{field}: {rule}", code=code, field=field)


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(name, "must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise _bad(name, f"must be at most {MAX_TEXT} characters")
    return value


def _ident(data: Mapping[str, Any], name: str) -> str:
    value = _str(data, name)
    if not _ID_RE.fullmatch(value):
        raise _bad(name, "must be 1-64 characters of letters, digits and _ . : - (starting with a letter or digit)")
    return value


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def check_ident(value: object, name: str) -> str:
    """An identifier (org, key, payable ids): the rule every such field of an operation follows."""
    return _ident({name: value}, name)


def check_uuid(value: object, name: str) -> str:
    """An operation, piece or certificate id: a lower-case hyphenated UUID."""
    return _uuid({name: value}, name)


def _uuid(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise _bad(name, "must be a UUID in lower-case hyphenated form")
    return value


def _int(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "must be an integer")
    return value


def _amount(data: Mapping[str, Any], name: str) -> int:
    return check_amount_minor(data.get(name), field=name)


def _date(data: Mapping[str, Any], name: str) -> dt.date:
    value = _str(data, name)
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise _bad(name, "must be a date YYYY-MM-DD") from exc
    if parsed.isoformat() != value:
        raise _bad(name, "must be a date YYYY-MM-DD")
    return parsed


def _hex32(data: Mapping[str, Any], name: str) -> bytes:
    value = _str(data, name)
    if not _HEX64_RE.fullmatch(value):
        raise _bad(name, "must be 64 lower-case hex characters")
    return bytes.fromhex(value)


_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class References:
    """The rows an operation may read: what the sequencer loads for it before running the rules."""

    pieces: frozenset[str] = _NONE
    certificates: frozenset[str] = _NONE
    parties: frozenset[str] = _NONE


@dataclass(frozen=True, slots=True)
class Operation:
    """Fields every operation has: a client-chosen unique id (replay protection) and the acting party.

    Each type declares the rows it may read (`references`) and who must sign it (`signers`); the
    sequencer loads by the first and the entry checks demand the second, so adding a type touches
    its model, its rule and the service that issues it."""

    TYPE: ClassVar[str] = ""
    op_id: str
    actor: str

    def references(self) -> References:
        """The pieces, certificates and parties this operation may read (always its actor)."""
        return References(parties=frozenset((self.actor,)))

    def signers(self) -> tuple[str, ...]:
        """Who must sign: the actor (issuer for issue, holder for transfer/split, recipient for accept...)."""
        return (self.actor,)


@dataclass(frozen=True, slots=True)
class _OnPiece(Operation):
    """An operation on one piece, read by its actor."""

    piece_id: str

    def references(self) -> References:
        return References(pieces=frozenset((self.piece_id,)), parties=frozenset((self.actor,)))


@dataclass(frozen=True, slots=True)
class RegisterParty(Operation):
    TYPE: ClassVar[str] = "register_party"
    org_id: str
    name: str
    role: Role
    uscc: str
    key_id: str
    public_key: bytes

    def references(self) -> References:
        return References(parties=frozenset((self.actor, self.org_id)))


@dataclass(frozen=True, slots=True)
class RotateKey(Operation):
    TYPE: ClassVar[str] = "rotate_key"
    org_id: str
    key_id: str
    public_key: bytes

    def references(self) -> References:
        return References(parties=frozenset((self.actor, self.org_id)))


@dataclass(frozen=True, slots=True)
class Issue(Operation):
    TYPE: ClassVar[str] = "issue"
    to: str
    face_minor: int
    currency: str
    issue_date: dt.date
    maturity_date: dt.date
    accept_by_ms: int
    payable_id: str
    payable_digest: str

    def references(self) -> References:
        return References(parties=frozenset((self.actor, self.to)))


@dataclass(frozen=True, slots=True)
class Accept(_OnPiece):
    TYPE: ClassVar[str] = "accept"


@dataclass(frozen=True, slots=True)
class Reject(_OnPiece):
    TYPE: ClassVar[str] = "reject"


@dataclass(frozen=True, slots=True)
class Expire(_OnPiece):
    TYPE: ClassVar[str] = "expire"


@dataclass(frozen=True, slots=True)
class Transfer(_OnPiece):
    TYPE: ClassVar[str] = "transfer"
    to: str
    amount_minor: int
    accept_by_ms: int
    # Digest of the trade invoice between holder (buyer) and recipient (seller) that this payment settles.
    # Optional in the payload (omitted when None); the service requires it when policy says so.
    trade_ref: str | None = None

    def references(self) -> References:
        return References(pieces=frozenset((self.piece_id,)), parties=frozenset((self.actor, self.to)))


@dataclass(frozen=True, slots=True)
class Split(_OnPiece):
    TYPE: ClassVar[str] = "split"
    amounts_minor: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Freeze(_OnPiece):
    TYPE: ClassVar[str] = "freeze"
    reason: str


@dataclass(frozen=True, slots=True)
class Unfreeze(_OnPiece):
    TYPE: ClassVar[str] = "unfreeze"
    reason: str


@dataclass(frozen=True, slots=True)
class Revoke(Operation):
    TYPE: ClassVar[str] = "revoke"
    certificate_id: str

    def references(self) -> References:
        return References(certificates=frozenset((self.certificate_id,)), parties=frozenset((self.actor,)))


def _amounts(data: Mapping[str, Any], name: str) -> tuple[int, ...]:
    value = data.get(name)
    if not isinstance(value, list) or len(value) < 2:
        raise _bad(name, "must be a list of at least two amounts")
    if len(value) > MAX_SPLIT_PIECES:
        raise _bad(name, f"must have at most {MAX_SPLIT_PIECES} amounts", code="split_fanout_exceeded")
    return tuple(check_amount_minor(v, field=f"{name}[{i}]") for i, v in enumerate(value))


def _role(data: Mapping[str, Any], name: str) -> Role:
    value = _str(data, name)
    try:
        return Role(value)
    except ValueError as exc:
        raise _bad(name, f"must be one of {[r.value for r in Role]}") from exc


def _public_key(data: Mapping[str, Any], name: str) -> bytes:
    return _hex32(data, name)


def _digest(data: Mapping[str, Any], name: str) -> str:
    return _hex32(data, name).hex()


_FIELD_PARSERS: dict[str, Callable[[Mapping[str, Any], str], Any]] = {
    "op_id": _uuid,
    "actor": _ident,
    "org_id": _ident,
    "name": _str,
    "role": _role,
    "uscc": lambda d, n: validate_uscc(_str(d, n), field=n),
    "key_id": _ident,
    "public_key": _public_key,
    "to": _ident,
    "face_minor": _amount,
    "amount_minor": _amount,
    "currency": lambda d, n: check_currency(d.get(n), field=n),
    "issue_date": _date,
    "maturity_date": _date,
    "accept_by_ms": _int,
    "payable_id": _ident,
    "payable_digest": _digest,
    "piece_id": _uuid,
    "certificate_id": _uuid,
    "amounts_minor": _amounts,
    "reason": _str,
}

OPERATION_TYPES: dict[str, type[Operation]] = {
    cls.TYPE: cls
    for cls in (
        RegisterParty,
        RotateKey,
        Issue,
        Accept,
        Reject,
        Expire,
        Transfer,
        Split,
        Freeze,
        Unfreeze,
        Revoke,
    )
}


@dataclass(frozen=True, slots=True)
class Finance(_OnPiece):
    """A bank buys (all or part of) a piece: signed by the holder (actor) AND the bank."""

    TYPE: ClassVar[str] = "finance"
    bank: str
    amount_minor: int
    agreement_digest: str

    def references(self) -> References:
        return References(pieces=frozenset((self.piece_id,)), parties=frozenset((self.actor, self.bank)))

    def signers(self) -> tuple[str, ...]:
        return (self.actor, self.bank)


@dataclass(frozen=True, slots=True)
class Clear(Operation):
    """At maturity, after the issuer's payment: every outstanding piece is paid and closed.
    ``piece_ids`` lists the payment file's lines; they must add up to the face value."""

    TYPE: ClassVar[str] = "clear"
    certificate_id: str
    payment_ref: str
    piece_ids: tuple[str, ...]

    def references(self) -> References:
        return References(
            pieces=frozenset(self.piece_ids),
            certificates=frozenset((self.certificate_id,)),
            parties=frozenset((self.actor,)),
        )


@dataclass(frozen=True, slots=True)
class MarkOverdue(Operation):
    """The issuer did not pay at maturity: every outstanding piece becomes overdue."""

    TYPE: ClassVar[str] = "mark_overdue"
    certificate_id: str
    piece_ids: tuple[str, ...]

    def references(self) -> References:
        return References(
            pieces=frozenset(self.piece_ids),
            certificates=frozenset((self.certificate_id,)),
            parties=frozenset((self.actor,)),
        )


OPERATION_TYPES.update({cls.TYPE: cls for cls in (Finance, Clear, MarkOverdue)})
OPTIONAL_FIELDS = frozenset({"trade_ref"})


def _piece_ids(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name)
    if not isinstance(value, list) or not value:
        raise _bad(name, "must be a non-empty list of piece ids")
    if len(value) > MAX_SPLIT_PIECES * 100:
        raise _bad(name, "has too many piece ids")
    ids = tuple(_uuid({"id": v}, "id") for v in value)
    if len(set(ids)) != len(ids):
        raise _bad(name, "lists a piece twice")
    return ids


def _optional_digest(data: Mapping[str, Any], name: str) -> str | None:
    return None if data.get(name) is None else _digest(data, name)


_FIELD_PARSERS.update(
    {
        "bank": _ident,
        "agreement_digest": _digest,
        "payment_ref": _str,
        "piece_ids": _piece_ids,
        "trade_ref": _optional_digest,
    }
)


def parse(data: Any) -> Operation:
    """Turn an untrusted payload into an `Operation`, or raise `InvalidInput` naming the bad field."""
    if not isinstance(data, Mapping):
        raise _bad("operation", "must be an object")
    version = data.get("v")
    if type(version) is not int or version != PAYLOAD_VERSION:
        raise _bad("v", f"must be {PAYLOAD_VERSION}", code="unsupported_version")
    kind = data.get("type")
    cls = OPERATION_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise _bad("type", f"must be one of {sorted(OPERATION_TYPES)}", code="unknown_operation")
    names = [f.name for f in fields(cls)]
    unknown = set(data) - set(names) - {"v", "type"}
    if unknown:
        raise _bad(sorted(map(str, unknown))[0], f"is not a field of {kind}")
    values = {name: _FIELD_PARSERS[name](data, name) for name in names}
    return cls(**values)


def payload(op: Operation) -> dict[str, Any]:
    """The canonical-encodable dict of ``op``: what is signed and what goes into the log."""
    out: dict[str, Any] = {"v": PAYLOAD_VERSION, "type": op.TYPE}
    for f in fields(op):
        value = getattr(op, f.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Role):
            value = value.value
        elif value is None and f.name in OPTIONAL_FIELDS:
            continue  # absent, so payloads written before the field existed keep their bytes
        out[f.name] = value
    return out


_Op = TypeVar("_Op", bound=Operation)


def checked(op: _Op) -> _Op:
    """A typed operation a service built, held to the same field rules as `parse`: a bad value (a piece
    id from a URL that is not a UUID, a negative amount) is refused with the error `parse` gives, and
    the result is in payload normal form (``payload(checked(op))`` is what is signed)."""
    parsed = parse(payload(op))
    assert isinstance(parsed, type(op))
    return parsed


# --- who an entry names ------------------------------------------------------------------------------

# The fields of an operation that hold an organisation the operation is about. Every other identifier field
# (key ids, payable ids) names a thing, not a party: `tests/unit/test_parties_named.py` checks that every
# identifier field of every operation type is in one list or the other, so a new party field cannot be
# forgotten here.
PARTY_FIELDS = ("actor", "org_id", "to", "bank")
NOT_PARTY_FIELDS = ("key_id", "payable_id")


def parties_named(op: Operation) -> frozenset[str]:
    """The organisations an operation names: its actor, the recipient of an issue or a transfer, the bank
    that co-signs a financing, the organisation a registration or a key rotation is about.

    These are the parties entitled to the entry's inclusion proof (with the operator and the auditor):
    the entry is theirs to show a court or a bank. Parties an operation reaches only through the state
    (the sender of a piece that an accept takes, the holder of a frozen piece) are not named by it, so
    they do not get its proof by this rule; they get the proof of the entry that names them."""
    return frozenset(v for name in PARTY_FIELDS if isinstance(v := getattr(op, name, None), str))
