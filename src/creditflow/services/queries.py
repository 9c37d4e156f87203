"""Read-side queries over the SQL read model. Read-only connections (never take SQLite's write lock)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Integer, and_, func, literal, or_, select

from creditflow.adapters.sql import ledger_store as store
from creditflow.adapters.sql.tables import certificates, ledger_entries, parties, piece_events, pieces
from creditflow.config import Settings
from creditflow.domain.certificates import LIVE_STATES, Certificate, CertificateState, Piece
from creditflow.domain.errors import InvalidInput, LimitExceeded, NotFound
from creditflow.domain.parties import Party

LIVE = tuple(s.value for s in LIVE_STATES)
_CREATION = {
    "issue": "issued",
    "transfer": "received",
    "split": "split_off",
    "reject": "returned",
    "expire": "returned",
}


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Liability:
    issuer: str
    outstanding_minor: int  # accepted certificates: owed (overdue ones included)
    pending_minor: int  # issued, not yet accepted
    certificates: int
    overdue_minor: int = 0  # matured and unpaid (part of outstanding)


@dataclass(frozen=True, slots=True)
class TierValue:
    tier: int
    amount_minor: int
    pieces: int
    holders: int


class Queries:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            yield conn

    def page_size(self, limit: int | None) -> int:
        if limit is None:
            return self.settings.page_size_default
        if limit < 1 or limit > self.settings.page_size_max:
            raise InvalidInput(f"limit must be 1-{self.settings.page_size_max}", field="limit")
        return limit

    # --- single objects ---------------------------------------------------------------------------

    def piece(self, piece_id: str) -> Piece:
        with self._conn() as conn:
            found = store.load_pieces(conn, [piece_id])
        if not found:
            raise NotFound(f"piece {piece_id!r} does not exist", code="piece_not_found", field="piece_id")
        return found[0]

    def certificate(self, certificate_id: str) -> Certificate:
        with self._conn() as conn:
            found = store.load_certificates(conn, [certificate_id])
        if not found:
            raise NotFound(
                f"certificate {certificate_id!r} does not exist",
                code="certificate_not_found",
                field="certificate_id",
            )
        return found[0]

    def party(self, org_id: str) -> Party:
        with self._conn() as conn:
            found = store.load_parties(conn, [org_id])
        if not found:
            raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field="org_id")
        return found[0]

    def parties(self) -> list[Party]:
        with self._conn() as conn:
            return [store.party_from_row(r) for r in conn.execute(select(parties).order_by(parties.c.org_id))]

    # --- lists ------------------------------------------------------------------------------------

    def pieces_by_holder(
        self, holder: str, *, live_only: bool = True, cursor: str | None = None, limit: int | None = None
    ) -> Page:
        size = self.page_size(limit)
        stmt = select(pieces).where(pieces.c.holder == holder)
        if live_only:
            stmt = stmt.where(pieces.c.state.in_(LIVE))
        if cursor:
            seq, pid = _parse_cursor(cursor)
            stmt = stmt.where(or_(pieces.c.created_seq > seq, and_(pieces.c.created_seq == seq, pieces.c.id > pid)))
        stmt = stmt.order_by(pieces.c.created_seq, pieces.c.id).limit(size + 1)
        with self._conn() as conn:
            rows = [store.piece_from_row(r) for r in conn.execute(stmt)]
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = f"{rows[-1].created_seq}:{rows[-1].id}" if more and rows else None
        return Page(rows, next_cursor)

    def certificates_by_issuer(self, issuer: str, *, cursor: str | None = None, limit: int | None = None) -> Page:
        size = self.page_size(limit)
        stmt = select(certificates).where(certificates.c.issuer == issuer)
        if cursor:
            seq, cid = _parse_cursor(cursor)
            stmt = stmt.where(
                or_(
                    certificates.c.created_seq > seq,
                    and_(certificates.c.created_seq == seq, certificates.c.id > cid),
                )
            )
        stmt = stmt.order_by(certificates.c.created_seq, certificates.c.id).limit(size + 1)
        with self._conn() as conn:
            rows = [store.certificate_from_row(r) for r in conn.execute(stmt)]
        more = len(rows) > size
        rows = rows[:size]
        return Page(rows, f"{rows[-1].created_seq}:{rows[-1].id}" if more and rows else None)

    def tree(self, certificate_id: str) -> list[Piece]:
        """Every piece of a certificate, in creation order (parents before children)."""
        self.certificate(certificate_id)
        cap = self.settings.tree_max_nodes_per_query
        stmt = (
            select(pieces)
            .where(pieces.c.certificate_id == certificate_id)
            .order_by(pieces.c.created_seq, pieces.c.id)
            .limit(cap + 1)
        )
        with self._conn() as conn:
            rows = [store.piece_from_row(r) for r in conn.execute(stmt)]
        if len(rows) > cap:
            raise LimitExceeded(f"the certificate has more than {cap} pieces", code="tree_too_large")
        return rows

    def provenance(self, piece_id: str) -> list[Piece]:
        """The chain from ``piece_id`` up to the certificate's first piece, in one recursive query."""
        # The CTE carries whole rows, so no join back to pieces (which tempts planners into a scan).
        depth = literal(0, Integer).label("depth")
        chain = select(*pieces.c, depth).where(pieces.c.id == piece_id).cte("chain", recursive=True)
        parent = pieces.alias("parent")
        chain = chain.union_all(
            select(*parent.c, (chain.c.depth + 1).label("depth")).where(parent.c.id == chain.c.parent_id)
        )
        stmt = select(*[chain.c[c.name] for c in pieces.c]).order_by(chain.c.depth)
        with self._conn() as conn:
            rows = [store.piece_from_row(r) for r in conn.execute(stmt)]
        if not rows:
            raise NotFound(f"piece {piece_id!r} does not exist", code="piece_not_found", field="piece_id")
        return rows

    def history(self, piece_id: str) -> list[dict[str, Any]]:
        """What happened to a piece: how it was created (from the entry that created it), then every event."""
        piece = self.piece(piece_id)
        stmt = select(piece_events).where(piece_events.c.piece_id == piece_id).order_by(piece_events.c.seq)
        created = select(ledger_entries.c.op_type, ledger_entries.c.actor, ledger_entries.c.ts_ms).where(
            ledger_entries.c.seq == piece.created_seq
        )
        with self._conn() as conn:
            origin = conn.execute(created).one()
            events = [{"seq": r.seq, "event": r.event, "actor": r.actor, "ts_ms": r.ts_ms} for r in conn.execute(stmt)]
        how = _CREATION.get(origin.op_type, origin.op_type)
        if origin.op_type == "transfer" and piece.holder == origin.actor:
            how = "change"
        first = {"seq": piece.created_seq, "event": how, "actor": origin.actor, "ts_ms": origin.ts_ms}
        return [first, *events]

    # --- aggregates -------------------------------------------------------------------------------

    def liability(self, issuer: str) -> Liability:
        stmt = (
            select(certificates.c.state, func.sum(certificates.c.face_minor), func.count())
            .where(certificates.c.issuer == issuer)
            .group_by(certificates.c.state)
        )
        with self._conn() as conn:
            rows = {r[0]: (int(r[1] or 0), int(r[2])) for r in conn.execute(stmt)}
        outstanding = rows.get(CertificateState.OUTSTANDING.value, (0, 0))
        overdue = rows.get(CertificateState.OVERDUE.value, (0, 0))
        pending = rows.get(CertificateState.PENDING.value, (0, 0))
        return Liability(
            issuer,
            outstanding_minor=outstanding[0] + overdue[0],
            pending_minor=pending[0],
            certificates=outstanding[1] + overdue[1] + pending[1],
            overdue_minor=overdue[0],
        )

    def circulation_by_tier(self, issuer: str | None = None) -> list[TierValue]:
        stmt = select(
            pieces.c.tier,
            func.sum(pieces.c.amount_minor),
            func.count(),
            func.count(func.distinct(pieces.c.holder)),
        ).where(pieces.c.state.in_(LIVE))
        if issuer is not None:
            stmt = stmt.join(certificates, certificates.c.id == pieces.c.certificate_id).where(
                certificates.c.issuer == issuer
            )
        stmt = stmt.group_by(pieces.c.tier).order_by(pieces.c.tier)
        with self._conn() as conn:
            return [TierValue(int(t), int(a), int(n), int(h)) for t, a, n, h in conn.execute(stmt)]

    def has_held(self, org_id: str, certificate_id: str) -> bool:
        """Whether ``org_id`` holds or ever held (or sent) a piece of the certificate."""
        stmt = (
            select(pieces.c.id)
            .where(pieces.c.certificate_id == certificate_id, or_(pieces.c.holder == org_id, pieces.c.sender == org_id))
            .limit(1)
        )
        with self._conn() as conn:
            return conn.execute(stmt).first() is not None

    def is_party_to_piece(self, org_id: str, piece: Piece) -> bool:
        """Holder, sender, or issuer of the certificate: the organisations that may see a piece."""
        if org_id in (piece.holder, piece.sender):
            return True
        return self.certificate(piece.certificate_id).issuer == org_id


def _parse_cursor(cursor: str) -> tuple[int, str]:
    try:
        seq_text, ident = cursor.split(":", 1)
        seq = int(seq_text)
        if not 0 <= seq < 2**63 or len(ident) > 64:
            raise ValueError(cursor)
        return seq, ident
    except ValueError as exc:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from exc
