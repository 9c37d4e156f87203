"""Read-side queries over the SQL read model. Read-only connections (never take SQLite's write lock).

Lists are pages in a stable order (keyset pagination): ``limit`` items and a ``next_cursor`` naming the
last one's sort key, opaque to clients (`encode_cursor`: URL-safe base64 of the key) and checked when it
comes back (`decode_cursor`: anything else is 422 ``invalid_input`` on ``cursor``, never a 500). A page
starts strictly after its cursor, so rows added meanwhile are neither skipped nor repeated.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from creditflow.config import Settings
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import InvalidInput, LimitExceeded, NotFound
from creditflow.ledger import commitments, store
from creditflow.ledger.model.certificates import LIVE_STATES, Certificate, CertificateState, Piece
from creditflow.ledger.model.parties import Party

LIVE = tuple(s.value for s in LIVE_STATES)
_CREATION = {
    "issue": "issued",
    "transfer": "received",
    "split": "split_off",
    "reject": "returned",
    "expire": "returned",
}


T = TypeVar("T")
CursorKey = tuple[int | str, ...]
CURSOR_MAX_CHARS = 200
_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_INT64 = 2**63


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def encode_cursor(*key: int | str) -> str:
    """An opaque cursor for the sort key ``key`` (ints and strings)."""
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, *shape: type) -> CursorKey:
    """The key `encode_cursor` made, if ``cursor`` is one of the ``shape`` (``int``/``str`` per part)."""
    try:
        if len(cursor) > CURSOR_MAX_CHARS or not _CURSOR_CHARS.fullmatch(cursor):
            raise ValueError(cursor)
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(key, list) or len(key) != len(shape):
            raise ValueError(cursor)
        for part, kind in zip(key, shape, strict=True):
            if type(part) is not kind:  # exact: True is not an int here
                raise ValueError(cursor)
            if isinstance(part, int) and not 0 <= part < _INT64:
                raise ValueError(cursor)
        return tuple(key)
    except (ValueError, binascii.Error) as exc:  # JSON and UTF-8 errors are ValueErrors too
        raise InvalidInput("cursor is not one this API returned", field="cursor") from exc


def page_from(rows: list[T], size: int, key: Callable[[T], CursorKey]) -> Page:
    """A page of the first ``size`` of ``rows`` (fetched ``size + 1``: one more means a next page)."""
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, encode_cursor(*key(rows[-1])) if more and rows else None)


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
        self._commitment_key: bytes | None = None
        self._key_lock = threading.Lock()

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
            return store.all_parties(conn)

    # --- lists ------------------------------------------------------------------------------------

    def pieces_by_holder(
        self, holder: str, *, live_only: bool = True, cursor: str | None = None, limit: int | None = None
    ) -> Page:
        size = self.page_size(limit)
        after = decode_cursor(cursor, int, str) if cursor else None
        with self._conn() as conn:
            rows = store.pieces_of_holder(conn, holder, LIVE if live_only else None, after, size + 1)
        return page_from(rows, size, lambda p: (p.created_seq, p.id))

    def certificates_by_issuer(self, issuer: str, *, cursor: str | None = None, limit: int | None = None) -> Page:
        size = self.page_size(limit)
        after = decode_cursor(cursor, int, str) if cursor else None
        with self._conn() as conn:
            rows = store.certificates_of_issuer(conn, issuer, after, size + 1)
        return page_from(rows, size, lambda c: (c.created_seq, c.id))

    def parties_page(self, *, cursor: str | None = None, limit: int | None = None) -> Page:
        """The directory of organisations, by org_id."""
        size = self.page_size(limit)
        after = decode_cursor(cursor, str) if cursor else None
        with self._conn() as conn:
            rows = store.parties_after(conn, after, size + 1)
        return page_from(rows, size, lambda p: (p.org_id,))

    def page_of(
        self,
        items: Iterable[T],
        key: Callable[[T], CursorKey],
        shape: Sequence[type],
        *,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page:
        """A page of a list computed in memory (reports built from whole scans), in ``key`` order; ``key``
        must be unique per item and its parts of the types in ``shape``."""
        size = self.page_size(limit)
        ordered = sorted(items, key=key)
        if cursor:
            start = decode_cursor(cursor, *shape)
            ordered = [item for item in ordered if key(item) > start]
        return page_from(ordered[: size + 1], size, key)

    def tree(self, certificate_id: str) -> list[Piece]:
        """Every piece of a certificate, in creation order (parents before children)."""
        self.certificate(certificate_id)
        cap = self.settings.tree_max_nodes_per_query
        with self._conn() as conn:
            rows = store.certificate_pieces(conn, certificate_id, cap + 1)
        if len(rows) > cap:
            raise LimitExceeded(f"the certificate has more than {cap} pieces", code="tree_too_large")
        return rows

    def provenance(self, piece_id: str) -> list[Piece]:
        """The chain from ``piece_id`` up to the certificate's first piece, in one recursive query."""
        with self._conn() as conn:
            rows = store.provenance_chain(conn, piece_id)
        if not rows:
            raise NotFound(f"piece {piece_id!r} does not exist", code="piece_not_found", field="piece_id")
        return rows

    def commitment_key(self) -> bytes:
        """The database's key of piece-commitment salts (made on first use if the migration did not)."""
        with self._key_lock:
            if self._commitment_key is None:
                with self._conn() as conn:
                    key = store.commitment_key(conn)
                if key is None:
                    with self.engine.begin() as conn:  # unless another process made it first: then theirs
                        store.insert_commitment_key(conn, secrets.token_bytes(32), int(time.time() * 1000))
                    with self._conn() as conn:
                        key = store.commitment_key(conn)
                assert key is not None
                self._commitment_key = key
            return self._commitment_key

    def commitment(self, piece: Piece) -> tuple[str, str]:
        """(commitment, salt) of a piece (`creditflow.ledger.commitments`)."""
        salt = commitments.salt(self.commitment_key(), piece.id)
        return (
            commitments.commitment(
                certificate_id=piece.certificate_id,
                piece_id=piece.id,
                holder=piece.holder,
                amount_minor=piece.amount_minor,
                salt_hex=salt,
            ),
            salt,
        )

    def history(self, piece_id: str) -> list[dict[str, Any]]:
        """What happened to a piece: how it was created (from the entry that created it), then every event."""
        piece = self.piece(piece_id)
        with self._conn() as conn:
            op_type, actor, ts_ms = store.entry_origin(conn, piece.created_seq)
            events = store.piece_event_rows(conn, piece_id)
        how = _CREATION.get(op_type, op_type)
        if op_type == "transfer" and piece.holder == actor:
            how = "change"
        first = {"seq": piece.created_seq, "event": how, "actor": actor, "ts_ms": ts_ms}
        return [first, *events]

    # --- aggregates -------------------------------------------------------------------------------

    def liability(self, issuer: str) -> Liability:
        with self._conn() as conn:
            rows = store.face_by_state(conn, issuer)
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
        with self._conn() as conn:
            return [TierValue(*row) for row in store.circulation_by_tier(conn, LIVE, issuer)]

    def has_held(self, org_id: str, certificate_id: str) -> bool:
        """Whether ``org_id`` holds or ever held (or sent) a piece of the certificate."""
        with self._conn() as conn:
            return store.has_held(conn, org_id, certificate_id)

    def is_party_to_piece(self, org_id: str, piece: Piece) -> bool:
        """Holder, sender, or issuer of the certificate: the organisations that may see a piece."""
        if org_id in (piece.holder, piece.sender):
            return True
        return self.certificate(piece.certificate_id).issuer == org_id
