"""Maturity clearing (到期清分): the issuer pays the face value once; every holder of a live piece is paid.

`clear` builds the payment instructions as an ISO 20022 pain.001.001.09 file (validated against the
official schema before anything is written), and in ONE transaction stores the file and appends the
`clear` operation that closes every outstanding piece as `cleared`. The ledger refuses a clear whose
pieces do not add up to the face value; the file and the held payouts together add up to it exactly.

One holder's data never fails another's payout (issue 13): a holder without a settlement account, or
whose account on file breaks the ISO 20022 rules (rows saved before the rules existed), is not paid in the
file: its payout is HELD (`held_payouts`, with a stable code: ``no_settlement_account``,
``invalid_settlement_account``) and its admins are told; every other holder is paid. `release_held` pays
held payouts later, in a file of their own, once their holders have a valid account in effect. Only the
issuer's own account (the debtor of every transfer) can stop its clearing.

Accounts (`set_account`) are checked when saved (`creditflow.financing.accounts`); a CHANGE of an account
takes effect after ``financing.account_change_wait_s`` and is notified to the organisation's admins at
once, who may cancel it meanwhile (`cancel_account_change`); until then payouts use the previous account.
An organisation's first account takes effect at once.

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
from creditflow.financing.accounts import PendingChange, check_account, mask
from creditflow.financing.policy import penalty_minor
from creditflow.identity import reads as identity
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
    payment_file_present: bool = True
    held: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    certificate_id: str
    message_id: str
    payment_file: bytes
    transfers: list[dict[str, Any]]
    total_minor: int
    still_held: list[dict[str, Any]]


def _account_json(account: pain001.Account | None) -> dict[str, str] | None:
    if account is None:
        return None
    return {"account_name": account.name, "account_number": account.account_number, "bic": account.bic}


def _pending_json(change: PendingChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "account_name": change.account_name,
        "account_number": change.account_number,
        "bic": change.bic,
        "requested_ts_ms": change.requested_ts_ms,
        "effective_ts_ms": change.effective_ts_ms,
        "requested_by": change.requested_by,
    }


def _as_account(change: PendingChange) -> pain001.Account:
    return pain001.Account(change.account_name, change.account_number, change.bic)


class ClearingService:
    def __init__(self, engine: Engine, ledger: LedgerService, queries: Queries, settings: Settings, clock: Clock):
        self.engine = engine
        self.ledger = ledger
        self.queries = queries
        self.settings = settings
        self.clock = clock

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, CHINA_TZ).date()

    # --- settlement accounts and their waiting period -------------------------------------------------

    def _settle(
        self, conn: Connection, org_id: str, now_ms: int
    ) -> tuple[pain001.Account | None, PendingChange | None]:
        """(account in effect, pending change) of ``org_id``, a due change made the account first."""
        current = store.accounts(conn, [org_id]).get(org_id)
        pending = store.pending_changes(conn, [org_id]).get(org_id)
        if pending is not None and pending.due(now_ms):
            current = _as_account(pending)
            store.replace_account(conn, org_id, current)
            store.delete_pending_change(conn, org_id)
            pending = None
        return current, pending

    def _effective(self, conn: Connection, org_ids: list[str], now_ms: int) -> dict[str, pain001.Account]:
        """The accounts in effect at ``now_ms`` (a due change counts; read-only: nothing is promoted)."""
        found = store.accounts(conn, org_ids)
        for org_id, change in store.pending_changes(conn, org_ids).items():
            if change.due(now_ms):
                found[org_id] = _as_account(change)
        return found

    def account_state(self, org_id: str) -> dict[str, Any]:
        """The account in effect and the pending change (if any) of ``org_id``."""
        self.queries.party(org_id)
        now = self.clock.now_ms()
        with self.engine.connect().execution_options(read_only=True) as conn:
            current = self._effective(conn, [org_id], now).get(org_id)
            pending = store.pending_changes(conn, [org_id]).get(org_id)
        if pending is not None and pending.due(now):
            pending = None
        return {"org_id": org_id, "account": _account_json(current), "pending": _pending_json(pending)}

    def set_account(
        self, org_id: str, account_name: str, account_number: str, bic: str, *, requested_by: str = "system"
    ) -> dict[str, Any]:
        """Save an organisation's settlement account (where clearing pays it, or what the issuer pays from).

        Checked against the ISO 20022 rules first (422 ``invalid_account_name`` / ``invalid_account_number``
        / ``invalid_bic``). The first account takes effect at once; a change waits
        ``financing.account_change_wait_s`` (a new request replaces a pending one and restarts the wait;
        saving the account in effect again withdraws a pending change). The admins are told either way."""
        self.queries.party(org_id)
        check_account(account_name, account_number, bic)
        new = pain001.Account(account_name, account_number, bic)
        now = self.clock.now_ms()
        wait_ms = self.settings.financing.account_change_wait_s * 1000
        with self.engine.begin() as conn:
            current, pending = self._settle(conn, org_id, now)
            if current is None or wait_ms == 0:
                store.replace_account(conn, org_id, new)
                store.delete_pending_change(conn, org_id)
                identity.notify_admins(
                    conn,
                    org_id=org_id,
                    kind="account_set",
                    message=f"settlement account set to {mask(account_number)} at {bic} by {requested_by}"
                    + (f", replacing {mask(current.account_number)} at {current.bic}" if current else ""),
                    now_ms=now,
                    data={"account_number": mask(account_number), "bic": bic, "requested_by": requested_by},
                )
                return {"org_id": org_id, "account": _account_json(new), "pending": None}
            if new == current:
                if pending is not None:
                    store.delete_pending_change(conn, org_id)
                    identity.notify_admins(
                        conn,
                        org_id=org_id,
                        kind="account_change_cancelled",
                        message=f"the pending change to {mask(pending.account_number)} was withdrawn by "
                        f"{requested_by} (the account in effect was saved again)",
                        now_ms=now,
                        data={"account_number": mask(pending.account_number), "cancelled_by": requested_by},
                    )
                return {"org_id": org_id, "account": _account_json(current), "pending": None}
            if pending is not None and _as_account(pending) == new:
                return {"org_id": org_id, "account": _account_json(current), "pending": _pending_json(pending)}
            change = PendingChange(org_id, account_name, account_number, bic, now, now + wait_ms, requested_by)
            store.put_pending_change(conn, change)
            identity.notify_admins(
                conn,
                org_id=org_id,
                kind="account_change_requested",
                message=f"{requested_by} asked to change the settlement account from {mask(current.account_number)} "
                f"at {current.bic} to {mask(account_number)} at {bic}; it takes effect at {change.effective_ts_ms} "
                "(ms since the epoch) unless an admin cancels it",
                now_ms=now,
                data={
                    "account_number": mask(account_number),
                    "bic": bic,
                    "previous_account_number": mask(current.account_number),
                    "previous_bic": current.bic,
                    "effective_ts_ms": change.effective_ts_ms,
                    "requested_by": requested_by,
                },
            )
            return {"org_id": org_id, "account": _account_json(current), "pending": _pending_json(change)}

    def cancel_account_change(self, org_id: str, cancelled_by: str) -> dict[str, Any]:
        """Cancel the pending account change (the caller checked that an admin person asks): 404
        ``account_change_not_found`` when there is none (or it has taken effect already)."""
        self.queries.party(org_id)
        now = self.clock.now_ms()
        with self.engine.begin() as conn:
            current, pending = self._settle(conn, org_id, now)
            if pending is None:
                raise NotFound(
                    "there is no pending account change to cancel", code="account_change_not_found", field="org_id"
                )
            store.delete_pending_change(conn, org_id)
            identity.notify_admins(
                conn,
                org_id=org_id,
                kind="account_change_cancelled",
                message=f"{cancelled_by} cancelled the pending change to {mask(pending.account_number)} at {pending.bic}",
                now_ms=now,
                data={"account_number": mask(pending.account_number), "bic": pending.bic, "cancelled_by": cancelled_by},
            )
        return {"org_id": org_id, "account": _account_json(current), "pending": None}

    def _debtor(self, accounts: dict[str, pain001.Account], issuer: str) -> pain001.Account:
        """The issuer's account, or 409: its own data stops its own clearing (and no one else's)."""
        debtor = accounts.get(issuer)
        if debtor is None:
            raise Conflict(f"{issuer} has no settlement account on file", code="no_settlement_account", field="org_id")
        problems = debtor.problems()
        if problems:
            raise Conflict(
                f"{issuer}'s settlement account breaks the rules ({problems[0][1]}): save it again",
                code="invalid_settlement_account",
                field="org_id",
            )
        return debtor

    @staticmethod
    def _hold_reason(account: pain001.Account | None, holder: str) -> tuple[str, str] | None:
        if account is None:
            return "no_settlement_account", f"{holder} has no settlement account on file"
        problems = account.problems()
        if problems:
            field, message = problems[0]
            return "invalid_settlement_account", f"{holder}'s settlement account: {field}: {message}"
        return None

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
        now = self.clock.now_ms()
        with self.engine.connect().execution_options(read_only=True) as conn:
            if not store.is_paid(conn, cert.id):
                raise Conflict("the issuer has not paid this certificate", code="not_paid", field="certificate_id")
            live = ledger_reads.live_pieces_of_certificate(conn, cert.id)
            accounts = self._effective(conn, [cert.issuer, *dict.fromkeys(p.holder for p in live)], now)
        debtor = self._debtor(accounts, cert.issuer)
        paid: list[Piece] = []
        held: list[dict[str, Any]] = []
        for p in live:
            reason = self._hold_reason(accounts.get(p.holder), p.holder)
            if reason is None:
                paid.append(p)
            else:
                held.append(
                    {
                        "piece_id": p.id,
                        "holder": p.holder,
                        "amount_minor": p.amount_minor,
                        "code": reason[0],
                        "reason": reason[1],
                    }
                )
        message_id = f"CF{uuid.uuid4().hex[:24].upper()}"
        transfers = [self._transfer(cert.id, p, accounts[p.holder]) for p in paid]
        file = (
            pain001.build(
                message_id=message_id,
                created=dt.datetime.now(dt.UTC),
                debtor=debtor,
                execution_date=max(today, cert.maturity_date),
                transfers=transfers,
                currency=cert.currency,
            )
            if transfers
            else None
        )
        total = sum(t.amount_minor for t in transfers)

        def precheck(conn: Connection, _state: MemoryState) -> None:
            store.insert_clearing_run(conn, cert.id, message_id, file, total, len(transfers), now)
            for h in held:
                store.insert_held_payout(
                    conn,
                    piece_id=h["piece_id"],
                    certificate_id=cert.id,
                    holder=h["holder"],
                    amount_minor=h["amount_minor"],
                    code=h["code"],
                    reason=h["reason"],
                    held_ts_ms=now,
                )
            for holder, codes in _by_holder(held).items():
                identity.notify_admins(
                    conn,
                    org_id=holder,
                    kind="payout_held",
                    message=f"your payout on certificate {cert.id} is held ({', '.join(sorted(codes))}): set a valid "
                    "settlement account; the issuer or the operator then releases it",
                    now_ms=now,
                    data={"certificate_id": cert.id, "codes": sorted(codes)},
                )

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
            payment_file=file or b"",
            transfers=[{"piece_id": p.id, "holder": p.holder, "amount_minor": p.amount_minor} for p in paid],
            total_minor=total,
            seq=receipt.seq,
            payment_file_present=file is not None,
            held=[{k: h[k] for k in ("piece_id", "holder", "amount_minor", "code")} for h in held],
        )

    @staticmethod
    def _transfer(certificate_id: str, piece: Piece, creditor: pain001.Account) -> pain001.CreditTransfer:
        return pain001.CreditTransfer(
            end_to_end_id=piece.id.replace("-", "")[:35],
            amount_minor=piece.amount_minor,
            creditor=creditor,
            remittance=f"creditflow certificate {certificate_id} piece {piece.id}",
        )

    def held_payouts(self, certificate_id: str) -> list[dict[str, Any]]:
        """Every payout clearing held on the certificate, with its code and whether it was released."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            return store.held_payouts_of(conn, certificate_id)

    def release_held(self, certificate_id: str) -> ReleaseResult:
        """Pay the held payouts whose holders now have a valid account in effect, in a pain.001 file of their
        own; the others stay held. 409 ``no_held_payouts`` when none is waiting, ``payouts_still_held`` when
        no holder's account is valid yet."""
        cert = self.queries.certificate(certificate_id)
        now = self.clock.now_ms()
        with self.engine.connect().execution_options(read_only=True) as conn:
            waiting = [h for h in store.held_payouts_of(conn, cert.id) if h["released_message_id"] is None]
            if not waiting:
                raise Conflict("no payout of this certificate is held", code="no_held_payouts", field="certificate_id")
            accounts = self._effective(conn, [cert.issuer, *dict.fromkeys(h["holder"] for h in waiting)], now)
        debtor = self._debtor(accounts, cert.issuer)
        ready = [h for h in waiting if self._hold_reason(accounts.get(h["holder"]), h["holder"]) is None]
        still = [h for h in waiting if h not in ready]
        if not ready:
            raise Conflict(
                "every held payout still lacks a valid settlement account",
                code="payouts_still_held",
                field="certificate_id",
            )
        message_id = f"CF{uuid.uuid4().hex[:24].upper()}"
        transfers = [
            pain001.CreditTransfer(
                end_to_end_id=str(h["piece_id"]).replace("-", "")[:35],
                amount_minor=int(h["amount_minor"]),
                creditor=accounts[h["holder"]],
                remittance=f"creditflow certificate {cert.id} piece {h['piece_id']} (released)",
            )
            for h in ready
        ]
        file = pain001.build(
            message_id=message_id,
            created=dt.datetime.now(dt.UTC),
            debtor=debtor,
            execution_date=max(self._today(), cert.maturity_date),
            transfers=transfers,
            currency=cert.currency,
        )
        total = sum(t.amount_minor for t in transfers)
        with self.engine.begin() as conn:
            if store.mark_released(conn, [h["piece_id"] for h in ready], message_id, now) != len(ready):
                raise Conflict("these payouts were released meanwhile", code="payout_already_released")
            store.insert_release(
                conn,
                message_id=message_id,
                certificate_id=cert.id,
                payment_file=file,
                total_minor=total,
                transfers=len(transfers),
                created_ts_ms=now,
            )
        return ReleaseResult(
            certificate_id=cert.id,
            message_id=message_id,
            payment_file=file,
            transfers=[
                {"piece_id": h["piece_id"], "holder": h["holder"], "amount_minor": h["amount_minor"]} for h in ready
            ],
            total_minor=total,
            still_held=[{k: h[k] for k in ("piece_id", "holder", "amount_minor", "code")} for h in still],
        )

    def payment_file(self, certificate_id: str, message_id: str | None = None) -> bytes:
        """The clearing run's file, or (``message_id``) the file of a release."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            if message_id is not None:
                file = store.release_file(conn, certificate_id, message_id)
                if file is None:
                    run = store.clearing_run(conn, certificate_id)
                    file = run[1] if run is not None and run[0] == message_id else None
            else:
                run = store.clearing_run(conn, certificate_id)
                file = None if run is None else run[1]
                if run is not None and file is None:
                    raise NotFound(
                        "the clearing run paid no one (every payout is held): no payment file",
                        code="payment_file_not_found",
                        field="certificate_id",
                    )
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


def _by_holder(held: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for h in held:
        out.setdefault(str(h["holder"]), set()).add(str(h["code"]))
    return out


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
