"""Where a replay of the log stands, and its canonical snapshot: what lets a monitor replay only new entries.

A full `verifier.replay` re-derives everything from entry 0. A monitor that checked the log yesterday already
knows the state after entry ``n - 1``; `ReplayState` is exactly what `verifier.replay_more` needs to go on from
there as if it had never stopped: the ledger state every rule reads (parties, their keys, certificates,
pieces), the operation ids seen (a replayed operation is refused), the last timestamp (time never goes back)
and the Merkle frontier of the leaves so far (so the root of the replayed tree can be compared with a
checkpoint without keeping every node).

`encode_snapshot` writes it as canonical bytes (kernel.encoding, version 1, members sorted, lists in a fixed
order) and `decode_snapshot` refuses anything that does not decode back to the very same bytes, so a snapshot
round-trips exactly and two monitors that replayed the same log hold byte-identical snapshots. The piece
history (`MemoryState.events`) is not part of it: no rule reads it, and it grows with the whole log.

Pure: the standard library, the kernel's encoding and the ledger's models only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from creditflow.kernel.encoding import EncodingError, decode, encode
from creditflow.ledger import merkle
from creditflow.ledger.model.certificates import Certificate, CertificateState, Piece, PieceState
from creditflow.ledger.model.parties import Party, PartyKey, Role
from creditflow.ledger.model.state import MemoryState

SNAPSHOT_KIND = "creditflow.replay_snapshot"
SNAPSHOT_VERSION = 1


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this code wrote (wrong kind or version, malformed, not canonical)."""


@dataclass(slots=True)
class ReplayState:
    """The replay after ``size`` entries (entries ``0 .. size - 1``)."""

    state: MemoryState = field(default_factory=lambda: MemoryState(keep_events=False))
    frontier: merkle.CompactRange = field(default_factory=merkle.CompactRange)
    op_ids: set[str] = field(default_factory=set)
    last_ts_ms: int = 0

    @property
    def size(self) -> int:
        return self.frontier.size

    @property
    def root_hash(self) -> bytes:
        return self.frontier.root()


# --- encoding ------------------------------------------------------------------------------------------


def _party(p: Party) -> dict[str, Any]:
    return {"org_id": p.org_id, "name": p.name, "role": p.role.value, "uscc": p.uscc, "created_seq": p.created_seq}


def _key(k: PartyKey) -> dict[str, Any]:
    return {
        "org_id": k.org_id,
        "key_id": k.key_id,
        "public_key": k.public_key.hex(),
        "valid_from_seq": k.valid_from_seq,
        "revoked_at_seq": k.revoked_at_seq,
    }


def _certificate(c: Certificate) -> dict[str, Any]:
    return {
        "id": c.id,
        "issuer": c.issuer,
        "face_minor": c.face_minor,
        "currency": c.currency,
        "issue_date": c.issue_date.isoformat(),
        "maturity_date": c.maturity_date.isoformat(),
        "payable_id": c.payable_id,
        "payable_digest": c.payable_digest,
        "root_piece_id": c.root_piece_id,
        "state": c.state.value,
        "created_seq": c.created_seq,
    }


def _piece(p: Piece) -> dict[str, Any]:
    return {
        "id": p.id,
        "certificate_id": p.certificate_id,
        "parent_id": p.parent_id,
        "holder": p.holder,
        "sender": p.sender,
        "amount_minor": p.amount_minor,
        "state": p.state.value,
        "frozen": p.frozen,
        "tier": p.tier,
        "accept_by_ms": p.accept_by_ms,
        "created_seq": p.created_seq,
        "closed_seq": p.closed_seq,
    }


def snapshot_value(rs: ReplayState) -> dict[str, Any]:
    """The snapshot as a plain value (what `encode_snapshot` encodes); every list in key order."""
    s = rs.state
    keys = [k for org in sorted(s.party_keys) for _, k in sorted(s.party_keys[org].items())]
    return {
        "kind": SNAPSHOT_KIND,
        "v": SNAPSHOT_VERSION,
        "size": rs.size,
        "root_hash": rs.root_hash.hex(),
        "frontier": [h.hex() for _level, _index, h in rs.frontier.nodes()],
        "last_ts_ms": rs.last_ts_ms,
        "op_ids": sorted(rs.op_ids),
        "parties": [_party(s.parties[k]) for k in sorted(s.parties)],
        "party_keys": [_key(k) for k in keys],
        "certificates": [_certificate(s.certificates[k]) for k in sorted(s.certificates)],
        "pieces": [_piece(s.pieces[k]) for k in sorted(s.pieces)],
    }


def encode_snapshot(rs: ReplayState) -> bytes:
    return encode(snapshot_value(rs))


def snapshot_digest(data: bytes) -> str:
    """SHA-256 of a snapshot's bytes (hex): what a monitor records beside the checkpoint the snapshot reached."""
    return hashlib.sha256(data).hexdigest()


# --- decoding ------------------------------------------------------------------------------------------

_TOP = {
    "kind",
    "v",
    "size",
    "root_hash",
    "frontier",
    "last_ts_ms",
    "op_ids",
    "parties",
    "party_keys",
    "certificates",
    "pieces",
}


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SnapshotError(f"{what} has the wrong type")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise SnapshotError(f"{what} must be an integer")
    return value


def _opt_int(value: Any, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _str(value: Any, what: str) -> str:
    return str(_typed(value, str, what))


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(_str(value, what))
    except ValueError:
        raise SnapshotError(f"{what} must be hex") from None
    if size is not None and len(raw) != size:
        raise SnapshotError(f"{what} must be {size} bytes")
    return raw


def _date(value: Any, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(_str(value, what))
    except ValueError:
        raise SnapshotError(f"{what} must be an ISO date") from None


def _rows(value: Any, fields: set[str], what: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise SnapshotError(f"{what} must be a list")
    for i, row in enumerate(value):
        if not isinstance(row, dict) or set(row) != fields:
            raise SnapshotError(f"{what}[{i}] must have exactly {sorted(fields)}")
    return value


def _decode_rows(value: Any, fields: set[str], what: str, make: Callable[[Mapping[str, Any], str], Any]) -> list[Any]:
    try:
        return [make(row, f"{what}[{i}]") for i, row in enumerate(_rows(value, fields, what))]
    except (KeyError, ValueError) as exc:  # an enum value this code does not know
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{what}: {exc}") from None


def _make_party(r: Mapping[str, Any], w: str) -> Party:
    return Party(
        _str(r["org_id"], w),
        _str(r["name"], w),
        Role(_str(r["role"], w)),
        _str(r["uscc"], w),
        _int(r["created_seq"], w),
    )


def _make_key(r: Mapping[str, Any], w: str) -> PartyKey:
    return PartyKey(
        _str(r["org_id"], w),
        _str(r["key_id"], w),
        _hex(r["public_key"], w),
        _int(r["valid_from_seq"], w),
        _opt_int(r["revoked_at_seq"], w),
    )


def _make_certificate(r: Mapping[str, Any], w: str) -> Certificate:
    return Certificate(
        id=_str(r["id"], w),
        issuer=_str(r["issuer"], w),
        face_minor=_int(r["face_minor"], w),
        currency=_str(r["currency"], w),
        issue_date=_date(r["issue_date"], w),
        maturity_date=_date(r["maturity_date"], w),
        payable_id=_str(r["payable_id"], w),
        payable_digest=_str(r["payable_digest"], w),
        root_piece_id=_str(r["root_piece_id"], w),
        state=CertificateState(_str(r["state"], w)),
        created_seq=_int(r["created_seq"], w),
    )


def _make_piece(r: Mapping[str, Any], w: str) -> Piece:
    frozen = r["frozen"]
    if type(frozen) is not bool:
        raise SnapshotError(f"{w}.frozen must be true or false")
    return Piece(
        id=_str(r["id"], w),
        certificate_id=_str(r["certificate_id"], w),
        parent_id=_opt_str(r["parent_id"], w),
        holder=_str(r["holder"], w),
        sender=_opt_str(r["sender"], w),
        amount_minor=_int(r["amount_minor"], w),
        state=PieceState(_str(r["state"], w)),
        frozen=frozen,
        tier=_int(r["tier"], w),
        accept_by_ms=_opt_int(r["accept_by_ms"], w),
        created_seq=_int(r["created_seq"], w),
        closed_seq=_opt_int(r["closed_seq"], w),
    )


def decode_snapshot(data: bytes) -> ReplayState:
    """Restore a `ReplayState` from `encode_snapshot` bytes; `SnapshotError` on anything else."""
    try:
        value = decode(data)
    except EncodingError as exc:
        raise SnapshotError(f"not canonical: {exc}") from None
    if not isinstance(value, dict) or set(value) != _TOP:
        raise SnapshotError(f"a snapshot has exactly {sorted(_TOP)}")
    if value["kind"] != SNAPSHOT_KIND or value["v"] != SNAPSHOT_VERSION:
        raise SnapshotError(f"not a {SNAPSHOT_KIND} version {SNAPSHOT_VERSION}")
    size = _int(value["size"], "size")
    frontier_raw = _typed(value["frontier"], list, "frontier")
    try:
        frontier = merkle.CompactRange(size, [_hex(h, "frontier", merkle.HASH_SIZE) for h in frontier_raw])
    except merkle.MerkleError as exc:
        raise SnapshotError(f"frontier: {exc}") from None
    if frontier.root() != _hex(value["root_hash"], "root_hash", merkle.HASH_SIZE):
        raise SnapshotError("root_hash is not the root of the frontier")
    op_ids = _typed(value["op_ids"], list, "op_ids")
    if not all(isinstance(o, str) for o in op_ids):
        raise SnapshotError("op_ids must be strings")
    state = MemoryState(keep_events=False)
    state.load(
        pieces=_decode_rows(value["pieces"], set(_PIECE_FIELDS), "pieces", _make_piece),
        certificates=_decode_rows(value["certificates"], set(_CERT_FIELDS), "certificates", _make_certificate),
        parties=_decode_rows(value["parties"], set(_PARTY_FIELDS), "parties", _make_party),
        keys=_decode_rows(value["party_keys"], set(_KEY_FIELDS), "party_keys", _make_key),
    )
    rs = ReplayState(state=state, frontier=frontier, op_ids=set(op_ids), last_ts_ms=_int(value["last_ts_ms"], "ts"))
    if encode_snapshot(rs) != data:  # duplicates, lists out of order: one state, one encoding
        raise SnapshotError("not in its normal form (duplicate or unordered rows)")
    return rs


_PARTY_FIELDS = ("org_id", "name", "role", "uscc", "created_seq")
_KEY_FIELDS = ("org_id", "key_id", "public_key", "valid_from_seq", "revoked_at_seq")
_CERT_FIELDS = tuple(Certificate.__slots__)
_PIECE_FIELDS = tuple(Piece.__slots__)
