"""SQL for the trade context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from creditflow.kernel.engine import Connection
from creditflow.trade.tables import payables, piece_trade_refs

_IN_CHUNK = 900  # stays under SQLite's bound-parameter limit

# --- for financing ---


def payable_status(conn: Connection, payable_id: str) -> str | None:
    """The payable's status (draft, matched, confirmed, ...), or None if there is no such payable."""
    status = conn.execute(select(payables.c.status).where(payables.c.id == payable_id)).scalar()
    return None if status is None else str(status)


def pieces_citing_trade(conn: Connection, piece_ids: Iterable[str]) -> set[str]:
    """Those of ``piece_ids`` whose transfer cited a trade invoice."""
    wanted = sorted(set(piece_ids))
    cited: set[str] = set()
    for i in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[i : i + _IN_CHUNK]
        cited.update(conn.scalars(select(piece_trade_refs.c.piece_id).where(piece_trade_refs.c.piece_id.in_(chunk))))
    return cited
