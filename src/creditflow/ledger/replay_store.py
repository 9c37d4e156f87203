"""A monitor's replay state in its own local SQLite file (``replay.sqlite``): a round reads only the rows the new
entries touch and writes only the rows they change, so its cost follows the new entries, not the ledger's size.

A whole-state snapshot (`replay_state.encode_snapshot`) must be read and written in full every round: at
20,000 entries that is ~10 MB and about a second, growing with the log. Here each row is kept as its canonical
snapshot row (`replay_state.encode_row`), keyed by its id, beside the op ids seen and the replay's position
(size, Merkle frontier, root, last timestamp). `export` rebuilds the canonical snapshot from the rows, byte for
byte what a full replay gives (tests pin it), and `import_snapshot` loads one.

This is the monitor's private state file, opened with the standard library's ``sqlite3`` (nothing else is
needed, like the rest of the round); it is not the platform's database, whose SQL stays in ``store.py``.
A round's changes are one transaction (``synchronous=FULL``): all or nothing, durable at commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from creditflow.ledger import merkle
from creditflow.ledger.model.certificates import Certificate, Effects, Piece
from creditflow.ledger.model.parties import Party, PartyKey
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.replay_state import ReplayState, SnapshotError, decode_row, encode_row

STORE_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS parties (id TEXT PRIMARY KEY, row TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS certificates (id TEXT PRIMARY KEY, row TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pieces (id TEXT PRIMARY KEY, row TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS party_keys (org_id TEXT NOT NULL, key_id TEXT NOT NULL, row TEXT NOT NULL,"
    " PRIMARY KEY (org_id, key_id))",
    "CREATE TABLE IF NOT EXISTS op_ids (op_id TEXT PRIMARY KEY) WITHOUT ROWID",
)
_TABLES = {"parties": "parties", "certificates": "certificates", "pieces": "pieces"}


class _StoredState:
    """`LedgerState` over the file: reads fall through to it (and are cached), effects stay in memory until
    `ReplayStore.commit` writes them."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self.pieces: dict[str, Piece | None] = {}
        self.certificates: dict[str, Certificate | None] = {}
        self.parties: dict[str, Party | None] = {}
        self.party_keys: dict[str, dict[str, PartyKey]] = {}
        self.dirty: dict[str, set[str]] = {"pieces": set(), "certificates": set(), "parties": set()}
        self.dirty_keys: set[tuple[str, str]] = set()

    def _row(self, kind: str, cache: dict[str, Any], key: str) -> Any:
        if key in cache:
            return cache[key]
        found = self._db.execute(f"SELECT row FROM {_TABLES[kind]} WHERE id = ?", (key,)).fetchone()
        value = None if found is None else decode_row(kind, json.loads(found[0]))
        cache[key] = value
        return value

    def piece(self, piece_id: str) -> Piece | None:
        return self._row("pieces", self.pieces, piece_id)  # type: ignore[no-any-return]

    def certificate(self, certificate_id: str) -> Certificate | None:
        return self._row("certificates", self.certificates, certificate_id)  # type: ignore[no-any-return]

    def party(self, org_id: str) -> Party | None:
        return self._row("parties", self.parties, org_id)  # type: ignore[no-any-return]

    def _org_keys(self, org_id: str) -> dict[str, PartyKey]:
        keys = self.party_keys.get(org_id)
        if keys is None:
            rows = self._db.execute("SELECT row FROM party_keys WHERE org_id = ? ORDER BY key_id", (org_id,))
            keys = {k.key_id: k for k in (decode_row("party_keys", json.loads(r[0])) for r in rows)}
            self.party_keys[org_id] = keys
        return keys

    def keys(self, org_id: str) -> list[PartyKey]:
        return list(self._org_keys(org_id).values())

    def apply_effects(self, effects: Effects) -> None:
        for p in effects.pieces:
            self.pieces[p.id] = p
            self.dirty["pieces"].add(p.id)
        for c in effects.certificates:
            self.certificates[c.id] = c
            self.dirty["certificates"].add(c.id)
        for party in effects.parties:
            self.parties[party.org_id] = party
            self.dirty["parties"].add(party.org_id)
        for k in effects.keys:
            self._org_keys(k.org_id)[k.key_id] = k
            self.dirty_keys.add((k.org_id, k.key_id))


class _StoredOpIds:
    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self.added: set[str] = set()

    def __contains__(self, op_id: object) -> bool:
        if op_id in self.added:
            return True
        return self._db.execute("SELECT 1 FROM op_ids WHERE op_id = ?", (op_id,)).fetchone() is not None

    def add(self, op_id: str) -> None:
        self.added.add(op_id)


class StoredReplay:
    """A `Resumable` replay position read from a `ReplayStore`; `ReplayStore.commit` saves what it became."""

    def __init__(self, db: sqlite3.Connection, frontier: merkle.CompactRange, last_ts_ms: int):
        self._state = _StoredState(db)
        self._op_ids = _StoredOpIds(db)
        self._frontier = frontier
        self.last_ts_ms = last_ts_ms

    @property
    def state(self) -> _StoredState:
        return self._state

    @property
    def op_ids(self) -> _StoredOpIds:
        return self._op_ids

    @property
    def frontier(self) -> merkle.CompactRange:
        return self._frontier

    @property
    def size(self) -> int:
        return self._frontier.size

    @property
    def root_hash(self) -> bytes:
        return self._frontier.root()


class ReplayStore:
    def __init__(self, path: Path):
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA synchronous = FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        version = self._meta().get("v")
        if version is None:
            self._write_position(merkle.CompactRange(), 0)
        elif version != STORE_VERSION:
            raise SnapshotError(f"{path} is version {version} of the replay store, not {STORE_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReplayStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _meta(self) -> dict[str, Any]:
        return {name: json.loads(value) for name, value in self._db.execute("SELECT name, value FROM meta")}

    def _write_position(self, frontier: merkle.CompactRange, last_ts_ms: int) -> None:
        values = {
            "v": STORE_VERSION,
            "size": frontier.size,
            "frontier": [h.hex() for _level, _index, h in frontier.nodes()],
            "root_hash": frontier.root().hex(),
            "last_ts_ms": last_ts_ms,
        }
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
        )

    def begin(self) -> StoredReplay:
        """The replay where the file left it (size 0 for a new file)."""
        meta = self._meta()
        try:
            hashes = [bytes.fromhex(h) for h in meta["frontier"]]
            frontier = merkle.CompactRange(int(meta["size"]), hashes)
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{self.path}: the replay position is damaged ({exc})") from None
        if frontier.root().hex() != meta.get("root_hash"):
            raise SnapshotError(f"{self.path}: root_hash is not the root of the frontier")
        return StoredReplay(self._db, frontier, int(meta["last_ts_ms"]))

    def commit(self, at: StoredReplay) -> None:
        """Write every row the replay changed, the op ids it saw and its new position, in one transaction."""
        state = at.state
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for kind, ids in state.dirty.items():
                cache: dict[str, Any] = getattr(state, kind)
                db.executemany(
                    f"INSERT OR REPLACE INTO {_TABLES[kind]} (id, row) VALUES (?, ?)",
                    [(key, encode_row(cache[key])) for key in sorted(ids)],
                )
            db.executemany(
                "INSERT OR REPLACE INTO party_keys (org_id, key_id, row) VALUES (?, ?, ?)",
                [(o, k, encode_row(state.party_keys[o][k])) for o, k in sorted(state.dirty_keys)],
            )
            db.executemany("INSERT INTO op_ids (op_id) VALUES (?)", [(o,) for o in sorted(at.op_ids.added)])
            self._write_position(at.frontier, at.last_ts_ms)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def export(self) -> ReplayState:
        """The whole state in memory: `replay_state.encode_snapshot` of it is the canonical snapshot."""
        at = self.begin()
        state = MemoryState(keep_events=False)

        def rows(table: str, kind: str) -> Iterable[Any]:
            return (decode_row(kind, json.loads(r[0])) for r in self._db.execute(f"SELECT row FROM {table}"))

        state.load(
            pieces=rows("pieces", "pieces"),
            certificates=rows("certificates", "certificates"),
            parties=rows("parties", "parties"),
            keys=rows("party_keys", "party_keys"),
        )
        op_ids = {r[0] for r in self._db.execute("SELECT op_id FROM op_ids")}
        return ReplayState(state=state, frontier=at.frontier.copy(), op_ids=op_ids, last_ts_ms=at.last_ts_ms)

    def import_snapshot(self, rs: ReplayState) -> None:
        """Replace everything with a snapshot's state (e.g. one another auditor handed over)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("parties", "certificates", "pieces", "party_keys", "op_ids"):
                db.execute(f"DELETE FROM {table}")
            s = rs.state
            for table, items in (("parties", s.parties), ("certificates", s.certificates), ("pieces", s.pieces)):
                db.executemany(
                    f"INSERT INTO {table} (id, row) VALUES (?, ?)", [(k, encode_row(v)) for k, v in items.items()]
                )
            db.executemany(
                "INSERT INTO party_keys (org_id, key_id, row) VALUES (?, ?, ?)",
                [(o, k, encode_row(v)) for o, keys in s.party_keys.items() for k, v in keys.items()],
            )
            db.executemany("INSERT INTO op_ids (op_id) VALUES (?)", [(o,) for o in rs.op_ids])
            self._write_position(rs.frontier, rs.last_ts_ms)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
