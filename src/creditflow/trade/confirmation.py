"""Confirmation (确权) with maker-checker, and the core enterprise's credit line.

A payable becomes eligible either from a three-way match of the core enterprise's own purchase order,
goods receipts and invoice (`payable_from_invoice`, status ``matched``) or by hand (status ``draft``).
It is ``confirmed`` only after `approvals_required` (default two) *different* users of the debtor have
approved it; only a confirmed payable can back an issue. The payable's digest, which the issue carries
onto the log, commits to the digests of the trade documents behind it (never the documents).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from creditflow.config import Settings
from creditflow.identity import reads as identity
from creditflow.identity.reads import UserRole
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

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class ConfirmationService:
    def __init__(
        self, engine: Engine, payables: PayablesService, trade: TradeService, settings: Settings, clock: Clock
    ):
        self.engine = engine
        self.payables = payables
        self.trade = trade
        self.settings = settings
        self.clock = clock

    # --- users -----------------------------------------------------------------------------------

    def add_user(
        self,
        org_id: str,
        user_id: str,
        name: str,
        roles: Iterable[UserRole] = (UserRole.MAKER, UserRole.APPROVER),
    ) -> None:
        if not _USER_RE.fullmatch(user_id):
            raise InvalidInput("user_id: 1-64 letters, digits and _ . @ -", field="user_id")
        with self.engine.begin() as conn:
            if not ledger.parties(conn, [org_id]):
                raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field="org_id")
            if identity.user_exists(conn, user_id):
                raise Conflict(f"user {user_id!r} exists", code="user_exists", field="user_id")
            identity.add_user(
                conn,
                user_id=user_id,
                org_id=org_id,
                name=name[:200],
                created_ts_ms=self.clock.now_ms(),
                roles=roles,
            )

    def user_org(self, user_id: str) -> str:
        with self.engine.connect().execution_options(read_only=True) as conn:
            org = identity.user_org(conn, user_id)
        if org is None:
            raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
        return str(org)

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

    def approve(self, payable_id: str, user_id: str) -> dict[str, Any]:
        """One user of the debtor approves; the second *different* user's approval confirms."""
        payable = self.payables.get_payable(payable_id)
        org = self.user_org(user_id)
        if org != payable.debtor:
            raise Forbidden("only users of the debtor confirm its payables", code="not_debtor_user", field="user_id")
        with self.engine.begin() as conn:
            status = store.payable_status(conn, payable_id)
            if status == "confirmed":
                raise Conflict("the payable is already confirmed", code="already_confirmed", field="payable_id")
            seen = store.approvers(conn, payable_id)
            if user_id in seen:
                raise Conflict(
                    "this user has already approved; a different user must confirm (maker-checker)",
                    code="same_approver",
                    field="user_id",
                )
            store.add_approval(conn, payable_id, user_id, self.clock.now_ms())
            approvals = len(seen) + 1
            confirmed = approvals >= self.settings.approvals_required
            if confirmed:
                store.set_payable_status(conn, payable_id, "confirmed")
        return {
            "payable_id": payable_id,
            "approvals": approvals,
            "required": self.settings.approvals_required,
            "status": "confirmed" if confirmed else status,
        }
