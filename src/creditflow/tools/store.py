"""SQL behind the ledger's back, on purpose: the demo's tamper step and the benchmark's synthetic log.

`creditflow demo` changes a read-model row and forges a log entry in a COPY of its database to show that
`verify` catches both; `creditflow bench ledger` bulk-loads a million synthetic entries to time proofs in a
log that size. Nothing in the runtime calls these (an import-linter contract allows this module, and the
ledger benchmark, into the ledger's tables and store; nothing else outside the ledger).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update

from creditflow.kernel.engine import Connection
from creditflow.ledger import merkle
from creditflow.ledger.tables import ledger_entries, merkle_nodes, pieces


def set_piece_amount(conn: Connection, piece_id: str, amount_minor: int) -> None:
    """Change a piece's amount in the read model only (the log still says what it was)."""
    conn.execute(update(pieces).where(pieces.c.id == piece_id).values(amount_minor=amount_minor))


def forge_entry(conn: Connection, seq: int, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` inside the entry at ``seq`` and recompute its leaf hash, as a careful forger
    would: the signature inside the entry still gives it away."""
    stored = conn.execute(select(ledger_entries.c.entry).where(ledger_entries.c.seq == seq)).scalar_one()
    forged = bytes(stored).replace(old, new)
    conn.execute(
        update(ledger_entries)
        .where(ledger_entries.c.seq == seq)
        .values(entry=forged, leaf_hash=merkle.leaf_hash(forged))
    )


def load_synthetic_log(conn: Connection, rows: Sequence[dict[str, Any]], nodes: Sequence[dict[str, Any]]) -> None:
    """Bulk-insert synthetic log rows and their Merkle nodes (one executemany each)."""
    conn.execute(insert(ledger_entries), list(rows))
    conn.execute(insert(merkle_nodes), list(nodes))
