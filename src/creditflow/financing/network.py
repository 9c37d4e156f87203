"""The supply-chain network as a whole: how far a core enterprise's credit reaches, who is exposed.

* penetration: per tier, the value that reached it (issued to tier 1, or received by transfer), how many
  distinct suppliers it reached, the share of that value turned into cash by financing, and the median
  days from issue to cash (financing date, or maturity for pieces paid at clearing);
* exposure: what each bank holds of each core enterprise's live certificates;
* what-if: if a core enterprise defaults, what each holder stands to lose, and where recourse moves a
  bank's loss back onto the supplier that sold it the piece.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from creditflow.financing import store
from creditflow.kernel.engine import Engine
from creditflow.ledger import reads as ledger_reads
from creditflow.ledger.model.certificates import Certificate, CertificateState, Piece, PieceState
from creditflow.ledger.model.parties import Role

_NOT_VOID = tuple(s for s in CertificateState if s != CertificateState.VOID)


@dataclass(frozen=True, slots=True)
class TierPenetration:
    tier: int
    value_reached_minor: int
    suppliers_reached: int
    financed_minor: int
    financed_share: float
    median_days_to_cash: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "value_reached_minor": self.value_reached_minor,
            "suppliers_reached": self.suppliers_reached,
            "financed_minor": self.financed_minor,
            "financed_share": round(self.financed_share, 4),
            "median_days_to_cash": self.median_days_to_cash,
        }


class NetworkService:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _load(self, issuer: str | None) -> tuple[list[Certificate], list[Piece], dict[str, Role], list[dict[str, Any]]]:
        """The issuer's (or every) certificate that is not void, all their pieces, every agreement, and the
        role of each organisation the views name (holders, the issuer, sellers): a few batch reads."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            certs = ledger_reads.certificates_in_states(conn, _NOT_VOID, issuer=issuer)
            all_pieces = ledger_reads.pieces_of_certificates(conn, [c.id for c in certs])
            agreements = store.all_agreements(conn)
            named = {p.holder for p in all_pieces} | {a["seller"] for a in agreements}
            if issuer:
                named.add(issuer)
            roles = {org: party.role for org, party in ledger_reads.parties_by_id(conn, named).items()}
        return certs, all_pieces, roles, agreements

    def penetration(self, issuer: str) -> dict[str, Any]:
        certs, all_pieces, roles, agreements = self._load(issuer)
        by_id = {p.id: p for p in all_pieces}
        cert_by_id = {c.id: c for c in certs}
        reached: dict[int, int] = defaultdict(int)
        suppliers: dict[int, set[str]] = defaultdict(set)
        for p in all_pieces:
            parent = by_id.get(p.parent_id) if p.parent_id else None
            arrived = parent is None or (p.sender == parent.holder and p.holder != parent.holder)
            if (
                arrived
                and roles.get(p.holder) == Role.SUPPLIER
                and p.state not in (PieceState.REJECTED, PieceState.EXPIRED)
            ):
                reached[p.tier] += p.amount_minor
                suppliers[p.tier].add(p.holder)
        financed: dict[int, int] = defaultdict(int)
        days: dict[int, list[int]] = defaultdict(list)
        for a in agreements:
            cert = cert_by_id.get(a["certificate_id"])
            if cert is None:
                continue
            financed[a["tier"]] += a["face_minor"]
            days[a["tier"]].append((a["financed_on"] - cert.issue_date).days)
        for p in all_pieces:
            if p.state == PieceState.CLEARED and roles.get(p.holder) == Role.SUPPLIER:
                cert = cert_by_id[p.certificate_id]
                days[p.tier].append((cert.maturity_date - cert.issue_date).days)
        tiers = sorted(set(reached) | set(financed))
        rows = [
            TierPenetration(
                tier=t,
                value_reached_minor=reached[t],
                suppliers_reached=len(suppliers[t]),
                financed_minor=financed[t],
                financed_share=financed[t] / reached[t] if reached[t] else 0.0,
                median_days_to_cash=float(statistics.median(days[t])) if days[t] else None,
            )
            for t in tiers
        ]
        return {
            "issuer": issuer,
            "certificates": len(certs),
            "issued_minor": sum(c.face_minor for c in certs),
            "deepest_tier": max(tiers, default=0),
            "tiers": [r.to_json() for r in rows],
        }

    def flows(self, issuer: str) -> dict[str, Any]:
        """Where the issuer's credit went, holder by holder: every arrival of value (the issue to tier 1,
        a transfer to the next tier, a sale to a bank) summed per (from, to) pair. A node is a holder at
        a tier (the same organisation at two tiers is two nodes), so the flow never loops back; value
        that was refused or expired never arrived and is left out, as in `penetration`."""
        certs, all_pieces, roles, _agreements = self._load(issuer)
        by_id = {p.id: p for p in all_pieces}
        flow: dict[tuple[tuple[int, str], tuple[int, str]], int] = defaultdict(int)
        for p in all_pieces:
            if p.state in (PieceState.REJECTED, PieceState.EXPIRED):
                continue
            parent = by_id.get(p.parent_id) if p.parent_id else None
            if parent is None:
                flow[((0, issuer), (p.tier, p.holder))] += p.amount_minor
            elif p.sender == parent.holder and p.holder != parent.holder:
                flow[((parent.tier, parent.holder), (p.tier, p.holder))] += p.amount_minor
        nodes = sorted({n for pair in flow for n in pair})
        index = {n: i for i, n in enumerate(nodes)}
        return {
            "issuer": issuer,
            "certificates": len(certs),
            "nodes": [
                {"org_id": org, "tier": tier, "role": roles.get(org, Role.SUPPLIER).value} for tier, org in nodes
            ],
            "links": [
                {"source": index[a], "target": index[b], "amount_minor": v} for (a, b), v in sorted(flow.items())
            ],
        }

    def exposure(self) -> list[dict[str, Any]]:
        """Live value each bank holds, by issuing core enterprise."""
        certs, all_pieces, roles, _ = self._load(None)
        issuer_of = {c.id: c.issuer for c in certs}
        held: dict[tuple[str, str], int] = defaultdict(int)
        for p in all_pieces:
            if p.live and roles.get(p.holder) == Role.BANK:
                held[(p.holder, issuer_of[p.certificate_id])] += p.amount_minor
        return [{"bank": b, "core": c, "exposure_minor": v} for (b, c), v in sorted(held.items())]

    def what_if_default(self, issuer: str) -> dict[str, Any]:
        """If ``issuer`` pays nothing: each holder's direct loss, and the loss after recourse claims."""
        _certs, all_pieces, roles, agreements = self._load(issuer)
        direct: dict[str, int] = defaultdict(int)
        for p in all_pieces:
            if p.live:
                direct[p.holder] += p.amount_minor
        by_id = {p.id: p for p in all_pieces}
        recourse = {a["bank_piece_id"]: a for a in agreements if a["with_recourse"]}
        after = dict(direct)
        for p in all_pieces:
            if not p.live or roles.get(p.holder) != Role.BANK:
                continue
            origin = p
            while origin.id not in recourse and origin.parent_id and by_id[origin.parent_id].holder == p.holder:
                origin = by_id[origin.parent_id]
            agreement = recourse.get(origin.id)
            if agreement is not None:
                after[p.holder] -= p.amount_minor
                after[agreement["seller"]] = after.get(agreement["seller"], 0) + p.amount_minor
        holders = sorted(set(direct) | set(after))
        return {
            "issuer": issuer,
            "total_at_risk_minor": sum(direct.values()),
            "holders": [
                {
                    "org_id": h,
                    "role": roles.get(h, Role.SUPPLIER).value,
                    "direct_loss_minor": direct.get(h, 0),
                    "loss_after_recourse_minor": after.get(h, 0),
                }
                for h in holders
            ],
        }
