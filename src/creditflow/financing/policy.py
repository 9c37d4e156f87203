"""Discounting (贴现) arithmetic and the bank's automatic financing policy. Pure: no I/O, no clock.

One rounding rule, used everywhere: amounts are computed exactly with `Decimal` and rounded ONCE, at the
end, half-up to the fen. Interest is ACT/360, the Chinese discounting convention:

    interest = face × annual_rate × days / 360,   days = maturity date − financing date (calendar days)
    fees     = face × fee_rate + fixed fee
    disbursement = face − interest − fees

so ``interest + fees + disbursement == face`` always (tested as a property).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

BPS = Decimal(10_000)
DAY_BASIS = Decimal(360)
TENOR_BUCKETS_DAYS = (30, 90, 180, 365)
RATINGS = ("AAA", "AA+", "AA", "AA-", "A+", "A", "A-", "BBB")


def round_fen(value: Decimal) -> int:
    """The one rounding rule: half-up to the whole fen."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tenor_bucket(days: int) -> int | None:
    """The smallest bucket (in days) that holds ``days``; None beyond the longest."""
    for bucket in TENOR_BUCKETS_DAYS:
        if days <= bucket:
            return bucket
    return None


@dataclass(frozen=True, slots=True)
class Quote:
    face_minor: int
    annual_rate_bps: int
    days: int
    interest_minor: int
    fees_minor: int
    disbursement_minor: int

    def to_json(self) -> dict[str, int]:
        return {
            "face_minor": self.face_minor,
            "annual_rate_bps": self.annual_rate_bps,
            "days": self.days,
            "interest_minor": self.interest_minor,
            "fees_minor": self.fees_minor,
            "disbursement_minor": self.disbursement_minor,
        }


def quote(face_minor: int, annual_rate_bps: int, days: int, fee_bps: int = 0, fee_fixed_minor: int = 0) -> Quote:
    if face_minor <= 0 or days < 0 or annual_rate_bps < 0 or fee_bps < 0 or fee_fixed_minor < 0:
        raise ValueError("face must be positive; rate, days and fees not negative")
    face = Decimal(face_minor)
    interest = round_fen(face * annual_rate_bps / BPS * days / DAY_BASIS)
    fees = round_fen(face * fee_bps / BPS) + fee_fixed_minor
    return Quote(face_minor, annual_rate_bps, days, interest, fees, face_minor - interest - fees)


def penalty_minor(amount_minor: int, annual_rate_bps: int, days_overdue: int) -> int:
    """Penalty interest on an overdue amount, ACT/360, same rounding rule."""
    if days_overdue <= 0:
        return 0
    return round_fen(Decimal(amount_minor) * annual_rate_bps / BPS * days_overdue / DAY_BASIS)


@dataclass(frozen=True, slots=True)
class Product:
    """A bank's certificate-discounting product."""

    id: str
    bank: str
    name: str
    rates_bps: Mapping[str, Mapping[int, int]]  # core-enterprise rating -> tenor bucket (days) -> annual rate
    fee_bps: int
    fee_fixed_minor: int
    min_minor: int
    max_minor: int
    with_recourse: bool

    def rate_for(self, rating: str, days: int) -> int | None:
        bucket = tenor_bucket(days)
        if bucket is None:
            return None
        return self.rates_bps.get(rating, {}).get(bucket)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bank": self.bank,
            "name": self.name,
            "rates_bps": {r: {str(k): v for k, v in b.items()} for r, b in self.rates_bps.items()},
            "fee_bps": self.fee_bps,
            "fee_fixed_minor": self.fee_fixed_minor,
            "min_minor": self.min_minor,
            "max_minor": self.max_minor,
            "with_recourse": self.with_recourse,
        }


@dataclass(frozen=True, slots=True)
class CreditView:
    """What the data-credit model says about the holder (filled by the scoring capability)."""

    approve: bool
    score: float | None = None
    pd: float | None = None
    reasons: tuple[str, ...] = ()
    # Expected loss of the holder, per year, in bps: added to the product's rate when the bank has
    # recourse to the holder (with recourse, a riskier seller is a riskier deal).
    risk_spread_bps: int = 0


@dataclass(frozen=True, slots=True)
class FinancingFacts:
    """Everything the policy needs, gathered by the service at request time."""

    piece_problem: str | None  # None if the piece is held, accepted, unfrozen and unmatured
    amount_minor: int
    piece_amount_minor: int
    days_to_maturity: int
    core_rating: str | None
    missing_evidence: Sequence[str]  # e.g. "payable not confirmed", "transfer at entry 12 cites no invoice"
    bank_limit_free_minor: int
    holder_blacklisted: bool
    credit: CreditView | None = None
    holder_restricted: str | None = None  # e.g. an open margin call


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    reasons: tuple[Reason, ...] = ()
    quote: Quote | None = None
    rate_bps: int | None = None
    checks: tuple[str, ...] = field(default_factory=tuple)


def decide(facts: FinancingFacts, product: Product) -> Decision:
    """The bank's automatic policy. Every failing rule is reported (not just the first), so a declined
    holder learns everything that stands in the way at once."""
    reasons: list[Reason] = []
    if facts.piece_problem:
        reasons.append(Reason("piece_not_financeable", facts.piece_problem))
    if facts.amount_minor <= 0 or facts.amount_minor > facts.piece_amount_minor:
        reasons.append(Reason("invalid_amount", "the amount must be more than 0 and at most the piece's amount"))
    if facts.amount_minor < product.min_minor:
        reasons.append(Reason("amount_below_minimum", f"the product finances at least {product.min_minor} fen"))
    if facts.amount_minor > product.max_minor:
        reasons.append(Reason("amount_above_maximum", f"the product finances at most {product.max_minor} fen"))
    for missing in facts.missing_evidence:
        reasons.append(Reason("trade_evidence_incomplete", missing))
    if facts.bank_limit_free_minor < facts.amount_minor:
        reasons.append(
            Reason(
                "bank_limit_exceeded",
                f"the bank's limit for this core enterprise has {max(facts.bank_limit_free_minor, 0)} fen free",
            )
        )
    if facts.holder_blacklisted:
        reasons.append(Reason("holder_blacklisted", "the bank does not finance this holder"))
    if facts.holder_restricted:
        reasons.append(Reason("holder_restricted", facts.holder_restricted))
    rate = None
    if facts.core_rating is None:
        reasons.append(Reason("rating_not_covered", "the core enterprise has no rating"))
    else:
        rate = product.rate_for(facts.core_rating, facts.days_to_maturity)
        if rate is not None and product.with_recourse and facts.credit is not None and facts.credit.approve:
            rate += max(0, facts.credit.risk_spread_bps)
        if rate is None:
            reasons.append(
                Reason(
                    "rate_not_covered",
                    f"the product has no rate for rating {facts.core_rating} and {facts.days_to_maturity} days",
                )
            )
    if facts.credit is not None and not facts.credit.approve:
        detail = "; ".join(facts.credit.reasons) or "the credit model declined"
        reasons.append(Reason("credit_score_declined", detail))
    result_quote = None
    if rate is not None and facts.amount_minor > 0 and facts.days_to_maturity >= 0:
        result_quote = quote(facts.amount_minor, rate, facts.days_to_maturity, product.fee_bps, product.fee_fixed_minor)
        if result_quote.disbursement_minor <= 0:
            reasons.append(Reason("disbursement_not_positive", "interest and fees would consume the whole amount"))
    return Decision(approved=not reasons, reasons=tuple(reasons), quote=result_quote, rate_bps=rate)
