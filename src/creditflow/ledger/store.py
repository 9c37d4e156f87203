"""SQL access for the ledger: row mapping, the locked log head, batch loads and batch writes.

Everything here runs inside a transaction the caller opened; nothing commits on its own.
Batch operations use one statement per table (``IN`` lists and ``executemany``) because the
sequencer's group commit is only fast if a batch costs a handful of round-trips, not one per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from creditflow.ledger.merkle import NodeId
from creditflow.ledger.model.certificates import (
    Certificate,
    CertificateState,
    Piece,
    PieceEvent,
    PieceState,
)
from creditflow.ledger.model.parties import Party, PartyKey, Role
from creditflow.ledger.tables import (
    certificates,
    ledger_entries,
    log_head,
    merkle_nodes,
    parties,
    party_keys,
    piece_events,
    pieces,
    tree_heads,
)
from creditflow.ledger.tree_head import TreeHead

NODE_LEVEL_FACTOR = 2**48
_IN_CHUNK = 900  # stays under SQLite's bound-parameter limit


def node_key(node: NodeId) -> int:
    level, index = node
    return level * NODE_LEVEL_FACTOR + index


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]


# --- row mapping ----------------------------------------------------------------------------------


def piece_from_row(r: Any) -> Piece:
    return Piece(
        id=r.id,
        certificate_id=r.certificate_id,
        parent_id=r.parent_id,
        holder=r.holder,
        sender=r.sender,
        amount_minor=r.amount_minor,
        state=PieceState(r.state),
        frozen=bool(r.frozen),
        tier=r.tier,
        accept_by_ms=r.accept_by_ms,
        created_seq=r.created_seq,
        closed_seq=r.closed_seq,
    )


def piece_to_row(p: Piece) -> dict[str, Any]:
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


def certificate_from_row(r: Any) -> Certificate:
    return Certificate(
        id=r.id,
        issuer=r.issuer,
        face_minor=r.face_minor,
        currency=r.currency,
        issue_date=r.issue_date,
        maturity_date=r.maturity_date,
        payable_id=r.payable_id,
        payable_digest=r.payable_digest,
        root_piece_id=r.root_piece_id,
        state=CertificateState(r.state),
        created_seq=r.created_seq,
    )


def certificate_to_row(c: Certificate) -> dict[str, Any]:
    return {
        "id": c.id,
        "issuer": c.issuer,
        "face_minor": c.face_minor,
        "currency": c.currency,
        "issue_date": c.issue_date,
        "maturity_date": c.maturity_date,
        "payable_id": c.payable_id,
        "payable_digest": c.payable_digest,
        "root_piece_id": c.root_piece_id,
        "state": c.state.value,
        "created_seq": c.created_seq,
    }


def party_from_row(r: Any) -> Party:
    return Party(org_id=r.org_id, name=r.name, role=Role(r.role), uscc=r.uscc, created_seq=r.created_seq)


def party_to_row(p: Party) -> dict[str, Any]:
    return {
        "org_id": p.org_id,
        "name": p.name,
        "role": p.role.value,
        "uscc": p.uscc,
        "created_seq": p.created_seq,
    }


def key_from_row(r: Any) -> PartyKey:
    return PartyKey(
        org_id=r.org_id,
        key_id=r.key_id,
        public_key=bytes(r.public_key),
        valid_from_seq=r.valid_from_seq,
        revoked_at_seq=r.revoked_at_seq,
    )


def key_to_row(k: PartyKey) -> dict[str, Any]:
    return {
        "org_id": k.org_id,
        "key_id": k.key_id,
        "public_key": k.public_key,
        "valid_from_seq": k.valid_from_seq,
        "revoked_at_seq": k.revoked_at_seq,
    }


def event_to_row(e: PieceEvent) -> dict[str, Any]:
    return {"piece_id": e.piece_id, "seq": e.seq, "event": e.event, "actor": e.actor, "ts_ms": e.ts_ms}


def tree_head_from_row(r: Any) -> TreeHead:
    return TreeHead(
        tree_size=r.tree_size,
        root_hash=bytes(r.root_hash),
        ts_ms=r.ts_ms,
        key_id=r.key_id,
        signature=bytes(r.signature),
    )


# --- the head -------------------------------------------------------------------------------------


def ensure_head(conn: Connection) -> None:
    if conn.execute(select(log_head.c.id)).first() is None:
        conn.execute(log_head.insert().values(id=1, tree_size=0, last_ts_ms=0))


def lock_head(conn: Connection) -> tuple[int, int]:
    """Lock the single head row for this transaction: appends to the log are serialised here, across
    threads and processes (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the lock)."""
    stmt = select(log_head.c.tree_size, log_head.c.last_ts_ms).where(log_head.c.id == 1)
    if conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).one()
    return int(row.tree_size), int(row.last_ts_ms)


def read_head(conn: Connection) -> tuple[int, int]:
    row = conn.execute(select(log_head.c.tree_size, log_head.c.last_ts_ms).where(log_head.c.id == 1)).first()
    return (0, 0) if row is None else (int(row.tree_size), int(row.last_ts_ms))


# --- batch loads ----------------------------------------------------------------------------------


def load_pieces(conn: Connection, ids: Iterable[str]) -> list[Piece]:
    wanted = sorted(set(ids))
    out: list[Piece] = []
    for chunk in _chunks(wanted):
        out.extend(piece_from_row(r) for r in conn.execute(select(pieces).where(pieces.c.id.in_(chunk))))
    return out


def load_certificates(conn: Connection, ids: Iterable[str]) -> list[Certificate]:
    wanted = sorted(set(ids))
    out: list[Certificate] = []
    for chunk in _chunks(wanted):
        rows = conn.execute(select(certificates).where(certificates.c.id.in_(chunk)))
        out.extend(certificate_from_row(r) for r in rows)
    return out


def load_parties(conn: Connection, ids: Iterable[str]) -> list[Party]:
    wanted = sorted(set(ids))
    out: list[Party] = []
    for chunk in _chunks(wanted):
        out.extend(party_from_row(r) for r in conn.execute(select(parties).where(parties.c.org_id.in_(chunk))))
    return out


def load_keys(conn: Connection, org_ids: Iterable[str]) -> list[PartyKey]:
    wanted = sorted(set(org_ids))
    out: list[PartyKey] = []
    for chunk in _chunks(wanted):
        rows = conn.execute(select(party_keys).where(party_keys.c.org_id.in_(chunk)))
        out.extend(key_from_row(r) for r in rows)
    return out


def existing_op_ids(conn: Connection, op_ids: Iterable[str]) -> set[str]:
    wanted = sorted(set(op_ids))
    found: set[str] = set()
    for chunk in _chunks(wanted):
        found.update(conn.scalars(select(ledger_entries.c.op_id).where(ledger_entries.c.op_id.in_(chunk))))
    return found


def fetch_nodes(conn: Connection, nodes: Sequence[NodeId]) -> dict[NodeId, bytes]:
    """Perfect-subtree hashes by (level, index). Level 0 is the leaf hash kept with each entry; higher
    levels live in ``merkle_nodes`` (so each append writes about one node row, not two)."""
    leaves = sorted({index for level, index in nodes if level == 0})
    keys = {node_key(n): n for n in nodes if n[0] > 0}
    out: dict[NodeId, bytes] = {}
    for chunk in _chunks(leaves):
        rows = conn.execute(
            select(ledger_entries.c.seq, ledger_entries.c.leaf_hash).where(ledger_entries.c.seq.in_(chunk))
        )
        for seq, value in rows:
            out[(0, int(seq))] = bytes(value)
    for chunk in _chunks(list(keys)):
        rows = conn.execute(
            select(merkle_nodes.c.node_key, merkle_nodes.c.hash).where(merkle_nodes.c.node_key.in_(chunk))
        )
        for key, value in rows:
            out[keys[key]] = bytes(value)
    return out


# --- batch writes ---------------------------------------------------------------------------------


def _bind_marks(conn: Connection, n: int) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def _insert_many(conn: Connection, table: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``executemany`` straight on the driver: the sequencer's hot path writes a few rows per operation,
    and SQLAlchemy's per-row parameter processing cost more than the insert itself."""
    if rows:
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({_bind_marks(conn, len(columns))})"
        conn.exec_driver_sql(sql, list(rows))


_PIECE_COLUMNS = (
    "id",
    "certificate_id",
    "parent_id",
    "holder",
    "sender",
    "amount_minor",
    "state",
    "frozen",
    "tier",
    "accept_by_ms",
    "created_seq",
    "closed_seq",
)


def write_batch(
    conn: Connection,
    *,
    entries: Sequence[Mapping[str, Any]],
    nodes: Sequence[tuple[int, int, bytes]],
    new_pieces: Sequence[Piece],
    changed_pieces: Sequence[tuple[Piece, Piece]],
    new_certificates: Sequence[Certificate],
    changed_certificates: Sequence[Certificate],
    new_parties: Sequence[Party],
    new_keys: Sequence[PartyKey],
    changed_keys: Sequence[PartyKey],
    events: Sequence[PieceEvent],
    tree_head: TreeHead,
) -> None:
    """Write one group commit. ``changed_pieces`` holds (as loaded, final) pairs: the update is guarded
    by the loaded state, and a mismatch (someone else moved the piece) aborts the whole transaction."""
    _insert_many(
        conn,
        ledger_entries,
        ("seq", "op_id", "op_type", "actor", "ts_ms", "entry", "leaf_hash"),
        [(e["seq"], e["op_id"], e["op_type"], e["actor"], e["ts_ms"], e["entry"], e["leaf_hash"]) for e in entries],
    )
    _insert_many(
        conn,
        merkle_nodes,
        ("node_key", "hash"),
        [(node_key((lvl, idx)), h) for lvl, idx, h in nodes if lvl > 0],
    )
    if new_parties:
        conn.execute(parties.insert(), [party_to_row(p) for p in new_parties])
    if new_keys:
        conn.execute(party_keys.insert(), [key_to_row(k) for k in new_keys])
    if changed_keys:
        stmt = (
            update(party_keys)
            .where(party_keys.c.org_id == bindparam("b_org_id"), party_keys.c.key_id == bindparam("b_key_id"))
            .values(revoked_at_seq=bindparam("b_revoked_at_seq"))
        )
        conn.execute(
            stmt,
            [{"b_org_id": k.org_id, "b_key_id": k.key_id, "b_revoked_at_seq": k.revoked_at_seq} for k in changed_keys],
        )
    if new_certificates:
        conn.execute(certificates.insert(), [certificate_to_row(c) for c in new_certificates])
    if changed_certificates:
        stmt = update(certificates).where(certificates.c.id == bindparam("b_id")).values(state=bindparam("b_state"))
        conn.execute(stmt, [{"b_id": c.id, "b_state": c.state.value} for c in changed_certificates])
    _insert_many(
        conn,
        pieces,
        _PIECE_COLUMNS,
        [
            (
                p.id,
                p.certificate_id,
                p.parent_id,
                p.holder,
                p.sender,
                p.amount_minor,
                p.state.value,
                p.frozen,
                p.tier,
                p.accept_by_ms,
                p.created_seq,
                p.closed_seq,
            )
            for p in new_pieces
        ],
    )
    if changed_pieces:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"UPDATE pieces SET state = {mark}, frozen = {mark}, accept_by_ms = {mark}, closed_seq = {mark} "
            f"WHERE id = {mark} AND state = {mark} AND frozen = {mark}"
        )
        params = [
            (new.state.value, new.frozen, new.accept_by_ms, new.closed_seq, new.id, old.state.value, old.frozen)
            for old, new in changed_pieces
        ]
        result = conn.exec_driver_sql(sql, params)
        if result.rowcount != len(params):
            raise RuntimeError("a piece changed under the sequencer's lock: refusing to commit the batch")
    _insert_many(
        conn,
        piece_events,
        ("piece_id", "seq", "event", "actor", "ts_ms"),
        [(e.piece_id, e.seq, e.event, e.actor, e.ts_ms) for e in events],
    )
    conn.execute(
        tree_heads.insert().values(
            tree_size=tree_head.tree_size,
            root_hash=tree_head.root_hash,
            ts_ms=tree_head.ts_ms,
            key_id=tree_head.key_id,
            signature=tree_head.signature,
        )
    )
    conn.execute(
        update(log_head).where(log_head.c.id == 1).values(tree_size=tree_head.tree_size, last_ts_ms=tree_head.ts_ms)
    )


def latest_tree_head(conn: Connection) -> TreeHead | None:
    row = conn.execute(select(tree_heads).order_by(tree_heads.c.tree_size.desc()).limit(1)).first()
    return None if row is None else tree_head_from_row(row)


def tree_head_at(conn: Connection, tree_size: int) -> TreeHead | None:
    row = conn.execute(select(tree_heads).where(tree_heads.c.tree_size == tree_size)).first()
    return None if row is None else tree_head_from_row(row)


def count_rows(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# --- for trade ---


def org_ids_by_uscc(conn: Connection, usccs: Iterable[str]) -> dict[str, str]:
    """USCC -> org_id of the registered organisations among ``usccs``."""
    wanted = sorted(set(usccs))
    out: dict[str, str] = {}
    for chunk in _chunks(wanted):
        out.update(
            (r.uscc, r.org_id)
            for r in conn.execute(select(parties.c.org_id, parties.c.uscc).where(parties.c.uscc.in_(chunk)))
        )
    return out


def face_minor_in_states(conn: Connection, issuer: str, states: Iterable[CertificateState]) -> int:
    """The summed face value of the issuer's certificates in one of ``states``."""
    stmt = select(func.coalesce(func.sum(certificates.c.face_minor), 0)).where(
        certificates.c.issuer == issuer, certificates.c.state.in_([s.value for s in states])
    )
    return int(conn.execute(stmt).scalar_one())
