"""Organisations (parties) and their signing keys, as the ledger knows them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    CORE_ENTERPRISE = "core_enterprise"
    SUPPLIER = "supplier"
    BANK = "bank"
    AUDITOR = "auditor"
    OPERATOR = "operator"


PLATFORM = "platform"
"""The actor name of the platform itself: it registers parties and expires stale pending pieces,
signing with the log key whose public half every verifier is given."""

# Roles that may hold pieces of a certificate.
HOLDER_ROLES = frozenset({Role.CORE_ENTERPRISE, Role.SUPPLIER, Role.BANK})


@dataclass(frozen=True, slots=True)
class Party:
    org_id: str
    name: str
    role: Role
    uscc: str
    created_seq: int


@dataclass(frozen=True, slots=True)
class PartyKey:
    """A public key of an organisation. A rotated key stays on record so that old signatures verify:
    it was valid for entries with ``valid_from_seq <= seq < revoked_at_seq``."""

    org_id: str
    key_id: str
    public_key: bytes
    valid_from_seq: int
    revoked_at_seq: int | None = None

    def valid_at(self, seq: int) -> bool:
        return self.valid_from_seq <= seq and (self.revoked_at_seq is None or seq < self.revoked_at_seq)
