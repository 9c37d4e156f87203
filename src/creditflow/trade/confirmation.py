"""Confirmation (确权) with maker-checker, and the core enterprise's credit line.

A payable becomes eligible either from a three-way match of the core enterprise's own purchase order,
goods receipts and invoice (`payable_from_invoice`, status ``matched``) or by hand (status ``draft``).
It is ``confirmed`` only after `approvals_required` (default two) *distinct* people of the debtor holding
the approver role have approved it, each signed in (web session) or with a personal token, never an
organisation-wide key and never the person who entered the payable (`approve`); only a confirmed payable
can back an issue. The payable's digest, which the issue carries onto the log, commits to the digests of
the trade documents behind it (never the documents).
"""

from __future__ import annotations

import hashlib
from typing import Any

from creditflow.config import Settings
from creditflow.identity import reads as identity
from creditflow.identity.access import Principal
from creditflow.identity.roles import Auth, UserRole, parse_roles, require_person
from creditflow.kernel.clock import Clock
from creditflow.kernel.encoding import encode
from creditflow.kernel.engine import Engine
from creditflow.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from creditflow.ledger import reads as ledger
from creditflow.ledger.model.certificates import CertificateState
from creditflow.ledger.model.parties import Role
from creditflow.trade import store
from creditflow.trade.match import MatchStatus
from creditflow.trade.payables import Payable, PayablesService
from creditflow.trade.service import TradeService


class ConfirmationService:
    def __init__(
        self, engine: Engine, payables: PayablesService, trade: TradeService, settings: Settings, clock: Clock
    ):
        self.engine = engine
        self.payables = payables
        self.trade = trade
        self.settings = settings
        self.clock = clock

    # --- credit line -----------------------------------------------------------------------------

    def set_credit_line(self, core: str, limit_minor: int) -> None:
        """Set a core enterprise's credit line; it cannot drop below what its live certificates use."""
        if limit_minor < 0:
            raise InvalidInput("limit must not be negative", field="limit_minor")
        with self.engine.begin() as conn:
            party = ledger.parties(conn, [core])
            if not party or party[0].role != Role.CORE_ENTERPRISE:
                raise InvalidInput(f"{core!r} is not a registered core enterprise", field="core")
            used = ledger.face_minor_in_states(
                conn,
                core,
                [CertificateState.PENDING, CertificateState.OUTSTANDING, CertificateState.OVERDUE],
            )
            if used > limit_minor:
                raise Conflict(f"{used} fen is already outstanding", code="limit_below_use", field="limit_minor")
            store.set_credit_line(conn, core, limit_minor, used, self.clock.now_ms())

    def credit_line(self, core: str) -> dict[str, int]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = store.credit_line(conn, core)
        if row is None:
            raise NotFound(f"{core!r} has no credit line", code="no_credit_line", field="core")
        return {
            "limit_minor": row.limit_minor,
            "used_minor": row.used_minor,
            "free_minor": row.limit_minor - row.used_minor,
        }

    # --- payables ----------------------------------------------------------------------------------

    def payable_from_invoice(self, core: str, invoice_id: int) -> Payable:
        """Three-way match an imported invoice to the core enterprise; on success, the eligible payable
        (status ``matched``, awaiting two approvals). Asking again for the same invoice returns the same
        payable. A failed match raises ``three_way_match_failed`` with every mismatching line."""
        stored = self.trade.get_document(invoice_id, viewer=core)
        invoice = stored.document
        with self.engine.connect().execution_options(read_only=True) as conn:
            by_uscc = ledger.org_ids_by_uscc(conn, [invoice.buyer_uscc, invoice.seller_uscc])
        if by_uscc.get(invoice.buyer_uscc) != core:
            raise Forbidden("only the invoice's buyer turns it into a payable", code="not_buyer", field="invoice_id")
        seller = by_uscc.get(invoice.seller_uscc)
        if seller is None:
            raise NotFound("the invoice's seller is not a registered organisation", code="party_not_found")
        result = self.trade.match_invoice(invoice_id, viewer=core)
        if not result.ok:
            bad = [line.to_json() for line in result.lines if line.status != MatchStatus.MATCHED]
            raise Conflict(
                f"invoice {invoice.number} does not match its order and receipts: "
                + "; ".join(str(b.get("explanation", b)) for b in bad),
                code="three_way_match_failed",
                field="invoice_id",
                lines=bad,
            )
        return self.payable_from_match(
            core, seller, invoice.number, result.eligible_minor, list(result.document_digests), str(invoice_id)
        )

    def payable_from_match(
        self,
        debtor: str,
        creditor: str,
        invoice_number: str,
        gross_minor: int,
        document_digests: list[str],
        invoice_id: str,
    ) -> Payable:
        """Create a payable from a successful three-way match (called by the trade service)."""
        docs = sorted(document_digests)
        reference = f"invoice {invoice_number}"
        payable_id = "pay-" + hashlib.sha256(encode({"invoice": invoice_id, "docs": docs})).hexdigest()[:20]
        with self.engine.connect().execution_options(read_only=True) as conn:
            exists = store.payable_status(conn, payable_id) is not None
        if exists:
            return self.payables.get_payable(payable_id)
        payable = self.payables.create_payable(
            debtor, creditor, gross_minor, reference, payable_id=payable_id, documents=docs, status="matched"
        )
        with self.engine.begin() as conn:
            store.set_payable_invoice(conn, payable.id, invoice_id)
        return payable

    def approve(self, payable_id: str, by: Principal, *, credential: str | None = None) -> dict[str, Any]:
        """A person of the debtor holding the approver role approves; the `approvals_required`-th distinct
        approver's approval confirms the payable. Refused, in this order: 403 ``not_debtor_user`` (the
        caller is not of the debtor), 403 ``person_required`` (an organisation-wide key: it may prepare,
        never approve), 403 ``user_role_not_allowed`` (no approver role, as stored now), 409
        ``already_confirmed``, 403 ``maker_cannot_approve`` (the person who entered the payable), 409
        ``same_approver`` (this person approved it already).

        The approval records who, when and how they were authenticated: ``by.auth`` and ``credential``
        (default ``key:<api key id>`` for a personal token; the pages pass ``session:<reference>``)."""
        payable = self.payables.get_payable(payable_id)
        if by.org_id != payable.debtor:
            raise Forbidden("only users of the debtor confirm its payables", code="not_debtor_user")
        user_id = require_person(by, what="approve payables")
        if credential is None:
            credential = f"key:{by.key_id}" if by.auth == Auth.PERSONAL_TOKEN else by.auth.value
        with self.engine.begin() as conn:
            user = identity.users_of(conn, payable.debtor, [user_id]).get(user_id)
            if user is None:
                raise Forbidden("only users of the debtor confirm its payables", code="not_debtor_user")
            if UserRole.APPROVER not in parse_roles(user.roles):
                raise Forbidden("only a user with the role approver may approve payables", code="user_role_not_allowed")
            status = store.lock_payable_status(conn, payable_id)
            if status == "confirmed":
                raise Conflict("the payable is already confirmed", code="already_confirmed", field="payable_id")
            if payable.created_by == user_id:
                raise Forbidden(
                    "you entered this payable: another approver must confirm it (maker-checker)",
                    code="maker_cannot_approve",
                )
            seen = store.approvers(conn, payable_id)
            if user_id in seen:
                raise Conflict(
                    "you have already approved; a different approver must confirm (maker-checker)",
                    code="same_approver",
                )
            now = self.clock.now_ms()
            approvals = len(seen) + 1
            store.add_approval(
                conn, payable_id, user_id, now, auth=by.auth.value, credential=credential[:80], ordinal=approvals
            )
            confirmed = approvals >= self.settings.approvals_required
            if confirmed:
                store.set_payable_status(conn, payable_id, "confirmed")
        return {
            "payable_id": payable_id,
            "approvals": approvals,
            "required": self.settings.approvals_required,
            "status": "confirmed" if confirmed else status,
            "approved_by": user_id,
            "auth": by.auth.value,
        }

    def approvals(self, payable_id: str) -> list[dict[str, Any]]:
        """The payable's approvals in order: who, when (``approved_ts_ms``), how they were authenticated
        (``auth``: session, personal_token; ``credential``: which key or session)."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.approvals(conn, payable_id)
        return [r._asdict() for r in rows]
