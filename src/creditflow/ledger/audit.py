"""`creditflow verify`: replay the whole log from nothing and compare with everything stored.

Checks, in order, stopping at the first failure (which names the entry or row and what is wrong):
1. every log row: canonical entry bytes, columns agree with the entry, leaf hash recomputed;
2. every entry: in sequence, signed by a key valid at its position, valid under the domain rules
   (the offline `replay`, the same code the sequencer runs);
3. the Merkle tree: every stored node equals the recomputed one, and none is missing or extra;
4. every signed tree head: signature valid, root equal to the recomputed root at its size; the
   latest one covers the whole log; the log head row agrees;
5. the read model: parties, keys, certificates, pieces and piece history equal the re-derived state;
6. the ``checks`` other contexts plug in, run on the same connection and re-derived state (the composition
   root passes trade's: payables, the amount drawn on each equals the face of the live certificates resting
   on it, `creditflow.trade.payables.check_payables`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from creditflow.kernel.engine import Connection, Engine
from creditflow.ledger import merkle, store
from creditflow.ledger.entries import Entry
from creditflow.ledger.model.certificates import CertificateState, PieceState
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.verifier import VerificationFailure, check_tree_head, replay

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int
    tree_size: int
    root_hash: str
    tree_heads: int
    pieces: int
    certificates: int
    seconds: float

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "entries": self.entries,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "tree_heads": self.tree_heads,
            "pieces": self.pieces,
            "certificates": self.certificates,
            "seconds": round(self.seconds, 3),
            "entries_per_s": round(self.entries_per_s, 1),
        }


def _disagreement(
    k: Any, stored: Mapping[Any, Mapping[str, Any]], derived: Mapping[Any, Mapping[str, Any]]
) -> str | None:
    """What is wrong with row ``k`` of the read model against what the log derives, or None."""
    if k not in derived:
        return "is in the read model but the log never created it"
    if k not in stored:
        return "is missing from the read model"
    row = stored[k]
    for column, value in derived[k].items():
        if row.get(column) != value:
            return f"column {column} is {row.get(column)!r} but the log says {value!r}"
    return None


def _compare(
    table: str, key: str, stored: Mapping[Any, Mapping[str, Any]], derived: Mapping[Any, Mapping[str, Any]]
) -> None:
    """Raise for the first disagreeing row in key order, so a report names the same row every time (the
    keys are sorted only when something disagrees: most runs find nothing)."""
    bad = [(k, why) for k in stored.keys() | derived.keys() if (why := _disagreement(k, stored, derived))]
    if bad:
        k, why = min(bad, key=lambda item: str(item[0]))
        raise VerificationFailure(f"{table} row {key}={k}", why)


def verify_database(
    engine: Engine,
    log_keys: Mapping[str, bytes],
    *,
    progress: Callable[[int, int], None] | None = None,
    checks: Sequence[Callable[[Connection, MemoryState], None]] = (),
) -> VerifyReport:
    started = time.perf_counter()
    with engine.connect().execution_options(read_only=True) as conn, ExitStack() as streams:

        def stream(rows: Generator[_T, None, None]) -> Generator[_T, None, None]:
            """A server-side cursor that is closed even when a check fails half-way through it."""
            streams.callback(rows.close)
            return rows

        total = store.count_entries(conn)

        columns: dict[int, tuple[str, str, str, int]] = {}

        def rows() -> Iterator[tuple[int, bytes]]:
            for seq, op_id, op_type, actor, ts_ms, entry, leaf in stream(store.stream_entries(conn, 2000)):
                data = bytes(entry)
                if bytes(leaf) != merkle.leaf_hash(data):
                    raise VerificationFailure(f"log entry {seq}", "stored leaf hash does not match the entry bytes")
                columns[int(seq)] = (op_id, op_type, actor, int(ts_ms))
                yield int(seq), data

        def same_columns(entry: Entry) -> None:
            op = entry.signed.op
            if columns.pop(entry.seq) != (op.op_id, op.TYPE, op.actor, entry.ts_ms):
                raise VerificationFailure(
                    f"log entry {entry.seq}", "op_id, op_type, actor or ts_ms columns disagree with the entry"
                )

        tick = (lambda n: progress(n, total)) if progress is not None else None
        result = replay(rows(), log_keys, progress=tick, on_entry=same_columns)
        tree = result.tree
        n = tree.size

        # 3. Merkle nodes
        expected_nodes = sum(n >> level for level in range(1, n.bit_length() + 1))  # level 0 is the leaf_hash column
        stored_nodes = 0
        for key, value in stream(store.stream_nodes(conn, 5000)):
            level, index = divmod(int(key), store.NODE_LEVEL_FACTOR)
            where = f"merkle_nodes row level={level} index={index}"
            if (index + 1) << level > n:
                raise VerificationFailure(where, "node lies beyond the end of the log")
            if bytes(value) != tree.node(level, index):
                raise VerificationFailure(where, "hash differs from the recomputed tree")
            stored_nodes += 1
        if stored_nodes != expected_nodes:
            raise VerificationFailure("merkle_nodes", f"{stored_nodes} nodes stored, {expected_nodes} expected")

        # 4. tree heads
        heads = 0
        latest = None
        for sth in store.all_tree_heads(conn):
            check_tree_head(sth, tree, log_keys, f"tree_heads row tree_size={sth.tree_size}")
            heads += 1
            latest = sth
        if n and (latest is None or latest.tree_size != n):
            raise VerificationFailure("tree_heads", f"no signed tree head covers all {n} entries")
        head_size, head_ts = store.read_head(conn)
        if head_size != n:
            raise VerificationFailure("log_head", f"says {head_size} entries, the log has {n}")
        if head_ts != result.last_ts_ms:
            # The sequencer never stamps an entry earlier than this: a changed value would shift time itself.
            raise VerificationFailure(
                "log_head", f"last_ts_ms is {head_ts} but the last entry was stamped {result.last_ts_ms}"
            )

        # 5. read model
        state = result.state
        _compare(
            "parties",
            "org_id",
            store.stored_parties(conn),
            {k: store.party_to_row(p) for k, p in state.parties.items()},
        )
        _compare(
            "party_keys",
            "(org_id, key_id)",
            store.stored_keys(conn),
            {(k.org_id, k.key_id): store.key_to_row(k) for keys in state.party_keys.values() for k in keys.values()},
        )
        _compare(
            "certificates",
            "id",
            store.stored_certificates(conn),
            {k: store.certificate_to_row(c) for k, c in state.certificates.items()},
        )
        _compare(
            "pieces",
            "id",
            store.stored_pieces(conn, 5000),
            {k: store.piece_to_row(p) for k, p in state.pieces.items()},
        )
        _compare(
            "piece_events",
            "(piece_id, seq)",
            store.stored_events(conn, 5000),
            {(e.piece_id, e.seq): store.event_to_row(e) for e in state.events},
        )

        # conservation, checked on the re-derived state (an invariant, so a failure here is a bug, loudly)
        live: dict[str, int] = {}  # owed (pending, active, overdue) plus already cleared
        for p in state.pieces.values():
            if p.live or p.state == PieceState.CLEARED:
                live[p.certificate_id] = live.get(p.certificate_id, 0) + p.amount_minor
        for cert in state.certificates.values():
            expected = 0 if cert.state == CertificateState.VOID else cert.face_minor
            if live.get(cert.id, 0) != expected:
                raise VerificationFailure(
                    f"certificate {cert.id}", f"live pieces sum to {live.get(cert.id, 0)}, face is {expected}"
                )

        # 6. and on: the checks other contexts plug in (trade's payables), on the same connection and state
        for check in checks:
            check(conn, state)

    return VerifyReport(
        entries=n,
        tree_size=n,
        root_hash=tree.root().hex(),
        tree_heads=heads,
        pieces=len(state.pieces),
        certificates=len(state.certificates),
        seconds=time.perf_counter() - started,
    )
