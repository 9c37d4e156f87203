"""Maturity clearing (到期清分): the issuer pays the face value once; every holder of a live piece is paid.

`clear` builds the payment instructions as an ISO 20022 pain.001.001.09 file (validated against the
official schema before anything is written), and in ONE transaction stores the file and appends the
`clear` operation that closes every outstanding piece as `cleared`. The amounts in the file add up to
the face value exactly, because the ledger refuses a clear whose pieces do not.

A certificate matured and unpaid becomes `overdue` (`mark_overdue_due`); `owed_report` lists who is
owed what, penalty interest accrued to date (ACT/360, same rounding rule as discounting), and, where a
bank financed a piece with recourse, the supplier that sold it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from creditflow.config import Settings
from creditflow.financing import pain001, store
from creditflow.financing.policy import penalty_minor
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger import reads as ledger_reads
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.certificates import CHINA_TZ, CertificateState, Piece, PieceState
from creditflow.ledger.model.parties import PLATFORM
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.queries import Queries
from creditflow.ledger.service import LedgerService, new_op_id


@dataclass(frozen=True, slots=True)
class ClearingResult:
    certificate_id: str
    message_id: str
    payment_file: bytes
    transfers: list[dict[str, Any]]
    total_minor: int
    seq: int


class ClearingService:
    def __init__(self, engine: Engine, ledger: LedgerService, queries: Queries, settings: Settings, clock: Clock):
        self.engine = engine
        self.ledger = ledger
        self.queries = queries
        self.settings = settings
        self.clock = clock

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, CHINA_TZ).date()

    def set_account(self, org_id: str, account_name: str, account_number: str, bic: str) -> None:
        """An organisation's settlement account (where clearing pays it, or what the issuer pays from)."""
        self.queries.party(org_id)
        try:
            pain001.Account(account_name, account_number, bic).check(org_id)
        except ValueError as exc:
            raise InvalidInput(
                str(exc), code="invalid_account", field="bic" if "BIC" in str(exc) else "account_number"
            ) from exc
        with self.engine.begin() as conn:
            store.replace_account(conn, org_id, pain001.Account(account_name, account_number, bic))

    def _accounts(self, conn: Connection, org_ids: list[str]) -> dict[str, pain001.Account]:
        """The settlement accounts of ``org_ids`` (one batch read); the first without one, in the order
        given, is refused."""
        found = store.accounts(conn, org_ids)
        for org_id in org_ids:
            if org_id not in found:
                raise Conflict(
                    f"{org_id} has no settlement account on file", code="no_settlement_account", field="org_id"
                )
        return found

    def record_payment(self, payer: str, certificate_id: str, amount_minor: int, reference: str) -> None:
        """The issuer's single payment of the face value."""
        check_amount_minor(amount_minor)
        cert = self.queries.certificate(certificate_id)
        if cert.issuer != payer:
            raise Forbidden("only the issuer pays its certificate", code="not_issuer", field="certificate_id")
        if cert.state not in (CertificateState.OUTSTANDING, CertificateState.OVERDUE):
            raise Conflict(f"the certificate is {cert.state.value}", code="certificate_not_outstanding")
        if amount_minor != cert.face_minor:
            raise InvalidInput(
                f"the payment must be the face value, {cert.face_minor} fen",
                code="payment_mismatch",
                field="amount_minor",
            )
        with self.engine.begin() as conn:
            if store.is_paid(conn, cert.id):
                raise Conflict("the certificate has already been paid", code="already_paid", field="certificate_id")
            store.insert_payment(conn, cert.id, payer, amount_minor, reference[:140] or "payment", self.clock.now_ms())

    def clear(self, certificate_id: str) -> ClearingResult:
        cert = self.queries.certificate(certificate_id)
        if cert.state not in (CertificateState.OUTSTANDING, CertificateState.OVERDUE):
            raise Conflict(f"the certificate is {cert.state.value}", code="certificate_not_outstanding")
        today = self._today()
        if today < cert.maturity_date:
            raise Conflict(f"the certificate matures on {cert.maturity_date}", code="not_matured")
        with self.engine.connect().execution_options(read_only=True) as conn:
            if not store.is_paid(conn, cert.id):
                raise Conflict("the issuer has not paid this certificate", code="not_paid", field="certificate_id")
            live = ledger_reads.live_pieces_of_certificate(conn, cert.id)
            accounts = self._accounts(conn, [cert.issuer, *dict.fromkeys(p.holder for p in live)])
            debtor = accounts[cert.issuer]
            creditors = {p.holder: accounts[p.holder] for p in live}
        message_id = f"CF{uuid.uuid4().hex[:24].upper()}"
        transfers = [
            pain001.CreditTransfer(
                end_to_end_id=p.id.replace("-", "")[:35],
                amount_minor=p.amount_minor,
                creditor=creditors[p.holder],
                remittance=f"creditflow certificate {cert.id} piece {p.id}",
            )
            for p in live
        ]
        file = pain001.build(
            message_id=message_id,
            created=dt.datetime.now(dt.UTC),
            debtor=debtor,
            execution_date=max(today, cert.maturity_date),
            transfers=transfers,
            currency=cert.currency,
        )
        total = sum(t.amount_minor for t in transfers)

        def precheck(conn: Connection, _state: MemoryState) -> None:
            store.insert_clearing_run(conn, cert.id, message_id, file, total, len(transfers), self.clock.now_ms())

        receipt = self.ledger.platform_operation(
            ops.Clear(
                op_id=new_op_id(),
                actor=PLATFORM,
                certificate_id=cert.id,
                payment_ref=message_id,
                piece_ids=tuple(p.id for p in live),
            ),
            precheck,
        )
        return ClearingResult(
            certificate_id=cert.id,
            message_id=message_id,
            payment_file=file,
            transfers=[{"piece_id": p.id, "holder": p.holder, "amount_minor": p.amount_minor} for p in live],
            total_minor=total,
            seq=receipt.seq,
        )

    def payment_file(self, certificate_id: str) -> bytes:
        with self.engine.connect().execution_options(read_only=True) as conn:
            file = store.payment_file(conn, certificate_id)
        if file is None:
            raise NotFound("no clearing run for this certificate", code="clearing_not_found", field="certificate_id")
        return file

    def mark_overdue_due(self) -> list[str]:
        """Every outstanding certificate past maturity with no payment becomes overdue."""
        today = self._today()
        with self.engine.connect().execution_options(read_only=True) as conn:
            paid = store.paid_certificate_ids(conn)
            matured = ledger_reads.certificates_in_states(conn, [CertificateState.OUTSTANDING], matured_before=today)
            due = [c.id for c in matured if c.id not in paid]
        marked = []
        for cert_id in due:
            live = [p for p in self.queries.tree(cert_id) if p.live]
            try:
                self.ledger.platform_operation(
                    ops.MarkOverdue(
                        op_id=new_op_id(), actor=PLATFORM, certificate_id=cert_id, piece_ids=tuple(p.id for p in live)
                    )
                )
            except Conflict:
                continue
            marked.append(cert_id)
        return marked

    def owed_report(self, issuer: str | None = None) -> list[dict[str, Any]]:
        """Who is owed what on overdue certificates, with penalty interest accrued to today and recourse."""
        today = self._today()
        with self.engine.connect().execution_options(read_only=True) as conn:
            certs = ledger_reads.certificates_in_states(conn, [CertificateState.OVERDUE], issuer=issuer)
            recourse = store.recourse_agreements(conn)
        rows: list[dict[str, Any]] = []
        for cert in certs:
            days = (today - cert.maturity_date).days
            tree = self.queries.tree(cert.id)
            by_id = {p.id: p for p in tree}
            for p in tree:
                if p.state != PieceState.OVERDUE:
                    continue
                # A financed piece may have been split since, any number of times: its agreement is on the
                # bank piece the chain of the bank's own pieces leads back to.
                agreement = _agreement_of(p, by_id, recourse)
                rows.append(
                    {
                        "certificate_id": cert.id,
                        "issuer": cert.issuer,
                        "maturity_date": cert.maturity_date.isoformat(),
                        "days_overdue": days,
                        "piece_id": p.id,
                        "holder": p.holder,
                        "owed_minor": p.amount_minor,
                        "penalty_minor": penalty_minor(p.amount_minor, self.settings.penalty_rate_bps, days),
                        "recourse_to": agreement["seller"]
                        if agreement is not None and agreement["bank"] == p.holder
                        else None,
                    }
                )
        return rows


def _agreement_of(
    piece: Piece, by_id: dict[str, Piece], agreements: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The financing agreement behind a bank-held piece: walk up while the holder stays the same."""
    current: Piece | None = piece
    while current is not None:
        if current.id in agreements:
            return agreements[current.id]
        parent = by_id.get(current.parent_id) if current.parent_id else None
        current = parent if parent is not None and parent.holder == piece.holder else None
    return None
