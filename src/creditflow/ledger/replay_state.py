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
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from creditflow.ledger import merkle
from creditflow.ledger.model.certificates import Certificate, CertificateState, Effects, Piece, PieceState
from creditflow.ledger.model.parties import Party, PartyKey, Role
from creditflow.ledger.model.state import MemoryState

SNAPSHOT_KIND = "creditflow.replay_snapshot"
SNAPSHOT_VERSION = 1


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this code wrote (wrong kind or version, malformed, not canonical)."""


class LedgerState(Protocol):
    """What a replay reads and writes: the rules' read view (`StateView`) and a way to apply their effects."""

    def piece(self, piece_id: str) -> Piece | None: ...
    def certificate(self, certificate_id: str) -> Certificate | None: ...
    def party(self, org_id: str) -> Party | None: ...
    def keys(self, org_id: str) -> list[PartyKey]: ...
    def apply_effects(self, effects: Effects) -> None: ...


class OpIds(Protocol):
    def __contains__(self, op_id: object) -> bool: ...
    def add(self, op_id: str) -> None: ...


class Resumable(Protocol):
    """Where a replay stands, wherever it is kept: in memory (`ReplayState`) or in a monitor's state file
    (`replay_store.StoredReplay`, rows read on demand); `verifier.replay_more` goes on from either."""

    @property
    def state(self) -> LedgerState: ...
    @property
    def frontier(self) -> merkle.CompactRange: ...
    @property
    def op_ids(self) -> OpIds: ...

    last_ts_ms: int


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


def row_value(row: Party | PartyKey | Certificate | Piece) -> dict[str, Any]:
    """One row of the state as the snapshot encodes it."""
    if isinstance(row, Piece):
        return _piece(row)
    if isinstance(row, Certificate):
        return _certificate(row)
    if isinstance(row, PartyKey):
        return _key(row)
    return _party(row)


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


# The snapshot is as long as the ledger's state (tens of MB for a big log) and is written every round, so it is
# encoded by the C JSON encoder configured exactly as `kernel.encoding` configures it, without the kernel's
# per-value type walk: every value here is built above from typed fields (str, int, bool, None, lists, dicts
# with str keys). tests/property/test_replay_snapshot.py pins the bytes to `kernel.encoding.encode`.
_dumps = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), check_circular=False, allow_nan=False
).encode


def encode_snapshot(rs: ReplayState) -> bytes:
    try:
        return _dumps(snapshot_value(rs)).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SnapshotError("a string of the state has no canonical encoding") from exc


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


def _typed(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise SnapshotError(f"{what} has the wrong type")
    return value


def _int(value: Any, what: str) -> int:
    return int(_typed(value, int, what))


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(_typed(value, str, what))
    except ValueError:
        raise SnapshotError(f"{what} must be hex") from None
    if size is not None and len(raw) != size:
        raise SnapshotError(f"{what} must be {size} bytes")
    return raw


_S, _I, _N, _B = (str,), (int,), (type(None),), (bool,)
# (field, the JSON types it may have, how to make the field's value from it): in the dataclass's field order.
Spec = tuple[tuple[str, tuple[type, ...], Callable[[Any], Any] | None], ...]
_PARTY: Spec = (("org_id", _S, None), ("name", _S, None), ("role", _S, Role), ("uscc", _S, None))
_PARTY += (("created_seq", _I, None),)
_KEY: Spec = (("org_id", _S, None), ("key_id", _S, None), ("public_key", _S, bytes.fromhex))
_KEY += (("valid_from_seq", _I, None), ("revoked_at_seq", _I + _N, None))
_CERT: Spec = (("id", _S, None), ("issuer", _S, None), ("face_minor", _I, None), ("currency", _S, None))
_CERT += (("issue_date", _S, dt.date.fromisoformat), ("maturity_date", _S, dt.date.fromisoformat))
_CERT += (("payable_id", _S, None), ("payable_digest", _S, None), ("root_piece_id", _S, None))
_CERT += (("state", _S, CertificateState), ("created_seq", _I, None))
_PIECE: Spec = (("id", _S, None), ("certificate_id", _S, None), ("parent_id", _S + _N, None), ("holder", _S, None))
_PIECE += (("sender", _S + _N, None), ("amount_minor", _I, None), ("state", _S, PieceState), ("frozen", _B, None))
_PIECE += (("tier", _I, None), ("accept_by_ms", _I + _N, None), ("created_seq", _I, None))
_PIECE += (("closed_seq", _I + _N, None),)


def _decode_rows(value: Any, cls: Callable[..., Any], spec: Spec, what: str) -> list[Any]:
    """Rows (JSON objects with exactly the spec's members, each of its type) as ``cls`` instances; fast, since
    a big log's snapshot holds tens of thousands of pieces and is read every round."""
    if type(value) is not list:
        raise SnapshotError(f"{what} must be a list")
    names = {name for name, _types, _make in spec}
    out = []
    for i, row in enumerate(value):
        if type(row) is not dict or row.keys() != names:
            raise SnapshotError(f"{what}[{i}] must have exactly {sorted(names)}")
        args = []
        for name, types, make in spec:
            item = row[name]
            if type(item) not in types:
                raise SnapshotError(f"{what}[{i}].{name} has the wrong type")
            if make is not None:
                try:
                    item = make(item)
                except ValueError:
                    raise SnapshotError(f"{what}[{i}].{name}: {item!r} is not allowed") from None
            args.append(item)
        out.append(cls(*args))
    return out


def decode_row(kind: str, value: Any) -> Any:
    """One row (``kind`` one of parties, party_keys, certificates, pieces) from its `row_value`."""
    cls, spec = _ROW_KINDS[kind]
    return _decode_rows([value], cls, spec, kind)[0]


def encode_row(row: Party | PartyKey | Certificate | Piece) -> str:
    return _dumps(row_value(row))


def decode_snapshot(data: bytes) -> ReplayState:
    """Restore a `ReplayState` from `encode_snapshot` bytes; `SnapshotError` on anything else."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
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
    if not all(type(o) is str for o in op_ids):
        raise SnapshotError("op_ids must be strings")
    state = MemoryState(keep_events=False)
    state.load(
        pieces=_decode_rows(value["pieces"], Piece, _PIECE, "pieces"),
        certificates=_decode_rows(value["certificates"], Certificate, _CERT, "certificates"),
        parties=_decode_rows(value["parties"], Party, _PARTY, "parties"),
        keys=_decode_rows(value["party_keys"], PartyKey, _KEY, "party_keys"),
    )
    last_ts_ms = _int(value["last_ts_ms"], "last_ts_ms")
    rs = ReplayState(state=state, frontier=frontier, op_ids=set(op_ids), last_ts_ms=last_ts_ms)
    # One state, one encoding: this catches non-canonical bytes (spacing, escapes, key order, duplicate keys,
    # floats) as well as duplicate or unordered rows, with a single encoding pass.
    if encode_snapshot(rs) != data:
        raise SnapshotError("not canonical, or not in its normal form (duplicate or unordered rows)")
    return rs


_ROW_KINDS: dict[str, tuple[Callable[..., Any], Spec]] = {
    "parties": (Party, _PARTY),
    "party_keys": (PartyKey, _KEY),
    "certificates": (Certificate, _CERT),
    "pieces": (Piece, _PIECE),
}
