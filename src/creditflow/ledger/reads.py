"""The ledger's read model as other contexts see it, inside their own unit of work.

A command of another context (a financing, a confirmation, a clearing) reads the ledger's parties,
pieces and certificates in the same transaction it writes its own rows in, so these functions take
the caller's Connection. They are the only door into the ledger's store for other contexts (an
import-linter contract in pyproject keeps it so): the store's row layout stays the ledger's business.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from creditflow.kernel.engine import Connection
from creditflow.ledger import store
from creditflow.ledger.model.certificates import Certificate, CertificateState, Piece
from creditflow.ledger.model.parties import Party, PartyKey


def parties(conn: Connection, org_ids: Iterable[str]) -> list[Party]:
    """The registered organisations among ``org_ids`` (unknown ids are simply absent)."""
    return store.load_parties(conn, org_ids)


def parties_by_id(conn: Connection, org_ids: Iterable[str]) -> dict[str, Party]:
    return {p.org_id: p for p in store.load_parties(conn, org_ids)}


def pieces(conn: Connection, piece_ids: Iterable[str]) -> list[Piece]:
    return store.load_pieces(conn, piece_ids)


def certificates(conn: Connection, certificate_ids: Iterable[str]) -> list[Certificate]:
    return store.load_certificates(conn, certificate_ids)


def keys(conn: Connection, org_ids: Iterable[str]) -> list[PartyKey]:
    return store.load_keys(conn, org_ids)


# --- for financing ---


def pieces_of_certificates(conn: Connection, certificate_ids: Iterable[str]) -> list[Piece]:
    """Every piece of these certificates (batched), in no particular order."""
    return store.pieces_of_certificates(conn, certificate_ids)


def live_pieces_of_certificate(conn: Connection, certificate_id: str) -> list[Piece]:
    """The certificate's live pieces in creation order (``created_seq``, then id)."""
    return store.live_pieces_of_certificate(conn, certificate_id)


def certificates_in_states(
    conn: Connection,
    states: Iterable[CertificateState],
    *,
    issuer: str | None = None,
    matured_before: dt.date | None = None,
) -> list[Certificate]:
    """Certificates in one of ``states``, optionally of one issuer and maturing strictly before a day."""
    return store.certificates_in_states(conn, states, issuer=issuer, matured_before=matured_before)


# --- for trade ---


def org_ids_by_uscc(conn: Connection, usccs: Iterable[str]) -> dict[str, str]:
    """USCC -> org_id of the registered organisations among ``usccs`` (unknown USCCs are simply absent)."""
    return store.org_ids_by_uscc(conn, usccs)


def face_minor_in_states(conn: Connection, issuer: str, states: Iterable[CertificateState]) -> int:
    """The summed face value of the issuer's certificates in one of ``states`` (0 if none)."""
    return store.face_minor_in_states(conn, issuer, states)


# --- for the tools (demo) ---


def log_head(conn: Connection) -> tuple[int, int]:
    """(tree size, timestamp of the last entry in ms): the log's clock never goes back, so a kept database's
    next operation is dated no earlier than this."""
    return store.read_head(conn)
