"""SQL access for the ledger: row mapping, the locked log head, batch loads and batch writes.

Everything here runs inside a transaction the caller opened; nothing commits on its own.
Batch operations use one statement per table (``IN`` lists and ``executemany``) because the
sequencer's group commit is only fast if a batch costs a handful of round-trips, not one per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Integer, bindparam, func, inspect, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from creditflow.kernel.engine import after_key
from creditflow.ledger.merkle import NodeId
from creditflow.ledger.model.certificates import (
    LIVE_STATES,
    Certificate,
    CertificateState,
    Piece,
    PieceEvent,
    PieceState,
)
from creditflow.ledger.model.parties import Party, PartyKey, Role
from creditflow.ledger.tables import (
    certificates,
    custody_keys,
    custody_meta,
    demo_database,
    ledger_entries,
    log_checkpoints,
    log_head,
    log_key_custody,
    merkle_nodes,
    parties,
    party_keys,
    piece_commitment_key,
    piece_events,
    pieces,
    tree_heads,
    witness_status,
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


# --- tlog-tiles (issue 14): a tile is a run of consecutive nodes of one level, read with one range query ---


def node_run(conn: Connection, level: int, first: int, count: int) -> list[bytes]:
    """The stored hashes of nodes ``(level, first) .. (level, first + count - 1)`` in order (fewer if the tree
    does not hold them all): one range scan of the primary key, leaves from ``ledger_entries``."""
    if level == 0:
        c = ledger_entries.c
        stmt = select(c.leaf_hash).where(c.seq >= first, c.seq < first + count).order_by(c.seq)
    else:
        low = node_key((level, first))
        k = merkle_nodes.c.node_key
        stmt = select(merkle_nodes.c.hash).where(k >= low, k < low + count).order_by(k)
    return [bytes(value) for value in conn.scalars(stmt)]


def entry_run(conn: Connection, first: int, count: int) -> list[bytes]:
    """The entry bytes at ``first .. first + count - 1`` in log order (an entry bundle's), one range scan."""
    c = ledger_entries.c
    stmt = select(c.entry).where(c.seq >= first, c.seq < first + count).order_by(c.seq)
    return [bytes(value) for value in conn.scalars(stmt)]


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


def save_checkpoint(conn: Connection, tree_size: int, note: str, cosignatures: int, now_ms: int) -> None:
    """Store (or replace, with more cosignatures) the published checkpoint of ``tree_size``."""
    conn.execute(log_checkpoints.delete().where(log_checkpoints.c.tree_size == tree_size))
    conn.execute(
        log_checkpoints.insert().values(
            tree_size=tree_size, note=note, cosignatures=cosignatures, published_ts_ms=now_ms
        )
    )


def latest_checkpoint(conn: Connection) -> tuple[int, str] | None:
    """The newest published checkpoint: (tree size, signed note)."""
    row = conn.execute(
        select(log_checkpoints.c.tree_size, log_checkpoints.c.note)
        .order_by(log_checkpoints.c.tree_size.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.tree_size), str(row.note))


def checkpoint_at(conn: Connection, tree_size: int) -> str | None:
    """The published checkpoint of exactly ``tree_size``, if one was published."""
    note = conn.execute(select(log_checkpoints.c.note).where(log_checkpoints.c.tree_size == tree_size)).scalar()
    return None if note is None else str(note)


def witness_rows(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(witness_status).order_by(witness_status.c.name))]


def save_witness_status(
    conn: Connection,
    name: str,
    *,
    tree_size: int,
    now_ms: int,
    cosigned: bool,
    error: str | None,
) -> None:
    """Record what witness ``name`` holds after a submission (its size, and the outcome)."""
    old = conn.execute(select(witness_status).where(witness_status.c.name == name)).first()
    values = {
        "tree_size": tree_size,
        "last_error": None if error is None else error[:400],
        "updated_ts_ms": now_ms,
    }
    if cosigned:
        values["last_cosigned_ts_ms"] = now_ms
    if old is None:
        conn.execute(witness_status.insert().values({"name": name, "last_cosigned_ts_ms": None, **values}))
    else:
        conn.execute(witness_status.update().where(witness_status.c.name == name).values(**values))


def count_rows(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def entry_at(conn: Connection, seq: int) -> bytes:
    """The entry bytes at position ``seq`` of the log (which must exist)."""
    entry = conn.execute(select(ledger_entries.c.entry).where(ledger_entries.c.seq == seq)).scalar_one()
    return bytes(entry)


def uscc_registered(conn: Connection, uscc: str) -> bool:
    return conn.execute(select(parties.c.org_id).where(parties.c.uscc == uscc)).first() is not None


def pending_due(conn: Connection, now_ms: int, limit: int) -> list[str]:
    """Ids of pending pieces whose acceptance deadline has passed, the oldest deadline first."""
    stmt = (
        select(pieces.c.id)
        .where(pieces.c.state == "pending", pieces.c.accept_by_ms <= now_ms)
        .order_by(pieces.c.accept_by_ms)
        .limit(limit)
    )
    return list(conn.scalars(stmt).all())


# --- key custody -----------------------------------------------------------------------------------


class CustodyMeta(NamedTuple):
    salt: bytes
    opslimit: int
    memlimit: int
    check_box: bytes


def custody_meta_row(conn: Connection) -> CustodyMeta | None:
    row = conn.execute(select(custody_meta).where(custody_meta.c.id == 1)).first()
    if row is None:
        return None
    return CustodyMeta(bytes(row.salt), row.opslimit, row.memlimit, bytes(row.check_box))


def insert_custody_meta(conn: Connection, meta: CustodyMeta) -> None:
    conn.execute(
        custody_meta.insert().values(
            id=1, salt=meta.salt, opslimit=meta.opslimit, memlimit=meta.memlimit, check_box=meta.check_box
        )
    )


def commitment_key(conn: Connection) -> bytes | None:
    row = conn.execute(select(piece_commitment_key.c.key).where(piece_commitment_key.c.id == 1)).first()
    return None if row is None else bytes(row.key)


def insert_commitment_key(conn: Connection, key: bytes, created_ts_ms: int) -> None:
    """Store the database's commitment key unless one is there (another process may have made it first)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(piece_commitment_key).values(id=1, key=key, created_ts_ms=created_ts_ms)
    conn.execute(stmt.on_conflict_do_nothing())


def insert_custody_key(conn: Connection, org_id: str, key_id: str, sealed_seed: bytes, created_ts_ms: int) -> None:
    conn.execute(
        custody_keys.insert().values(
            org_id=org_id, key_id=key_id, sealed_seed=sealed_seed, created_ts_ms=created_ts_ms, retired=False
        )
    )


def retire_custody_keys(conn: Connection, org_id: str, keep_key_id: str) -> None:
    """Retire every held key of ``org_id`` but ``keep_key_id``."""
    conn.execute(
        update(custody_keys)
        .where(custody_keys.c.org_id == org_id, custody_keys.c.key_id != keep_key_id)
        .values(retired=True)
    )


def custody_key(conn: Connection, org_id: str) -> tuple[str, bytes] | None:
    """(key id, sealed seed) of the held, unretired key of ``org_id``."""
    row = conn.execute(
        select(custody_keys.c.key_id, custody_keys.c.sealed_seed).where(
            custody_keys.c.org_id == org_id, custody_keys.c.retired.is_(False)
        )
    ).first()
    return None if row is None else (row.key_id, bytes(row.sealed_seed))


def custody_key_id(conn: Connection, org_id: str) -> str | None:
    stmt = select(custody_keys.c.key_id).where(custody_keys.c.org_id == org_id, custody_keys.c.retired.is_(False))
    row = conn.execute(stmt).first()
    return None if row is None else str(row.key_id)


def delete_custody_keys(conn: Connection, org_id: str) -> int:
    """Forget every key held for ``org_id`` (the log key, once it is sealed apart); the number of rows."""
    return int(conn.execute(custody_keys.delete().where(custody_keys.c.org_id == org_id)).rowcount)


# --- the log's own signing key, sealed apart -------------------------------------------------------------


class SealedLogKey(NamedTuple):
    key_id: str
    sealed_seed: bytes
    kek_kind: str
    salt: bytes | None
    opslimit: int
    memlimit: int


def sealed_log_key(conn: Connection) -> SealedLogKey | None:
    row = conn.execute(select(log_key_custody).order_by(log_key_custody.c.created_ts_ms.desc()).limit(1)).first()
    if row is None:
        return None
    salt = None if row.salt is None else bytes(row.salt)
    return SealedLogKey(row.key_id, bytes(row.sealed_seed), row.kek_kind, salt, row.opslimit, row.memlimit)


def insert_sealed_log_key(conn: Connection, key: SealedLogKey, created_ts_ms: int) -> None:
    conn.execute(log_key_custody.insert().values(**key._asdict(), created_ts_ms=created_ts_ms))


# --- demo databases ------------------------------------------------------------------------------------


def mark_demo_database(conn: Connection, key_passphrase: str, log_key_passphrase: str, created_ts_ms: int) -> None:
    conn.execute(
        demo_database.insert().values(
            id=1, key_passphrase=key_passphrase, log_key_passphrase=log_key_passphrase, created_ts_ms=created_ts_ms
        )
    )


def has_custody_meta(conn: Connection) -> bool:
    if not inspect(conn).has_table(custody_meta.name):
        return False
    return conn.execute(select(custody_meta.c.id)).first() is not None


def demo_passphrases(conn: Connection) -> tuple[str, str] | None:
    """(key passphrase, log key passphrase) of a database made by `creditflow demo`; None for any other, also
    one whose schema predates the mark (this runs before migrations, read-only)."""
    if not inspect(conn).has_table(demo_database.name):
        return None
    row = conn.execute(select(demo_database.c.key_passphrase, demo_database.c.log_key_passphrase)).first()
    return None if row is None else (str(row[0]), str(row[1]))


# --- exports of the log (keyset pages) ---------------------------------------------------------------


def entry_rows(conn: Connection, start: int, stop: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` log entries with ``start <= seq < stop`` in order, as export rows (hex bytes)."""
    stmt = (
        select(ledger_entries)
        .where(ledger_entries.c.seq >= start, ledger_entries.c.seq < stop)
        .order_by(ledger_entries.c.seq)
        .limit(limit)
    )
    return [
        {
            "seq": int(r.seq),
            "op_id": str(r.op_id),
            "op_type": r.op_type,
            "actor": r.actor,
            "ts_ms": int(r.ts_ms),
            "leaf_hash": bytes(r.leaf_hash).hex(),
            "entry": bytes(r.entry).hex(),
        }
        for r in conn.execute(stmt)
    ]


def tree_head_rows(conn: Connection, start: int, stop: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` stored tree heads with ``start <= tree_size < stop`` in order, as export rows."""
    stmt = (
        select(tree_heads)
        .where(tree_heads.c.tree_size >= start, tree_heads.c.tree_size < stop)
        .order_by(tree_heads.c.tree_size)
        .limit(limit)
    )
    return [
        {
            "tree_size": int(r.tree_size),
            "root_hash": bytes(r.root_hash).hex(),
            "ts_ms": int(r.ts_ms),
            "key_id": r.key_id,
            "signature": bytes(r.signature).hex(),
        }
        for r in conn.execute(stmt)
    ]


# --- read-side queries (`creditflow.ledger.queries`): keyset pages, the provenance CTE, aggregates ---


def all_parties(conn: Connection) -> list[Party]:
    return [party_from_row(r) for r in conn.execute(select(parties).order_by(parties.c.org_id))]


def pieces_of_holder(
    conn: Connection, holder: str, live_states: Sequence[str] | None, after: Sequence[int | str] | None, limit: int
) -> list[Piece]:
    """Up to ``limit`` pieces of ``holder`` (in ``live_states`` if given) by (created_seq, id), after ``after``."""
    stmt = select(pieces).where(pieces.c.holder == holder)
    if live_states is not None:
        stmt = stmt.where(pieces.c.state.in_(live_states))
    order = (pieces.c.created_seq, pieces.c.id)
    if after is not None:
        stmt = stmt.where(after_key(order, after))
    stmt = stmt.order_by(*order).limit(limit)
    return [piece_from_row(r) for r in conn.execute(stmt)]


def certificates_of_issuer(
    conn: Connection, issuer: str, after: Sequence[int | str] | None, limit: int
) -> list[Certificate]:
    stmt = select(certificates).where(certificates.c.issuer == issuer)
    order = (certificates.c.created_seq, certificates.c.id)
    if after is not None:
        stmt = stmt.where(after_key(order, after))
    stmt = stmt.order_by(*order).limit(limit)
    return [certificate_from_row(r) for r in conn.execute(stmt)]


def parties_after(conn: Connection, after: Sequence[int | str] | None, limit: int) -> list[Party]:
    stmt = select(parties)
    if after is not None:
        stmt = stmt.where(after_key((parties.c.org_id,), after))
    return [party_from_row(r) for r in conn.execute(stmt.order_by(parties.c.org_id).limit(limit))]


def certificate_pieces(conn: Connection, certificate_id: str, limit: int) -> list[Piece]:
    """Up to ``limit`` pieces of a certificate, in creation order (parents before children)."""
    stmt = (
        select(pieces)
        .where(pieces.c.certificate_id == certificate_id)
        .order_by(pieces.c.created_seq, pieces.c.id)
        .limit(limit)
    )
    return [piece_from_row(r) for r in conn.execute(stmt)]


def provenance_chain(conn: Connection, piece_id: str) -> list[Piece]:
    """The chain from ``piece_id`` up to the certificate's first piece, in one recursive query."""
    # The CTE carries whole rows, so no join back to pieces (which tempts planners into a scan).
    depth = literal(0, Integer).label("depth")
    chain = select(*pieces.c, depth).where(pieces.c.id == piece_id).cte("chain", recursive=True)
    parent = pieces.alias("parent")
    chain = chain.union_all(
        select(*parent.c, (chain.c.depth + 1).label("depth")).where(parent.c.id == chain.c.parent_id)
    )
    stmt = select(*[chain.c[c.name] for c in pieces.c]).order_by(chain.c.depth)
    return [piece_from_row(r) for r in conn.execute(stmt)]


def entry_origin(conn: Connection, seq: int) -> tuple[str, str, int]:
    """(op_type, actor, ts_ms) of the entry at ``seq`` (which must exist)."""
    stmt = select(ledger_entries.c.op_type, ledger_entries.c.actor, ledger_entries.c.ts_ms).where(
        ledger_entries.c.seq == seq
    )
    row = conn.execute(stmt).one()
    return row.op_type, row.actor, row.ts_ms


def piece_event_rows(conn: Connection, piece_id: str) -> list[dict[str, Any]]:
    stmt = select(piece_events).where(piece_events.c.piece_id == piece_id).order_by(piece_events.c.seq)
    return [{"seq": r.seq, "event": r.event, "actor": r.actor, "ts_ms": r.ts_ms} for r in conn.execute(stmt)]


def face_by_state(conn: Connection, issuer: str) -> dict[str, tuple[int, int]]:
    """state -> (sum of face values, number of certificates) of the issuer's certificates."""
    stmt = (
        select(certificates.c.state, func.sum(certificates.c.face_minor), func.count())
        .where(certificates.c.issuer == issuer)
        .group_by(certificates.c.state)
    )
    return {r[0]: (int(r[1] or 0), int(r[2])) for r in conn.execute(stmt)}


def circulation_by_tier(
    conn: Connection, live_states: Sequence[str], issuer: str | None
) -> list[tuple[int, int, int, int]]:
    """(tier, amount, pieces, distinct holders) of the live pieces, by tier (of one issuer if given)."""
    stmt = select(
        pieces.c.tier,
        func.sum(pieces.c.amount_minor),
        func.count(),
        func.count(func.distinct(pieces.c.holder)),
    ).where(pieces.c.state.in_(live_states))
    if issuer is not None:
        stmt = stmt.join(certificates, certificates.c.id == pieces.c.certificate_id).where(
            certificates.c.issuer == issuer
        )
    stmt = stmt.group_by(pieces.c.tier).order_by(pieces.c.tier)
    return [(int(t), int(a), int(n), int(h)) for t, a, n, h in conn.execute(stmt)]


def has_held(conn: Connection, org_id: str, certificate_id: str) -> bool:
    stmt = (
        select(pieces.c.id)
        .where(pieces.c.certificate_id == certificate_id, or_(pieces.c.holder == org_id, pieces.c.sender == org_id))
        .limit(1)
    )
    return conn.execute(stmt).first() is not None


# --- `creditflow verify`: every table streamed, rows as tuples or plain dicts -----------------------


def count_entries(conn: Connection) -> int:
    return count_rows(conn, ledger_entries)


def _streamed(conn: Connection, stmt: Any, per: int) -> Generator[Any, None, None]:
    """A server-side cursor of ``per`` rows at a time, closed when the generator is (so a check that
    fails half-way closes it: the caller closes the generator)."""
    # Options on the statement, not the connection: `Connection.execution_options` changes the
    # connection in place, which would turn every later query into a server-side cursor.
    result = conn.execute(stmt.execution_options(yield_per=per))
    try:
        yield from result
    finally:
        result.close()


def stream_entries(
    conn: Connection, per: int = 2000
) -> Generator[tuple[int, str, str, str, int, bytes, bytes], None, None]:
    """Every log row in sequence order: (seq, op_id, op_type, actor, ts_ms, entry, leaf_hash)."""
    c = ledger_entries.c
    stmt = select(c.seq, c.op_id, c.op_type, c.actor, c.ts_ms, c.entry, c.leaf_hash).order_by(c.seq)
    return _streamed(conn, stmt, per)


def stream_nodes(conn: Connection, per: int = 5000) -> Generator[tuple[int, bytes], None, None]:
    """Every stored Merkle node: (node_key, hash), in no particular order."""
    return _streamed(conn, select(merkle_nodes.c.node_key, merkle_nodes.c.hash), per)


def all_tree_heads(conn: Connection) -> Iterator[TreeHead]:
    """Every stored signed tree head, by tree size."""
    for row in conn.execute(select(tree_heads).order_by(tree_heads.c.tree_size)):
        yield tree_head_from_row(row)


def _dicts(rows: Any) -> Iterator[dict[str, Any]]:
    """Rows as plain dicts, cheaper than ``Row._mapping`` (the pieces and events tables are as long as the log)."""
    names = list(rows.keys())
    for row in rows:
        yield dict(zip(names, row, strict=True))


def _dicts_streamed(conn: Connection, table: Any, per: int) -> Iterator[dict[str, Any]]:
    result = conn.execute(select(table).execution_options(yield_per=per))
    try:
        yield from _dicts(result)
    finally:
        result.close()


def stored_parties(conn: Connection) -> dict[str, dict[str, Any]]:
    """The parties table as rows (plain dicts) by org_id, to compare with `party_to_row`."""
    return {r["org_id"]: r for r in _dicts(conn.execute(select(parties)))}


def stored_keys(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r["org_id"], r["key_id"]): {**r, "public_key": bytes(r["public_key"])}
        for r in _dicts(conn.execute(select(party_keys)))
    }


def stored_certificates(conn: Connection) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in _dicts(conn.execute(select(certificates)))}


def stored_pieces(conn: Connection, per: int = 5000) -> dict[str, dict[str, Any]]:
    return {r["id"]: {**r, "frozen": bool(r["frozen"])} for r in _dicts_streamed(conn, pieces, per)}


def stored_events(conn: Connection, per: int = 5000) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["piece_id"], r["seq"]): r for r in _dicts_streamed(conn, piece_events, per)}


# --- for financing ---


def pieces_of_certificates(conn: Connection, certificate_ids: Iterable[str]) -> list[Piece]:
    """Every piece of these certificates, in no particular order."""
    wanted = sorted(set(certificate_ids))
    out: list[Piece] = []
    for chunk in _chunks(wanted):
        out.extend(piece_from_row(r) for r in conn.execute(select(pieces).where(pieces.c.certificate_id.in_(chunk))))
    return out


def live_pieces_of_certificate(conn: Connection, certificate_id: str) -> list[Piece]:
    """The certificate's live pieces in creation order (the order clearing pays them in)."""
    stmt = (
        select(pieces)
        .where(pieces.c.certificate_id == certificate_id, pieces.c.state.in_([s.value for s in LIVE_STATES]))
        .order_by(pieces.c.created_seq, pieces.c.id)
    )
    return [piece_from_row(r) for r in conn.execute(stmt)]


def certificates_in_states(
    conn: Connection,
    states: Iterable[CertificateState],
    *,
    issuer: str | None = None,
    matured_before: dt.date | None = None,
) -> list[Certificate]:
    """Certificates in one of ``states`` (``issuer``: of that issuer only; ``matured_before``: maturing
    strictly before that day), in no particular order."""
    stmt = select(certificates).where(certificates.c.state.in_([s.value for s in states]))
    if issuer:
        stmt = stmt.where(certificates.c.issuer == issuer)
    if matured_before is not None:
        stmt = stmt.where(certificates.c.maturity_date < matured_before)
    return [certificate_from_row(r) for r in conn.execute(stmt)]


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
