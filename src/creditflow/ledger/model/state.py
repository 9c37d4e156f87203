"""Ledger state held in memory: the offline replay's whole world, and the service's per-batch overlay."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from creditflow.ledger.model.certificates import Certificate, Effects, Piece, PieceEvent
from creditflow.ledger.model.parties import Party, PartyKey


@dataclass(slots=True)
class MemoryState:
    pieces: dict[str, Piece] = field(default_factory=dict)
    certificates: dict[str, Certificate] = field(default_factory=dict)
    parties: dict[str, Party] = field(default_factory=dict)
    party_keys: dict[str, dict[str, PartyKey]] = field(default_factory=dict)
    events: list[PieceEvent] = field(default_factory=list)
    keep_events: bool = True

    def piece(self, piece_id: str) -> Piece | None:
        return self.pieces.get(piece_id)

    def certificate(self, certificate_id: str) -> Certificate | None:
        return self.certificates.get(certificate_id)

    def party(self, org_id: str) -> Party | None:
        return self.parties.get(org_id)

    def keys(self, org_id: str) -> list[PartyKey]:
        return list(self.party_keys.get(org_id, {}).values())

    def load(
        self,
        pieces: Iterable[Piece] = (),
        certificates: Iterable[Certificate] = (),
        parties: Iterable[Party] = (),
        keys: Iterable[PartyKey] = (),
    ) -> None:
        for p in pieces:
            self.pieces[p.id] = p
        for c in certificates:
            self.certificates[c.id] = c
        for party in parties:
            self.parties[party.org_id] = party
        for k in keys:
            self.party_keys.setdefault(k.org_id, {})[k.key_id] = k

    def apply_effects(self, effects: Effects) -> None:
        self.load(effects.pieces, effects.certificates, effects.parties, effects.keys)
        if self.keep_events:
            self.events.extend(effects.events)
