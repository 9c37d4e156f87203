"""Trade's data as other contexts see it, inside their own unit of work.

A command of another context (a financing request checking the trade evidence behind a piece) reads
trade's payables and invoice citations in the same transaction it writes its own rows in, so these
functions take the caller's Connection. They are the only door into trade's store for other contexts
(an import-linter contract in pyproject keeps it so).
"""

from __future__ import annotations

from collections.abc import Iterable

from creditflow.kernel.engine import Connection
from creditflow.trade import store

# --- for financing ---


def payable_status(conn: Connection, payable_id: str) -> str | None:
    """The payable's status (``confirmed`` once approved), or None if there is no such payable."""
    return store.payable_status(conn, payable_id)


def pieces_citing_trade(conn: Connection, piece_ids: Iterable[str]) -> set[str]:
    """Those of ``piece_ids`` whose transfer cited a trade invoice (batched)."""
    return store.pieces_citing_trade(conn, piece_ids)
