"""Discounting arithmetic and the bank's automatic policy (`creditflow.financing.policy`).

Every amount is integer fen; the oracle for rounding is integer arithmetic (half-up of an exact
fraction), written independently of the `Decimal` code under test.
"""

from __future__ import annotations

import dataclasses
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditflow.financing.policy import (
    CreditView,
    FinancingFacts,
    Product,
    decide,
    penalty_minor,
    quote,
    tenor_bucket,
)

RATE_DENOMINATOR = 10_000 * 360  # bps x ACT/360


def half_up(numerator: int, denominator: int) -> int:
    """Round a non-negative exact fraction half-up to an integer, with integers only."""
    return (2 * numerator + denominator) // (2 * denominator)


# --- quote: exact examples ----------------------------------------------------------------------


def test_one_million_yuan_at_3_50_percent_for_90_days() -> None:
    q = quote(100_000_000, 350, 90)
    assert (q.interest_minor, q.fees_minor, q.disbursement_minor) == (875_000, 0, 99_125_000)
    assert q.to_json() == {
        "face_minor": 100_000_000,
        "annual_rate_bps": 350,
        "days": 90,
        "interest_minor": 875_000,
        "fees_minor": 0,
        "disbursement_minor": 99_125_000,
    }


def test_act_360_counts_calendar_days_over_360() -> None:
    # 1,000,000.00 at 3.60 % for 365 days: 36,500.00 (not 36,000.00 as 30/360 would say)
    assert quote(100_000_000, 360, 365).interest_minor == 3_650_000
    # 183 days at 4.50 % on 20,000.00: 457.50
    assert quote(2_000_000, 450, 183).interest_minor == 45_750


def test_fees_are_a_rate_plus_a_fixed_amount() -> None:
    q = quote(100_000_000, 350, 90, fee_bps=10, fee_fixed_minor=5_000)
    assert q.fees_minor == 100_000 + 5_000
    assert q.disbursement_minor == 100_000_000 - 875_000 - 105_000


@pytest.mark.parametrize(
    ("face", "interest"),
    [
        (5, 1),  # exactly 0.5 fen -> 1 (half-up, not half-even's 0)
        (15, 2),  # 1.5 -> 2
        (25, 3),  # 2.5 -> 3 (half-even would give 2)
        (1_000_005, 100_001),  # 100,000.5 -> 100,001
        (4, 0),  # 0.4 -> 0
        (6, 1),  # 0.6 -> 1
        (1_000_004, 100_000),  # 100,000.4 -> 100,000
    ],
)
def test_interest_rounds_half_up_at_the_half_fen(face: int, interest: int) -> None:
    # 36.00 % for 100 days is exactly face / 10
    assert quote(face, 3600, 100).interest_minor == interest


@pytest.mark.parametrize(("face", "fees"), [(50, 1), (150, 2), (250, 3), (49, 0), (51, 1)])
def test_fee_rounds_half_up_at_the_half_fen(face: int, fees: int) -> None:
    # 1.00 % of face: face / 100
    assert quote(face, 0, 30, fee_bps=100).fees_minor == fees


def test_zero_days_and_zero_rate_cost_nothing() -> None:
    assert quote(123_456, 350, 0).disbursement_minor == 123_456
    assert quote(123_456, 0, 365).disbursement_minor == 123_456


@pytest.mark.parametrize(
    "args",
    [(0, 350, 90), (-1, 350, 90), (100, -1, 90), (100, 350, -1), (100, 350, 90, -1, 0), (100, 350, 90, 0, -1)],
)
def test_quote_refuses_impossible_inputs(args: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="face must be positive"):
        quote(*args)


# --- quote: properties --------------------------------------------------------------------------

faces = st.integers(min_value=1, max_value=10**17)
rates = st.integers(min_value=0, max_value=5000)
day_counts = st.integers(min_value=0, max_value=365)
fee_rates = st.integers(min_value=0, max_value=1000)
fixed_fees = st.integers(min_value=0, max_value=10**6)


@given(faces, rates, day_counts, fee_rates, fixed_fees)
def test_quote_adds_up_and_matches_the_integer_oracle(face: int, rate: int, days: int, fee: int, fixed: int) -> None:
    q = quote(face, rate, days, fee, fixed)
    assert q.interest_minor + q.fees_minor + q.disbursement_minor == face
    assert q.interest_minor == half_up(face * rate * days, RATE_DENOMINATOR)
    assert q.fees_minor == half_up(face * fee, 10_000) + fixed
    assert (q.face_minor, q.annual_rate_bps, q.days) == (face, rate, days)


@given(faces, rates, day_counts, day_counts)
def test_interest_never_falls_as_days_grow(face: int, rate: int, d1: int, d2: int) -> None:
    short, long = sorted((d1, d2))
    assert quote(face, rate, short).interest_minor <= quote(face, rate, long).interest_minor


@given(faces, rates, rates, day_counts)
def test_interest_never_falls_as_the_rate_grows(face: int, r1: int, r2: int, days: int) -> None:
    low, high = sorted((r1, r2))
    assert quote(face, low, days).interest_minor <= quote(face, high, days).interest_minor


@st.composite
def partitions(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A face value and a random partition of it into 1-12 positive parts."""
    face = draw(st.integers(min_value=1, max_value=10**14))
    n = draw(st.integers(min_value=1, max_value=min(12, face)))
    if n == 1:
        return face, [face]
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=face - 1), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, face]
    return face, [b - a for a, b in pairwise(bounds)]


@given(partitions(), rates, day_counts, fixed_fees)
def test_financing_in_parts_pays_at_most_the_whole_plus_rounding(
    split: tuple[int, list[int]], rate: int, days: int, fixed: int
) -> None:
    face, parts = split
    assert sum(parts) == face
    whole = quote(face, rate, days, 0, fixed)
    pieces = [quote(p, rate, days, 0, fixed) for p in parts]
    assert sum(q.face_minor for q in pieces) == face
    # each part's interest is rounded once; the parts can gain at most (parts - 1) fen together
    assert sum(q.disbursement_minor for q in pieces) <= whole.disbursement_minor + (len(parts) - 1)


@given(partitions(), rates, day_counts, fee_rates)
def test_financing_in_parts_with_a_fee_rate_gains_at_most_a_fen_per_rounding(
    split: tuple[int, list[int]], rate: int, days: int, fee: int
) -> None:
    face, parts = split
    whole = quote(face, rate, days, fee)
    paid = sum(quote(p, rate, days, fee).disbursement_minor for p in parts)
    # two roundings (interest, fee) per part
    assert paid <= whole.disbursement_minor + 2 * (len(parts) - 1)


# --- penalty --------------------------------------------------------------------------------------


def test_penalty_examples() -> None:
    # 1,000,000.00 overdue 10 days at 18.25 % a year: 5,069.444... -> 5,069.44
    assert penalty_minor(100_000_000, 1825, 10) == 506_944
    # 0.5 fen -> 1 fen (half-up)
    assert penalty_minor(5, 3600, 100) == 1
    assert penalty_minor(25, 3600, 100) == 3


@pytest.mark.parametrize("days", [0, -1, -365])
def test_no_penalty_before_a_day_is_overdue(days: int) -> None:
    assert penalty_minor(100_000_000, 1825, days) == 0


@given(faces, rates, st.integers(min_value=1, max_value=3650))
def test_penalty_matches_the_integer_oracle(amount: int, rate: int, days: int) -> None:
    assert penalty_minor(amount, rate, days) == half_up(amount * rate * days, RATE_DENOMINATOR)


# --- tenor buckets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(0, 30), (1, 30), (30, 30), (31, 90), (90, 90), (91, 180), (180, 180), (181, 365), (365, 365), (366, None)],
)
def test_tenor_bucket_edges(days: int, bucket: int | None) -> None:
    assert tenor_bucket(days) == bucket


# --- decide ---------------------------------------------------------------------------------------

PRODUCT = Product(
    id="prd-1",
    bank="bank",
    name="certificate discounting",
    rates_bps={"AAA": {30: 300, 90: 350, 180: 400, 365: 450}, "AA": {365: 600}},
    fee_bps=10,
    fee_fixed_minor=0,
    min_minor=100_000,
    max_minor=500_000_000,
    with_recourse=True,
)
GOOD = FinancingFacts(
    piece_problem=None,
    amount_minor=100_000_000,
    piece_amount_minor=100_000_000,
    days_to_maturity=90,
    core_rating="AAA",
    missing_evidence=(),
    bank_limit_free_minor=1_000_000_000,
    holder_blacklisted=False,
    credit=None,
    holder_restricted=None,
)


def codes(facts: FinancingFacts, product: Product = PRODUCT) -> tuple[str, ...]:
    return tuple(r.code for r in decide(facts, product).reasons)


def test_good_facts_are_approved_with_the_bucket_rate_and_an_exact_quote() -> None:
    decision = decide(GOOD, PRODUCT)
    assert decision.approved
    assert decision.reasons == ()
    assert decision.rate_bps == 350
    assert decision.quote is not None
    assert decision.quote.to_json() == {
        "face_minor": 100_000_000,
        "annual_rate_bps": 350,
        "days": 90,
        "interest_minor": 875_000,
        "fees_minor": 100_000,
        "disbursement_minor": 99_025_000,
    }


def test_an_approving_credit_view_and_exact_fits_still_approve() -> None:
    at_max = dataclasses.replace(
        GOOD,
        credit=CreditView(approve=True, score=712.0, pd=0.01),
        amount_minor=PRODUCT.max_minor,
        piece_amount_minor=PRODUCT.max_minor,
        bank_limit_free_minor=PRODUCT.max_minor,
    )
    assert decide(at_max, PRODUCT).approved
    assert decide(dataclasses.replace(GOOD, amount_minor=PRODUCT.min_minor), PRODUCT).approved


ALONE: list[tuple[str, dict[str, object], Product]] = [
    ("piece_not_financeable", {"piece_problem": "the piece is frozen"}, PRODUCT),
    ("invalid_amount", {"piece_amount_minor": 99_999_999}, PRODUCT),
    ("amount_below_minimum", {"amount_minor": 99_999}, PRODUCT),
    ("amount_above_maximum", {"amount_minor": 500_000_001, "piece_amount_minor": 500_000_001}, PRODUCT),
    ("trade_evidence_incomplete", {"missing_evidence": ("payable pay-1 is not confirmed",)}, PRODUCT),
    ("bank_limit_exceeded", {"bank_limit_free_minor": 99_999_999}, PRODUCT),
    ("holder_blacklisted", {"holder_blacklisted": True}, PRODUCT),
    ("holder_restricted", {"holder_restricted": "open margin call on pledge W-7"}, PRODUCT),
    ("rating_not_covered", {"core_rating": None}, PRODUCT),
    ("rate_not_covered", {"core_rating": "BBB"}, PRODUCT),
    ("rate_not_covered", {"core_rating": "AA", "days_to_maturity": 90}, PRODUCT),
    ("credit_score_declined", {"credit": CreditView(approve=False, pd=0.3, reasons=("pd too high",))}, PRODUCT),
    ("disbursement_not_positive", {}, dataclasses.replace(PRODUCT, fee_fixed_minor=100_000_000)),
]


@pytest.mark.parametrize(("code", "changes", "product"), ALONE, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(ALONE)])
def test_each_reason_alone(code: str, changes: dict[str, object], product: Product) -> None:
    facts = dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]
    decision = decide(facts, product)
    assert not decision.approved
    assert [r.code for r in decision.reasons] == [code]


def test_reason_messages_carry_the_detail() -> None:
    [frozen] = decide(dataclasses.replace(GOOD, piece_problem="the piece is frozen"), PRODUCT).reasons
    assert frozen.message == "the piece is frozen"
    [limit] = decide(dataclasses.replace(GOOD, bank_limit_free_minor=12_345), PRODUCT).reasons
    assert "12345 fen free" in limit.message
    [negative] = decide(dataclasses.replace(GOOD, bank_limit_free_minor=-5), PRODUCT).reasons
    assert "0 fen free" in negative.message
    credit = CreditView(approve=False, reasons=("pd too high", "late utility bills"))
    [declined] = decide(dataclasses.replace(GOOD, credit=credit), PRODUCT).reasons
    assert declined.message == "pd too high; late utility bills"
    [silent] = decide(dataclasses.replace(GOOD, credit=CreditView(approve=False)), PRODUCT).reasons
    assert silent.message == "the credit model declined"
    assert decide(GOOD, PRODUCT).reasons == ()


def test_every_missing_piece_of_evidence_is_its_own_reason() -> None:
    missing = ("payable pay-1 is not confirmed", "the transfer to steel at log entry 12 cites no invoice")
    reasons = decide(dataclasses.replace(GOOD, missing_evidence=missing), PRODUCT).reasons
    assert [(r.code, r.message) for r in reasons] == [("trade_evidence_incomplete", m) for m in missing]


def test_tenor_beyond_the_longest_bucket_is_not_covered() -> None:
    assert codes(dataclasses.replace(GOOD, days_to_maturity=366)) == ("rate_not_covered",)


def test_disbursement_of_exactly_zero_is_declined_and_one_fen_is_approved() -> None:
    # interest 875,000 + rate fee 100,000 on 1,000,000.00: a fixed fee of the rest leaves 0
    rest = 100_000_000 - 875_000 - 100_000
    zero = decide(GOOD, dataclasses.replace(PRODUCT, fee_fixed_minor=rest))
    assert [r.code for r in zero.reasons] == ["disbursement_not_positive"]
    assert zero.quote is not None and zero.quote.disbursement_minor == 0
    one = decide(GOOD, dataclasses.replace(PRODUCT, fee_fixed_minor=rest - 1))
    assert one.approved
    assert one.quote is not None and one.quote.disbursement_minor == 1


def test_a_non_positive_amount_is_invalid_and_gets_no_quote() -> None:
    decision = decide(dataclasses.replace(GOOD, amount_minor=0), PRODUCT)
    assert [r.code for r in decision.reasons] == ["invalid_amount", "amount_below_minimum"]
    assert decision.quote is None


EVERYTHING_WRONG = dataclasses.replace(
    GOOD,
    piece_problem="the piece is spent; only an accepted piece can be financed",
    amount_minor=1_000_000,
    piece_amount_minor=999_999,
    missing_evidence=("payable pay-1 is not confirmed", "the transfer to ore at log entry 9 cites no invoice"),
    bank_limit_free_minor=10,
    holder_blacklisted=True,
    holder_restricted="open margin call",
    credit=CreditView(approve=False, reasons=("pd too high",)),
)
# min above max is not a product a bank can create through the service, but decide() must still say both
CONTRADICTORY = dataclasses.replace(PRODUCT, min_minor=2_000_000, max_minor=500_000)
HEAD = (
    "piece_not_financeable",
    "invalid_amount",
    "amount_below_minimum",
    "amount_above_maximum",
    "trade_evidence_incomplete",
    "trade_evidence_incomplete",
    "bank_limit_exceeded",
    "holder_blacklisted",
    "holder_restricted",
)


@pytest.mark.parametrize(
    ("changes", "product", "tail"),
    [
        ({"core_rating": None}, CONTRADICTORY, ("rating_not_covered", "credit_score_declined")),
        ({"core_rating": "BBB"}, CONTRADICTORY, ("rate_not_covered", "credit_score_declined")),
        (
            {},
            dataclasses.replace(CONTRADICTORY, fee_fixed_minor=1_000_000),
            ("credit_score_declined", "disbursement_not_positive"),
        ),
    ],
    ids=["no-rating", "no-rate", "no-disbursement"],
)
def test_all_reasons_are_reported_together_in_a_fixed_order(
    changes: dict[str, object], product: Product, tail: tuple[str, ...]
) -> None:
    decision = decide(dataclasses.replace(EVERYTHING_WRONG, **changes), product)  # type: ignore[arg-type]
    assert not decision.approved
    assert codes(dataclasses.replace(EVERYTHING_WRONG, **changes), product) == HEAD + tail  # type: ignore[arg-type]


@given(
    st.integers(min_value=1, max_value=10**12),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=365),
    st.sampled_from(["AAA", "AA", "A", None]),
)
def test_decision_is_approved_exactly_when_there_is_no_reason(
    amount: int, free: int, days: int, rating: str | None
) -> None:
    facts = dataclasses.replace(
        GOOD, amount_minor=amount, piece_amount_minor=amount, bank_limit_free_minor=free, days_to_maturity=days
    )
    facts = dataclasses.replace(facts, core_rating=rating)
    decision = decide(facts, PRODUCT)
    assert decision.approved == (decision.reasons == ())
    expected_ok = (
        PRODUCT.min_minor <= amount <= PRODUCT.max_minor
        and free >= amount
        and rating is not None
        and PRODUCT.rate_for(rating, days) is not None
    )
    assert decision.approved == expected_ok
    if decision.approved:
        assert decision.quote is not None
        assert decision.quote.interest_minor + decision.quote.fees_minor + decision.quote.disbursement_minor == amount


def test_a_riskier_holder_pays_a_spread_only_where_the_bank_has_recourse() -> None:
    from creditflow.financing.policy import CreditView, FinancingFacts, Product, decide

    rates = {"AA": {30: 300, 90: 350, 180: 380, 365: 420}}
    facts = FinancingFacts(
        piece_problem=None,
        amount_minor=100_000_000,
        piece_amount_minor=100_000_000,
        days_to_maturity=90,
        core_rating="AA",
        missing_evidence=(),
        bank_limit_free_minor=10**12,
        holder_blacklisted=False,
        credit=CreditView(approve=True, pd=0.04, risk_spread_bps=250),
    )
    recourse = Product("p", "bank", "x", rates, 0, 0, 1, 10**15, with_recourse=True)
    without = Product("p", "bank", "x", rates, 0, 0, 1, 10**15, with_recourse=False)
    assert decide(facts, recourse).rate_bps == 350 + 250
    assert decide(facts, without).rate_bps == 350
