"""Decision engine, PSI, sentiment, source schemas and the point-in-time rule, on the pure modules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pytest

from creditflow.credit.decisions import APPROVE, DECLINE, REFER, Policy, decide, limit_minor, load_policy, rate_bps
from creditflow.credit.features import FEATURES, SPECS, compute_features
from creditflow.credit.monitoring import psi, reference_bins, shares
from creditflow.credit.sentiment import score_text
from creditflow.credit.sources import FirmProfile, Observation, parse_file

AS_OF = dt.date(2025, 6, 10)
FIRM = FirmProfile("shop-1", "Shop", dt.date(2020, 1, 1), "apparel")


def _obs(metric: str, source: str, period: dt.date, value: float, available: dt.date | None = None) -> Observation:
    return Observation("shop-1", source, metric, period, available or period + dt.timedelta(days=40), value)


def _fv(**overrides: float) -> object:
    fv = compute_features(FIRM, [], AS_OF)
    values = dict(fv.values)
    values.update(overrides)
    return dataclasses.replace(fv, values=values, verified_revenue_12m_minor=100_000_000)


def _contrib(**c: float) -> dict[str, float]:
    return {name: c.get(name, 0.0) for name in FEATURES}


POLICY = load_policy()


def test_knockouts_fire_in_policy_order_and_skip_the_model() -> None:
    fv = dataclasses.replace(_fv(business_age_months=3, platform_overdue_12m=4, months_of_data=20), blacklisted=True)  # type: ignore[type-var]
    d = decide(fv, None, None, POLICY, 1_000_000)  # type: ignore[arg-type]
    assert d.outcome == DECLINE
    assert d.knockouts == ("blacklisted", "platform_overdue", "business_too_young")
    assert "4 overdue items" in d.reasons[1].message and d.pd is None


def test_pd_bands_approve_refer_decline() -> None:
    band = POLICY.products["pure_credit"]
    fv = _fv(business_age_months=40, months_of_data=20)
    c = _contrib(on_time_rate_3m=-0.4, return_rate_3m=0.3)
    assert decide(fv, band["approve_below_pd"] / 2, c, POLICY, 1_000_000).outcome == APPROVE  # type: ignore[arg-type]
    mid = (band["approve_below_pd"] + band["decline_from_pd"]) / 2
    assert decide(fv, mid, c, POLICY, 1_000_000).outcome == REFER  # type: ignore[arg-type]
    assert decide(fv, band["decline_from_pd"], c, POLICY, 1_000_000).outcome == DECLINE  # type: ignore[arg-type]


def test_reasons_come_from_the_contributions_in_plain_language() -> None:
    fv = _fv(business_age_months=40, months_of_data=20, on_time_rate_3m=0.71, return_rate_3m=0.15, rating_3m=4.8)
    c = _contrib(on_time_rate_3m=0.9, return_rate_3m=0.5, rating_3m=-0.3)
    declined = decide(fv, 0.5, c, POLICY, 1_000_000)  # type: ignore[arg-type]
    assert [r.code for r in declined.reasons] == ["pd_too_high", "on_time_rate_3m", "return_rate_3m"]
    assert declined.reasons[1].message == "shipments often arrive late (on time 71 %)"
    approved = decide(fv, 0.01, c, POLICY, 1_000_000)  # type: ignore[arg-type]
    assert [r.code for r in approved.reasons] == ["rating_3m"]
    assert "high" in approved.reasons[0].message and approved.rate_bps is not None


def test_limit_is_capped_and_granted_within_it() -> None:
    assert limit_minor(10**12, 0.01, POLICY) == int(POLICY.limit["cap_minor"])
    lim = limit_minor(100_000_000, 0.05, POLICY)  # 25 % x (1 - 4 x 0.05) = 20 % of 1,000,000 yuan
    assert lim == 20_000_000
    fv = _fv(business_age_months=40, months_of_data=20)
    d = decide(fv, 0.05, _contrib(), POLICY, 50_000_000)  # type: ignore[arg-type]
    assert (d.limit_minor, d.granted_minor) == (20_000_000, 20_000_000)


def test_rate_rises_with_pd_within_bounds() -> None:
    rates = [rate_bps(p, POLICY) for p in (0.0, 0.02, 0.05, 0.2, 0.9)]
    assert rates == sorted(rates) and rates[0] >= POLICY.rate["min_bps"] and rates[-1] == POLICY.rate["max_bps"]


def test_policy_is_validated() -> None:
    doc = json.loads(load_policy_text())
    doc["products"]["pure_credit"]["approve_below_pd"] = 0.5
    with pytest.raises(ValueError, match="approve_below_pd"):
        Policy.from_json(json.dumps(doc))


def load_policy_text() -> str:
    from importlib import resources

    return resources.files("creditflow.credit").joinpath("policy", "credit_policy.json").read_text(encoding="utf-8")


def test_psi_zero_on_same_population_and_alarms_on_a_shift() -> None:
    rng = np.random.default_rng(1)
    ref = reference_bins(rng.normal(0, 1, 5000))
    same = psi(ref["expected"], shares(rng.normal(0, 1, 5000), ref["edges"]))
    shifted = psi(ref["expected"], shares(rng.normal(1, 1, 5000), ref["edges"]))
    assert same < 0.02
    assert shifted > 0.25
    missing = psi(ref["expected"], shares(np.full(100, np.nan), ref["edges"]))
    assert missing > 0.25


def test_sentiment_lexicon_both_languages_and_negation() -> None:
    assert score_text("Supplier files lawsuit over unpaid invoices").score < 0
    assert score_text("wins award and expands").score > 0
    assert score_text("被供应商起诉拖欠货款").score < 0
    assert score_text("没有违约记录，订单增长").score > 0
    assert score_text("the weather today").score == 0


def test_source_import_reports_every_bad_row_and_keeps_nothing() -> None:
    data = (
        b"org_id,period,sales_minor,orders,rating,return_rate\n"
        b"shop-1,2025-01,1000000,50,4.5,0.02\n"
        b"shop 2,2025-13,12.5,-1,7,0.02\n"
        b"shop-1,2025-01,1000000,50,4.5,0.02\n"
    )
    result = parse_file("store", data, "store.csv", max_bytes=10_000, max_rows=10)
    fields = {(e.row, e.field) for e in result.errors}
    assert {(2, "org_id"), (2, "period"), (2, "sales_minor"), (2, "orders"), (2, "rating")} <= fields
    assert any(e.row == 3 and "twice" in e.message for e in result.errors)
    assert result.observations == []


def test_point_in_time_ignores_data_not_yet_available() -> None:
    base = [_obs("sales_minor", "store", dt.date(2025, m, 1), 1e6) for m in range(1, 6)]
    before = compute_features(FIRM, base, AS_OF)
    late = [*base, _obs("sales_minor", "store", dt.date(2025, 5, 1), 9e9, available=AS_OF)]
    future = [*late, _obs("overdue_count", "platform", dt.date(2025, 7, 1), 5, available=dt.date(2025, 8, 1))]
    after = compute_features(FIRM, future, AS_OF)
    assert before.digest() == after.digest()


def test_catalogue_has_a_reason_for_every_feature() -> None:
    for name in FEATURES:
        spec = SPECS[name]
        assert spec.risk_up and spec.risk_down and spec.direction in (-1, 0, 1)
    assert math.isnan(compute_features(None, [], AS_OF).values["sales_yoy_3m"])


def test_features_do_not_depend_on_the_order_of_the_rows() -> None:
    """A database returns a firm's rows in no promised order; sums are exactly rounded (fsum), so the
    features (and their hash) are the same whatever the order."""
    import random

    from creditflow.credit.features import compute_features_from_rows
    from creditflow.credit.simulate import simulate

    world = simulate(300, 4)
    rng = random.Random(1)
    several = 0
    for i in range(world.n):
        obs = world.observations(i)
        rows = [(o.source, o.metric, o.period, o.available_on, o.value) for o in obs]
        expected = compute_features(world.firms[i], obs, world.as_of(i)).digest()
        several += sum(o.source == "sentiment" for o in obs) > 2
        for _ in range(3):
            rng.shuffle(rows)
            assert compute_features_from_rows(world.firms[i], rows, world.as_of(i)).digest() == expected
    assert several > 50  # firms whose sentiment items are several per window: order could have mattered
