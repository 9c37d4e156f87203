"""Valuation and LTV arithmetic: integers only, rounding always in the bank's favour, bands monotone."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from creditflow.collateral.model import (
    BAND_ORDER,
    LtvBand,
    LtvBands,
    band_for,
    crop_value_minor,
    goods_value_minor,
    ltv_bps,
)

quantity = st.integers(min_value=0, max_value=10**12)
price = st.integers(min_value=0, max_value=10**6)
haircut = st.integers(min_value=0, max_value=9_999)
money = st.integers(min_value=0, max_value=10**15)
BANDS = LtvBands(6_000, 7_000, 8_000)


@given(quantity, price, haircut)
def test_value_is_the_exact_value_floored(q: int, p: int, h: int) -> None:
    exact = Fraction(q, 1000) * p * Fraction(10_000 - h, 10_000)
    value = goods_value_minor(q, p, h)
    assert isinstance(value, int) and value <= exact < value + 1


@given(quantity, quantity, price, haircut)
def test_value_is_monotone_in_quantity(a: int, b: int, p: int, h: int) -> None:
    lo, hi = sorted((a, b))
    assert goods_value_minor(lo, p, h) <= goods_value_minor(hi, p, h)


@given(quantity, price, haircut, st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=100))
def test_crop_value_scales_with_health(q: int, p: int, h: int, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert crop_value_minor(q, p, lo, h) <= crop_value_minor(q, p, hi, h)
    assert crop_value_minor(q, p, 100, h) == goods_value_minor(q, p, h)


@given(money, money)
def test_ltv_is_the_exact_ratio_rounded_up(outstanding: int, value: int) -> None:
    ltv = ltv_bps(outstanding, value)
    if value == 0:
        assert ltv == (None if outstanding else 0)
        return
    assert ltv is not None
    exact = Fraction(outstanding * 10_000, value)
    assert ltv - 1 < exact <= ltv


@given(st.integers(min_value=0, max_value=20_000), st.sampled_from(BAND_ORDER), st.integers(min_value=0, max_value=500))
def test_band_never_below_raw_band_and_up_is_immediate(ltv: int, current: LtvBand, hysteresis: int) -> None:
    raw = band_for(ltv, BANDS)
    band = band_for(ltv, BANDS, current, hysteresis)
    assert BAND_ORDER.index(band) >= BAND_ORDER.index(raw)
    assert BAND_ORDER.index(band) <= max(BAND_ORDER.index(raw), BAND_ORDER.index(current))
    if hysteresis == 0:
        assert band == raw


def test_band_edges() -> None:
    assert band_for(5_999, BANDS) is LtvBand.NORMAL
    assert band_for(6_000, BANDS) is LtvBand.WARNING
    assert band_for(7_000, BANDS) is LtvBand.MARGIN_CALL
    assert band_for(8_000, BANDS) is LtvBand.LIQUIDATION
    assert band_for(None, BANDS) is LtvBand.LIQUIDATION
    assert band_for(6_950, BANDS, LtvBand.MARGIN_CALL, 100) is LtvBand.MARGIN_CALL  # within hysteresis: stays
    assert band_for(6_899, BANDS, LtvBand.MARGIN_CALL, 100) is LtvBand.WARNING  # cured
