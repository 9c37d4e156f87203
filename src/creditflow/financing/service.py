"""Certificate financing (融资/贴现): a holder asks a bank; the bank's automatic policy answers in milliseconds.

`request` gathers the facts (piece, certificate, trade evidence, limits, blacklist, rating, credit
hook), lets the pure policy in `creditflow.financing.policy` decide, and for an approval appends ONE
ledger operation signed by both the holder and the bank: the piece (or the financed part of it, the rest
coming back as change) passes to the bank. In that same transaction the bank's limit is drawn and the
request and the agreement are stored, so an agreement exists exactly when the ledger says the bank
holds the piece. A decline is recorded with its reasons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

from creditflow.config import Settings
from creditflow.financing import store
from creditflow.financing.policy import (
    RATINGS,
    TENOR_BUCKETS_DAYS,
    CreditView,
    Decision,
    FinancingFacts,
    Product,
    Reason,
    decide,
)
from creditflow.kernel.clock import Clock
from creditflow.kernel.encoding import encode
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger import reads as ledger_reads
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.certificates import CHINA_TZ, Certificate, Effects, Piece, PieceState, derive_id
from creditflow.ledger.model.parties import Role
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.queries import Page, Queries, decode_cursor, page_from
from creditflow.ledger.service import LedgerService, new_op_id
from creditflow.trade import reads as trade_reads

CreditHook = Callable[[str, int], CreditView | None]
"""(holder org id, amount in fen) -> the data-credit model's view, or None when it has nothing to say."""
RestrictionHook = Callable[[str], str | None]
"""holder org id -> why new financing is stopped (e.g. an open margin call), or None."""


class _Assessment(NamedTuple):
    """A financing request judged: the product, the moment, the amount, the piece and its certificate,
    and the policy's decision."""

    product: Product
    now_ms: int
    today: dt.date
    amount_minor: int
    piece: Piece
    cert: Certificate
    decision: Decision


@dataclass(frozen=True, slots=True)
class FinancingOutcome:
    request_id: str
    approved: bool
    reasons: tuple[Reason, ...]
    decision: Decision
    decision_ms: float
    agreement: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "approved": self.approved,
            "reasons": [r.to_json() for r in self.reasons],
            "quote": self.decision.quote.to_json() if self.decision.quote else None,
            "decision_ms": round(self.decision_ms, 3),
            "agreement": self.agreement,
            "receipt": self.receipt,
        }


def agreement_digest(terms: dict[str, Any]) -> str:
    return hashlib.sha256(b"creditflow/financing/v1\x00" + encode(terms)).hexdigest()


class FinancingService:
    def __init__(
        self,
        engine: Engine,
        ledger: LedgerService,
        queries: Queries,
        settings: Settings,
        clock: Clock,
        credit_hook: CreditHook | None = None,
        restriction_hook: RestrictionHook | None = None,
    ):
        self.engine = engine
        self.ledger = ledger
        self.queries = queries
        self.settings = settings
        self.clock = clock
        self.credit_hook = credit_hook
        self.restriction_hook = restriction_hook

    # --- set-up by banks and the operator ----------------------------------------------------------

    def create_product(
        self,
        bank: str,
        name: str,
        rates_bps: dict[str, dict[int, int]],
        *,
        fee_bps: int = 0,
        fee_fixed_minor: int = 0,
        min_minor: int = 1,
        max_minor: int = 10**15,
        with_recourse: bool = True,
        product_id: str | None = None,
    ) -> Product:
        party = self.queries.party(bank)
        if party.role != Role.BANK:
            raise Forbidden("only a bank offers financing products", code="role_not_allowed", field="bank")
        for rating, buckets in rates_bps.items():
            if rating not in RATINGS:
                raise InvalidInput(f"rating {rating!r} is not one of {RATINGS}", field="rates_bps")
            for bucket, bps in buckets.items():
                if bucket not in TENOR_BUCKETS_DAYS:
                    raise InvalidInput(f"tenor bucket {bucket} is not one of {TENOR_BUCKETS_DAYS}", field="rates_bps")
                if not 0 <= bps <= 5000:
                    raise InvalidInput("annual rates are 0-5000 bps", field="rates_bps")
        if not (0 <= fee_bps <= 1000 and fee_fixed_minor >= 0 and 0 < min_minor <= max_minor):
            raise InvalidInput("fees must be 0-1000 bps and 0 < min <= max", field="fee_bps")
        product = Product(
            id=product_id or f"prd-{uuid.uuid4().hex[:12]}",
            bank=bank,
            name=name,
            rates_bps=rates_bps,
            fee_bps=fee_bps,
            fee_fixed_minor=fee_fixed_minor,
            min_minor=min_minor,
            max_minor=max_minor,
            with_recourse=with_recourse,
        )
        with self.engine.begin() as conn:
            store.insert_product(conn, product, self.clock.now_ms())
        return product

    def product(self, product_id: str) -> Product:
        with self.engine.connect().execution_options(read_only=True) as conn:
            found = store.product(conn, product_id)
        if found is None:
            raise NotFound(f"product {product_id!r} does not exist", code="product_not_found", field="product_id")
        return found

    def products(self, bank: str | None = None) -> list[Product]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            return store.products(conn, bank)

    def set_limit(self, bank: str, core: str, limit_minor: int) -> None:
        """A bank's exposure limit to one core enterprise (what it may hold of that issuer's certificates)."""
        if limit_minor < 0:
            raise InvalidInput("limit must not be negative", field="limit_minor")
        with self.engine.begin() as conn:
            current = store.limit_of(conn, bank, core)
            if current is None:
                store.insert_limit(conn, bank, core, limit_minor)
            elif (used := current[1]) > limit_minor:
                raise Conflict(f"{used} fen is already used", code="limit_below_use", field="limit_minor")
            else:
                store.update_limit(conn, bank, core, limit_minor)

    def set_rating(self, core: str, rating: str) -> None:
        if rating not in RATINGS:
            raise InvalidInput(f"rating must be one of {RATINGS}", field="rating")
        if self.queries.party(core).role != Role.CORE_ENTERPRISE:
            raise InvalidInput("ratings are for core enterprises", field="core")
        with self.engine.begin() as conn:
            store.replace_rating(conn, core, rating, self.clock.now_ms())

    def blacklist(self, bank: str, org_id: str, reason: str) -> None:
        with self.engine.begin() as conn:
            store.replace_blacklist_entry(conn, bank, org_id, reason[:200])

    # --- the request ---------------------------------------------------------------------------------

    def _facts(
        self, conn: Connection, holder: str, piece_id: str, bank: str, amount: int, today: dt.date
    ) -> tuple[FinancingFacts, Any, Any]:
        piece = ledger_reads.pieces(conn, [piece_id])
        if not piece:
            raise NotFound(f"piece {piece_id!r} does not exist", code="piece_not_found", field="piece_id")
        p = piece[0]
        if p.holder != holder:
            raise Forbidden("only the holder of a piece may ask to finance it", code="not_holder", field="piece_id")
        cert = ledger_reads.certificates(conn, [p.certificate_id])[0]
        problem = None
        if p.state != PieceState.ACTIVE:
            problem = f"the piece is {p.state.value}; only an accepted piece can be financed"
        elif p.frozen:
            problem = "the piece is frozen"
        elif today >= cert.maturity_date:
            problem = f"the certificate matured on {cert.maturity_date}"
        missing: list[str] = []
        if self.settings.enforce_trade_rules:
            status = trade_reads.payable_status(conn, cert.payable_id)
            if status != "confirmed":
                missing.append(f"payable {cert.payable_id} behind the certificate is not confirmed")
            chain = self.queries.provenance(p.id)
            received = [c for c, parent in pairwise(chain) if c.holder != parent.holder and c.sender == parent.holder]
            if received:
                cited = trade_reads.pieces_citing_trade(conn, [c.id for c in received])
                for c in received:
                    if c.id not in cited:
                        missing.append(f"the transfer to {c.holder} at log entry {c.created_seq} cites no invoice")
        limit = store.limit_of(conn, bank, cert.issuer)
        rating = store.rating_of(conn, cert.issuer)
        blacklisted = store.is_blacklisted(conn, bank, holder)
        facts = FinancingFacts(
            piece_problem=problem,
            amount_minor=amount,
            piece_amount_minor=p.amount_minor,
            days_to_maturity=(cert.maturity_date - today).days,
            core_rating=rating,
            missing_evidence=tuple(missing),
            bank_limit_free_minor=0 if limit is None else limit[0] - limit[1],
            holder_blacklisted=blacklisted,
            credit=self.credit_hook(holder, amount) if self.credit_hook else None,
            holder_restricted=self.restriction_hook(holder) if self.restriction_hook else None,
        )
        return facts, p, cert

    def _assess(self, holder: str, piece_id: str, bank: str, product_id: str, amount_minor: int | None) -> _Assessment:
        """The bank's policy applied to the piece as it stands now (a read; nothing recorded here)."""
        product = self.product(product_id)
        if product.bank != bank:
            raise InvalidInput(f"product {product_id} is not offered by {bank}", field="product_id")
        now = self.clock.now_ms()
        today = dt.datetime.fromtimestamp(now / 1000, CHINA_TZ).date()
        with self.engine.connect().execution_options(read_only=True) as conn:
            facts_amount = amount_minor
            if facts_amount is None:
                found = ledger_reads.pieces(conn, [piece_id])
                facts_amount = found[0].amount_minor if found else 0
            check_amount_minor(facts_amount)
            facts, piece, cert = self._facts(conn, holder, piece_id, bank, facts_amount, today)
        return _Assessment(product, now, today, facts_amount, piece, cert, decide(facts, product))

    def offer(
        self, holder: str, piece_id: str, bank: str, product_id: str, amount_minor: int | None = None
    ) -> Decision:
        """What `request` would answer now (the quote, or every reason to decline), so a holder sees the
        cash before committing. No request, agreement or ledger entry is written; the credit hook's look-up
        is recorded as any credit decision is."""
        return self._assess(holder, piece_id, bank, product_id, amount_minor).decision

    def request(
        self,
        holder: str,
        piece_id: str,
        bank: str,
        product_id: str,
        amount_minor: int | None = None,
        *,
        expect_disbursement_minor: int | None = None,
    ) -> FinancingOutcome:
        """Ask for financing; approved, it is one ledger operation signed by holder and bank. With
        ``expect_disbursement_minor`` (the cash of an `offer` the holder accepted), terms that changed since
        (another day, a new rate) are refused with ``terms_changed`` instead of being signed."""
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        product, now, today, facts_amount, piece, cert, decision = self._assess(
            holder, piece_id, bank, product_id, amount_minor
        )
        if (
            decision.approved
            and expect_disbursement_minor is not None
            and decision.quote is not None
            and decision.quote.disbursement_minor != expect_disbursement_minor
        ):
            raise Conflict(
                "the terms changed since the offer you accepted: see the new offer",
                code="terms_changed",
                field="expect_disbursement_minor",
            )
        if not decision.approved:
            return self._declined(
                request_id, holder, piece_id, bank, product_id, facts_amount, decision, decision.reasons, now, started
            )
        assert decision.quote is not None and decision.rate_bps is not None
        op_id = new_op_id()
        bank_piece_id = derive_id(op_id, "piece/0")
        terms = {
            "v": 1,
            "request_id": request_id,
            "piece_id": piece.id,
            "certificate_id": cert.id,
            "seller": holder,
            "bank": bank,
            "core": cert.issuer,
            "product_id": product.id,
            "financed_on": today.isoformat(),
            "maturity_date": cert.maturity_date.isoformat(),
            "with_recourse": product.with_recourse,
            **decision.quote.to_json(),
        }
        digest = agreement_digest(terms)
        # ONE operation signed by the holder and the bank (`Finance.signers()`): the piece passes to the bank.
        signed = self.ledger.sign(
            ops.Finance(
                op_id=op_id,
                actor=holder,
                piece_id=piece.id,
                bank=bank,
                amount_minor=facts_amount,
                agreement_digest=digest,
            )
        )
        quote = decision.quote
        amount = facts_amount

        def precheck(conn: Connection, _state: MemoryState) -> None:
            if not store.draw_limit(conn, bank, cert.issuer, amount):
                raise Conflict("the bank's limit for this core enterprise is used up", code="bank_limit_exceeded")
            self._store_request(
                conn, request_id, holder, piece_id, bank, product_id, amount, "approved", (), now, started
            )
            store.insert_agreement(
                conn,
                agreement_id=request_id,
                piece_id=piece.id,
                bank_piece_id=bank_piece_id,
                certificate_id=cert.id,
                seller=holder,
                bank=bank,
                core=cert.issuer,
                product_id=product.id,
                face_minor=quote.face_minor,
                rate_bps=quote.annual_rate_bps,
                days=quote.days,
                interest_minor=quote.interest_minor,
                fees_minor=quote.fees_minor,
                disbursement_minor=quote.disbursement_minor,
                with_recourse=product.with_recourse,
                tier=piece.tier,
                financed_on=today,
                financed_ts_ms=now,
                agreement_digest=digest,
            )

        try:
            receipt = self.ledger.sequencer.submit(signed, precheck)
        except DomainError as exc:
            reason = Reason(exc.code, exc.message)
            return self._declined(
                request_id, holder, piece_id, bank, product_id, amount, decision, (reason,), now, started
            )
        return FinancingOutcome(
            request_id=request_id,
            approved=True,
            reasons=(),
            decision=decision,
            decision_ms=(time.perf_counter() - started) * 1000,
            agreement={**terms, "agreement_digest": digest, "bank_piece_id": bank_piece_id},
            receipt=receipt.to_json(),
        )

    def _store_request(
        self,
        conn: Connection,
        request_id: str,
        holder: str,
        piece_id: str,
        bank: str,
        product_id: str,
        amount: int,
        status: str,
        reasons: tuple[Reason, ...],
        now: int,
        started: float,
    ) -> None:
        store.insert_request(
            conn,
            request_id=request_id,
            piece_id=piece_id,
            holder=holder,
            bank=bank,
            product_id=product_id,
            amount_minor=amount,
            status=status,
            reasons=[r.to_json() for r in reasons],
            requested_ts_ms=now,
            decision_us=int((time.perf_counter() - started) * 1_000_000),
        )

    def _declined(
        self,
        request_id: str,
        holder: str,
        piece_id: str,
        bank: str,
        product_id: str,
        amount: int,
        decision: Decision,
        reasons: tuple[Reason, ...],
        now: int,
        started: float,
    ) -> FinancingOutcome:
        with self.engine.begin() as conn:
            self._store_request(
                conn, request_id, holder, piece_id, bank, product_id, amount, "declined", reasons, now, started
            )
        return FinancingOutcome(
            request_id=request_id,
            approved=False,
            reasons=reasons,
            decision=decision,
            decision_ms=(time.perf_counter() - started) * 1000,
        )

    # --- queries ---------------------------------------------------------------------------------------

    def requests(self, org_id: str, *, as_bank: bool) -> list[dict[str, Any]]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            return store.requests(conn, org_id, as_bank=as_bank)

    def agreements(self, *, bank: str | None = None, seller: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect().execution_options(read_only=True) as conn:
            return store.agreements(conn, bank=bank, seller=seller)

    # --- pages for the API (keyset pagination, see `creditflow.ledger.queries`) ----------------------

    def products_page(self, bank: str | None = None, *, cursor: str | None = None, limit: int | None = None) -> Page:
        """Products by id (``bank``: of that bank only)."""
        size = self.queries.page_size(limit)
        after = decode_cursor(cursor, str) if cursor else None
        with self.engine.connect().execution_options(read_only=True) as conn:
            found = store.products(conn, bank, after=after, limit=size + 1)
        return page_from(found, size, lambda p: (p.id,))

    def requests_page(self, org_id: str, *, as_bank: bool, cursor: str | None = None, limit: int | None = None) -> Page:
        """Requests made by a holder (or received by a bank), oldest first."""
        size = self.queries.page_size(limit)
        after = decode_cursor(cursor, int, str) if cursor else None
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.requests_page(conn, org_id, as_bank=as_bank, after=after, limit=size + 1)
        return page_from(rows, size, lambda r: (int(r["requested_ts_ms"]), str(r["id"])))

    def agreements_page(
        self,
        *,
        bank: str | None = None,
        seller: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page:
        """Agreements, oldest first (``bank``/``seller``: of that bank or seller only)."""
        size = self.queries.page_size(limit)
        after = decode_cursor(cursor, int, str) if cursor else None
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.agreements_page(conn, bank=bank, seller=seller, after=after, limit=size + 1)
        return page_from(rows, size, lambda r: (int(r["financed_ts_ms"]), str(r["id"])))


def release_bank_limits(conn: Connection, effects: Effects, before: MemoryState) -> None:
    """Projection: a bank-held piece that is paid at clearing gives its amount back to the bank's limit."""
    for piece in effects.pieces:
        old = before.piece(piece.id)
        if piece.state == PieceState.CLEARED and old is not None and old.state != PieceState.CLEARED:
            cert = before.certificate(piece.certificate_id)
            if cert is None:
                continue
            store.release_limit(conn, piece.holder, cert.issuer, piece.amount_minor)
