"""Payables: the core enterprise's debt to a supplier that a certificate is issued on.

A payable is trade's record (off the log); the ledger carries only its digest (`payable_digest`) on the
issue. The ledger knows nothing of payables: the composition root plugs this module in through hooks:

* `PayablesService.get_payable` is the lookup `LedgerService.issue` builds the issue from;
* `PayablesService.precheck_for` gives the checks an issue or a transfer needs inside the sequencer's
  transaction (the trade rules of `creditflow.trade.rules` when enforced, then the draw on the payable);
* `release_void_payables` is a sequencer projection (a void certificate gives its face value back);
* `check_payables` is an extra check of `verify_database` (check 6: what payables say was issued on them
  equals the face value of their certificates that are not void).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from creditflow.config import Settings
from creditflow.identity import reads as identity
from creditflow.kernel.clock import Clock
from creditflow.kernel.encoding import encode
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor, check_currency
from creditflow.ledger import reads as ledger
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.certificates import CertificateState, Effects
from creditflow.ledger.model.parties import Role
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.queries import Page, Queries, decode_cursor, page_from
from creditflow.ledger.sequencer import Precheck
from creditflow.ledger.verifier import VerificationFailure
from creditflow.trade import rules, store


@dataclass(frozen=True, slots=True)
class Payable:
    id: str
    debtor: str
    creditor: str
    amount_minor: int
    currency: str
    reference: str
    digest: str
    issued_minor: int
    status: str = "draft"
    created_by: str | None = None  # the person who entered it (its maker); None: a key or a three-way match


@dataclass(frozen=True, slots=True)
class AwaitingPayable:
    """A payable of the debtor not yet confirmed, with the users who approved it so far."""

    id: str
    creditor: str
    amount_minor: int
    currency: str
    reference: str
    status: str  # draft or matched
    created_ts_ms: int
    approved_by: tuple[str, ...]
    created_by: str | None = None


def payable_digest(
    payable_id: str,
    debtor: str,
    creditor: str,
    amount_minor: int,
    currency: str,
    reference: str,
    documents: Sequence[str] = (),
) -> str:
    """The hash the ledger carries for a payable: the record itself, and the trade documents behind it
    (their digests, ``documents``), stay off the log."""
    body: dict[str, Any] = {
        "v": 1,
        "id": payable_id,
        "debtor": debtor,
        "creditor": creditor,
        "amount_minor": amount_minor,
        "currency": currency,
        "reference": reference,
    }
    if documents:
        body["documents"] = sorted(documents)
    return hashlib.sha256(b"creditflow/payable/v1\x00" + encode(body)).hexdigest()


class PayablesService:
    def __init__(self, engine: Engine, queries: Queries, settings: Settings, clock: Clock):
        self.engine = engine
        self.queries = queries
        self.settings = settings
        self.clock = clock

    def create_payable(
        self,
        debtor: str,
        creditor: str,
        amount_minor: int,
        reference: str,
        *,
        currency: str = "CNY",
        payable_id: str | None = None,
        documents: Sequence[str] = (),
        status: str = "draft",
        created_by: str | None = None,
    ) -> Payable:
        """Record the core enterprise's payable to a supplier: ``draft`` when entered by hand, ``matched``
        when it comes from a three-way match (`ConfirmationService`). Either way it must be confirmed by
        `approvals_required` distinct approvers before it can back an issue (when trade rules are enforced).
        ``created_by`` is the person of the debtor who entered it (its maker, who may not approve it)."""
        check_amount_minor(amount_minor)
        check_currency(currency)
        if not reference or len(reference) > 200:
            raise InvalidInput("reference must be 1-200 characters", field="reference")
        if status not in ("draft", "matched"):
            raise InvalidInput("a new payable is draft or matched", field="status")
        pid = payable_id or f"pay-{uuid.uuid4().hex[:16]}"
        ops.check_ident(pid, "payable_id")
        with self.engine.begin() as conn:
            found = ledger.parties_by_id(conn, [debtor, creditor])
            if debtor not in found:
                raise NotFound(f"organisation {debtor!r} is not registered", code="party_not_found", field="debtor")
            if creditor not in found:
                raise NotFound(f"organisation {creditor!r} is not registered", code="party_not_found", field="creditor")
            if found[debtor].role != Role.CORE_ENTERPRISE:
                raise Forbidden("only a core enterprise records payables", code="role_not_allowed", field="debtor")
            if created_by is not None and not identity.users_of(conn, debtor, [created_by]):
                raise NotFound(f"user {created_by!r} does not exist", code="user_not_found", field="created_by")
            if store.payable_status(conn, pid) is not None:
                raise Conflict(f"payable {pid!r} exists", code="payable_exists", field="payable_id")
            digest = payable_digest(pid, debtor, creditor, amount_minor, currency, reference, documents)
            row = store.PayableRow(
                pid, debtor, creditor, amount_minor, currency, reference, digest, 0, status, created_by
            )
            store.insert_payable(conn, row, self.clock.now_ms())
        return Payable(*row)

    def get_payable(self, payable_id: str) -> Payable:
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = store.load_payable(conn, payable_id)
        if row is None:
            raise NotFound(f"payable {payable_id!r} does not exist", code="payable_not_found", field="payable_id")
        return Payable(*row)

    def awaiting_confirmation(self, debtor: str, *, cursor: str | None = None, limit: int | None = None) -> Page:
        """The debtor's payables that are not confirmed yet (draft or matched), oldest first, each with
        the users who approved it so far (maker-checker)."""
        size = self.queries.page_size(limit)
        after: tuple[int, str] | None = None
        if cursor:
            ts, pid = decode_cursor(cursor, int, str)
            after = (int(ts), str(pid))
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.awaiting_payables(conn, debtor, after, size + 1)
        items = [AwaitingPayable(*r) for r in rows]
        return page_from(items, size, lambda p: (p.created_ts_ms, p.id))

    # --- the ledger's hooks ------------------------------------------------------------------------------

    def precheck_for(self, op: ops.Operation) -> Precheck | None:
        """The checks an operation needs on trade's data, run in the sequencer's transaction."""
        enforce = self.settings.enforce_trade_rules
        if isinstance(op, ops.Issue):
            reserve = _reserve_payable(op)
            if not enforce:
                return reserve

            def issue_checks(conn: Connection, state: MemoryState) -> None:
                rules.check_issue(conn, op)
                reserve(conn, state)

            return issue_checks
        if isinstance(op, ops.Transfer) and enforce:
            transfer = op
            return lambda conn, _state: rules.check_transfer(conn, transfer)
        return None


def _reserve_payable(op: ops.Issue) -> Precheck:
    """Issuing draws on the payable: it must be the issuer's, to this supplier, with the digest the
    ledger will carry, and not over-issued. The reservation is released if the certificate goes void."""

    def precheck(conn: Connection, _state: MemoryState) -> None:
        row = store.load_payable(conn, op.payable_id)
        if row is None:
            raise NotFound(f"payable {op.payable_id!r} does not exist", code="payable_not_found", field="payable_id")
        if row.debtor != op.actor or row.creditor != op.to:
            raise Forbidden(
                "the payable must be owed by the issuer to the recipient",
                code="payable_mismatch",
                field="payable_id",
            )
        if row.digest != op.payable_digest or row.currency != op.currency:
            raise InvalidInput(
                "payable_digest does not match the payable", code="payable_mismatch", field="payable_digest"
            )
        if not store.draw_payable(conn, op.payable_id, op.face_minor):
            raise Conflict(
                f"face value exceeds what is left of the payable ({row.amount_minor - row.issued_minor} fen)",
                code="payable_exceeded",
                field="face_minor",
            )

    return precheck


def release_void_payables(conn: Connection, effects: Effects, before: MemoryState) -> None:
    """Projection: a certificate that goes void gives its face value back to its payable."""
    for cert in effects.certificates:
        old = before.certificate(cert.id)
        if cert.state == CertificateState.VOID and old is not None and old.state != CertificateState.VOID:
            store.release_payable(conn, cert.payable_id, cert.face_minor)


def check_payables(conn: Connection, state: MemoryState) -> None:
    """Verify check 6, on the state re-derived from the log: each payable's issued amount is the face value
    of its certificates that are not void."""
    drawn: dict[str, int] = {}
    for cert in state.certificates.values():
        if cert.state != CertificateState.VOID:
            drawn[cert.payable_id] = drawn.get(cert.payable_id, 0) + cert.face_minor
    for payable_id, issued_minor in store.issued_by_payable(conn):
        if issued_minor != drawn.get(payable_id, 0):
            raise VerificationFailure(
                f"payables row id={payable_id}",
                f"issued_minor is {issued_minor}, certificates draw {drawn.get(payable_id, 0)}",
            )
