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
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, insert, select, update

from creditflow.config import Settings
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
from creditflow.financing.tables import (
    bank_blacklist,
    bank_limits,
    bank_products,
    core_ratings,
    financing_agreements,
    financing_requests,
)
from creditflow.kernel.clock import Clock
from creditflow.kernel.encoding import encode
from creditflow.kernel.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from creditflow.kernel.money import check_amount_minor
from creditflow.ledger import store
from creditflow.ledger.entries import SignatureBlock, SignedOperation
from creditflow.ledger.model.certificates import CHINA_TZ, Certificate, Effects, Piece, PieceState, derive_id
from creditflow.ledger.model.parties import Role
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.queries import Page, Queries, after_key, decode_cursor, page_from
from creditflow.ledger.service import LedgerService, new_op_id
from creditflow.trade.tables import payables, piece_trade_refs

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
            conn.execute(
                insert(bank_products).values(
                    id=product.id,
                    bank=bank,
                    name=name,
                    rates_json=json.dumps({r: {str(k): v for k, v in b.items()} for r, b in rates_bps.items()}),
                    fee_bps=fee_bps,
                    fee_fixed_minor=fee_fixed_minor,
                    min_minor=min_minor,
                    max_minor=max_minor,
                    with_recourse=with_recourse,
                    created_ts_ms=self.clock.now_ms(),
                )
            )
        return product

    def product(self, product_id: str) -> Product:
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = conn.execute(select(bank_products).where(bank_products.c.id == product_id)).first()
        if row is None:
            raise NotFound(f"product {product_id!r} does not exist", code="product_not_found", field="product_id")
        rates = {r: {int(k): int(v) for k, v in b.items()} for r, b in json.loads(row.rates_json).items()}
        return Product(
            row.id,
            row.bank,
            row.name,
            rates,
            row.fee_bps,
            row.fee_fixed_minor,
            row.min_minor,
            row.max_minor,
            bool(row.with_recourse),
        )

    def products(self, bank: str | None = None) -> list[Product]:
        stmt = select(bank_products.c.id).order_by(bank_products.c.id)
        if bank:
            stmt = stmt.where(bank_products.c.bank == bank)
        with self.engine.connect().execution_options(read_only=True) as conn:
            ids = list(conn.scalars(stmt))
        return [self.product(i) for i in ids]

    def set_limit(self, bank: str, core: str, limit_minor: int) -> None:
        """A bank's exposure limit to one core enterprise (what it may hold of that issuer's certificates)."""
        if limit_minor < 0:
            raise InvalidInput("limit must not be negative", field="limit_minor")
        with self.engine.begin() as conn:
            row = conn.execute(
                select(bank_limits.c.used_minor).where(bank_limits.c.bank == bank, bank_limits.c.core == core)
            ).first()
            if row is None:
                conn.execute(insert(bank_limits).values(bank=bank, core=core, limit_minor=limit_minor, used_minor=0))
            elif row.used_minor > limit_minor:
                raise Conflict(f"{row.used_minor} fen is already used", code="limit_below_use", field="limit_minor")
            else:
                conn.execute(
                    update(bank_limits)
                    .where(bank_limits.c.bank == bank, bank_limits.c.core == core)
                    .values(limit_minor=limit_minor)
                )

    def set_rating(self, core: str, rating: str) -> None:
        if rating not in RATINGS:
            raise InvalidInput(f"rating must be one of {RATINGS}", field="rating")
        if self.queries.party(core).role != Role.CORE_ENTERPRISE:
            raise InvalidInput("ratings are for core enterprises", field="core")
        with self.engine.begin() as conn:
            conn.execute(core_ratings.delete().where(core_ratings.c.org_id == core))
            conn.execute(insert(core_ratings).values(org_id=core, rating=rating, set_ts_ms=self.clock.now_ms()))

    def blacklist(self, bank: str, org_id: str, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                bank_blacklist.delete().where(bank_blacklist.c.bank == bank, bank_blacklist.c.org_id == org_id)
            )
            conn.execute(insert(bank_blacklist).values(bank=bank, org_id=org_id, reason=reason[:200]))

    # --- the request ---------------------------------------------------------------------------------

    def _facts(
        self, conn: Connection, holder: str, piece_id: str, bank: str, amount: int, today: dt.date
    ) -> tuple[FinancingFacts, Any, Any]:
        piece = store.load_pieces(conn, [piece_id])
        if not piece:
            raise NotFound(f"piece {piece_id!r} does not exist", code="piece_not_found", field="piece_id")
        p = piece[0]
        if p.holder != holder:
            raise Forbidden("only the holder of a piece may ask to finance it", code="not_holder", field="piece_id")
        cert = store.load_certificates(conn, [p.certificate_id])[0]
        problem = None
        if p.state != PieceState.ACTIVE:
            problem = f"the piece is {p.state.value}; only an accepted piece can be financed"
        elif p.frozen:
            problem = "the piece is frozen"
        elif today >= cert.maturity_date:
            problem = f"the certificate matured on {cert.maturity_date}"
        missing: list[str] = []
        if self.settings.enforce_trade_rules:
            status = conn.execute(select(payables.c.status).where(payables.c.id == cert.payable_id)).scalar()
            if status != "confirmed":
                missing.append(f"payable {cert.payable_id} behind the certificate is not confirmed")
            chain = self.queries.provenance(p.id)
            received = [c for c, parent in pairwise(chain) if c.holder != parent.holder and c.sender == parent.holder]
            if received:
                cited = set(
                    conn.scalars(
                        select(piece_trade_refs.c.piece_id).where(
                            piece_trade_refs.c.piece_id.in_([c.id for c in received])
                        )
                    )
                )
                for c in received:
                    if c.id not in cited:
                        missing.append(f"the transfer to {c.holder} at log entry {c.created_seq} cites no invoice")
        limit = conn.execute(
            select(bank_limits.c.limit_minor, bank_limits.c.used_minor).where(
                bank_limits.c.bank == bank, bank_limits.c.core == cert.issuer
            )
        ).first()
        rating = conn.execute(select(core_ratings.c.rating).where(core_ratings.c.org_id == cert.issuer)).scalar()
        blacklisted = (
            conn.execute(
                select(bank_blacklist.c.org_id).where(bank_blacklist.c.bank == bank, bank_blacklist.c.org_id == holder)
            ).first()
            is not None
        )
        facts = FinancingFacts(
            piece_problem=problem,
            amount_minor=amount,
            piece_amount_minor=p.amount_minor,
            days_to_maturity=(cert.maturity_date - today).days,
            core_rating=rating,
            missing_evidence=tuple(missing),
            bank_limit_free_minor=0 if limit is None else int(limit.limit_minor - limit.used_minor),
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
                found = store.load_pieces(conn, [piece_id])
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
        payload = {
            "v": 1,
            "type": "finance",
            "op_id": op_id,
            "actor": holder,
            "piece_id": piece.id,
            "bank": bank,
            "amount_minor": facts_amount,
            "agreement_digest": digest,
        }
        signed = self._sign_both(payload, holder, bank)
        quote = decision.quote
        amount = facts_amount

        def precheck(conn: Connection, _state: MemoryState) -> None:
            drawn = conn.execute(
                update(bank_limits)
                .where(
                    bank_limits.c.bank == bank,
                    bank_limits.c.core == cert.issuer,
                    bank_limits.c.used_minor + amount <= bank_limits.c.limit_minor,
                )
                .values(used_minor=bank_limits.c.used_minor + amount)
            )
            if drawn.rowcount != 1:
                raise Conflict("the bank's limit for this core enterprise is used up", code="bank_limit_exceeded")
            conn.execute(
                insert(financing_requests).values(
                    self._request_row(
                        request_id, holder, piece_id, bank, product_id, amount, "approved", (), now, started
                    )
                )
            )
            conn.execute(
                insert(financing_agreements).values(
                    id=request_id,
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

    def _sign_both(self, payload: dict[str, Any], holder: str, bank: str) -> SignedOperation:
        from creditflow.ledger.model import operations as ops
        from creditflow.ledger.signing import op_message

        op = ops.parse(payload)
        canonical = ops.payload(op)
        message = op_message(canonical)
        blocks = []
        for org in (holder, bank):
            signer = self.ledger.custody.signer(org)
            blocks.append(SignatureBlock(org, signer.key_id, signer.sign(message)))
        return SignedOperation(canonical, op, tuple(blocks))

    def _request_row(
        self,
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
    ) -> dict[str, Any]:
        return {
            "id": request_id,
            "piece_id": piece_id,
            "holder": holder,
            "bank": bank,
            "product_id": product_id,
            "amount_minor": amount,
            "status": status,
            "reasons_json": json.dumps([r.to_json() for r in reasons], ensure_ascii=False),
            "requested_ts_ms": now,
            "decision_us": int((time.perf_counter() - started) * 1_000_000),
        }

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
            conn.execute(
                insert(financing_requests).values(
                    self._request_row(
                        request_id, holder, piece_id, bank, product_id, amount, "declined", reasons, now, started
                    )
                )
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
        column = financing_requests.c.bank if as_bank else financing_requests.c.holder
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = conn.execute(
                select(financing_requests).where(column == org_id).order_by(financing_requests.c.requested_ts_ms)
            )
            return [{**r._mapping, "reasons": json.loads(r.reasons_json)} for r in rows]

    def agreements(self, *, bank: str | None = None, seller: str | None = None) -> list[dict[str, Any]]:
        stmt = select(financing_agreements).order_by(financing_agreements.c.financed_ts_ms)
        if bank:
            stmt = stmt.where(financing_agreements.c.bank == bank)
        if seller:
            stmt = stmt.where(financing_agreements.c.seller == seller)
        with self.engine.connect().execution_options(read_only=True) as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    # --- pages for the API (keyset pagination, see `creditflow.ledger.queries`) ----------------------

    def products_page(self, bank: str | None = None, *, cursor: str | None = None, limit: int | None = None) -> Page:
        """Products by id (``bank``: of that bank only)."""
        size = self.queries.page_size(limit)
        stmt = select(bank_products.c.id)
        if bank:
            stmt = stmt.where(bank_products.c.bank == bank)
        if cursor:
            stmt = stmt.where(after_key((bank_products.c.id,), decode_cursor(cursor, str)))
        with self.engine.connect().execution_options(read_only=True) as conn:
            ids = list(conn.scalars(stmt.order_by(bank_products.c.id).limit(size + 1)))
        return page_from([self.product(i) for i in ids], size, lambda p: (p.id,))

    def requests_page(self, org_id: str, *, as_bank: bool, cursor: str | None = None, limit: int | None = None) -> Page:
        """Requests made by a holder (or received by a bank), oldest first."""
        size = self.queries.page_size(limit)
        column = financing_requests.c.bank if as_bank else financing_requests.c.holder
        order = (financing_requests.c.requested_ts_ms, financing_requests.c.id)
        stmt = select(financing_requests).where(column == org_id)
        if cursor:
            stmt = stmt.where(after_key(order, decode_cursor(cursor, int, str)))
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = [
                {**r._mapping, "reasons": json.loads(r.reasons_json)}
                for r in conn.execute(stmt.order_by(*order).limit(size + 1))
            ]
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
        order = (financing_agreements.c.financed_ts_ms, financing_agreements.c.id)
        stmt = select(financing_agreements)
        if bank:
            stmt = stmt.where(financing_agreements.c.bank == bank)
        if seller:
            stmt = stmt.where(financing_agreements.c.seller == seller)
        if cursor:
            stmt = stmt.where(after_key(order, decode_cursor(cursor, int, str)))
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt.order_by(*order).limit(size + 1))]
        return page_from(rows, size, lambda r: (int(r["financed_ts_ms"]), str(r["id"])))


def release_bank_limits(conn: Connection, effects: Effects, before: MemoryState) -> None:
    """Projection: a bank-held piece that is paid at clearing gives its amount back to the bank's limit."""
    for piece in effects.pieces:
        old = before.piece(piece.id)
        if piece.state == PieceState.CLEARED and old is not None and old.state != PieceState.CLEARED:
            cert = before.certificate(piece.certificate_id)
            if cert is None:
                continue
            conn.execute(
                update(bank_limits)
                .where(
                    bank_limits.c.bank == piece.holder,
                    bank_limits.c.core == cert.issuer,
                    bank_limits.c.used_minor >= piece.amount_minor,
                )
                .values(used_minor=bank_limits.c.used_minor - piece.amount_minor)
            )
