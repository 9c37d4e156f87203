"""The feature catalogue and the point-in-time feature pipeline. Pure: no I/O, no clock, no randomness.

`compute_features(firm, observations, as_of)` reads only observations with ``available_on < as_of``
(strictly before the decision day) and whose period started before ``as_of``; anything later is ignored,
so a feature can never see the future (tested as a property). Months are counted back from the decision
month: month 1 is the last calendar month before it. Flow metrics (sales, orders, shipments, utilities,
certificate flows) are summed within a month; levels and rates (rating, return rate, on-time rate,
headcount) are averaged. A value the data cannot support is NaN (missing), never a guess: LightGBM and
the scorecard treat missing as its own case.

Catalogue (``direction``: +1 risk rises with the feature, -1 risk falls, 0 not constrained; ``group``:
``statement`` = what a bank sees in annual statements, ``live`` = the operating data behind this pillar):
see `CATALOGUE` and docs/CREDIT_MODEL.md, which lists the same table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from creditflow.credit.sources import FirmProfile, Observation

NAN = float("nan")
FEATURE_SET_VERSION = "features-2026-11-v1"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    group: str  # statement | live
    direction: int
    description: str
    risk_up: str  # plain-language reason when this feature raises the risk; {v} is the value
    risk_down: str  # ... when it lowers the risk
    fmt: str = "{:.2f}"


def _pct(x: float) -> str:
    return f"{x * 100:+.0f} %"


CATALOGUE: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "business_age_months",
        "statement",
        -1,
        "months since the business was founded",
        "the business is young ({v} months)",
        "the business is established ({v} months)",
        "{:.0f}",
    ),
    FeatureSpec(
        "tax_revenue_log",
        "statement",
        -1,
        "log(1 + revenue in yuan) of the latest annual tax filing",
        "annual revenue in the latest tax filing is small",
        "annual revenue in the latest tax filing is substantial",
    ),
    FeatureSpec(
        "tax_profit_margin",
        "statement",
        -1,
        "profit / revenue of the latest annual tax filing",
        "the latest tax filing shows a thin or negative margin ({v})",
        "the latest tax filing shows a healthy margin ({v})",
        "pct",
    ),
    FeatureSpec(
        "tax_revenue_growth",
        "statement",
        -1,
        "revenue growth between the two latest tax filings",
        "revenue fell between the last two tax filings ({v})",
        "revenue grew between the last two tax filings ({v})",
        "pct",
    ),
    FeatureSpec(
        "sales_yoy_3m",
        "live",
        -1,
        "store sales of the last 3 months against the same months a year before, minus 1",
        "store sales over the last 3 months are down on a year ago ({v})",
        "store sales over the last 3 months are up on a year ago ({v})",
        "pct",
    ),
    FeatureSpec(
        "sales_momentum",
        "live",
        -1,
        "sales_yoy_3m minus the same ratio for months 4-6: is the trend turning?",
        "sales growth has slowed sharply in recent months ({v})",
        "sales growth has picked up in recent months ({v})",
        "pct",
    ),
    FeatureSpec(
        "sales_cv_12m",
        "live",
        0,
        "coefficient of variation of monthly sales over 12 months",
        "monthly sales swing widely ({v})",
        "monthly sales are steady ({v})",
    ),
    FeatureSpec(
        "rating_3m",
        "live",
        -1,
        "average customer rating (1-5) over the last 3 months",
        "customer ratings are low ({v} of 5)",
        "customer ratings are high ({v} of 5)",
    ),
    FeatureSpec(
        "return_rate_3m",
        "live",
        1,
        "share of orders returned over the last 3 months",
        "customers return many orders ({v})",
        "customers return few orders ({v})",
        "pct0",
    ),
    FeatureSpec(
        "on_time_rate_3m",
        "live",
        -1,
        "share of shipments delivered on time over the last 3 months",
        "shipments often arrive late (on time {v})",
        "shipments arrive on time ({v})",
        "pct0",
    ),
    FeatureSpec(
        "shipments_yoy_3m",
        "live",
        -1,
        "shipments of the last 3 months against a year before, minus 1",
        "shipments are down on a year ago ({v})",
        "shipments are up on a year ago ({v})",
        "pct",
    ),
    FeatureSpec(
        "electricity_yoy_3m",
        "live",
        -1,
        "electricity use of the last 3 months against a year before, minus 1",
        "electricity use is down on a year ago ({v}): production may be slowing",
        "electricity use is up on a year ago ({v})",
        "pct",
    ),
    FeatureSpec(
        "headcount_change_6m",
        "live",
        -1,
        "insured headcount now against 6 months before, minus 1",
        "the insured headcount has fallen ({v} in 6 months)",
        "the insured headcount has grown ({v} in 6 months)",
        "pct",
    ),
    FeatureSpec(
        "platform_inflow_6m_log",
        "live",
        -1,
        "log(1 + yuan of certificates received on the platform over 6 months)",
        "few certificates received from buyers on the platform",
        "steady certificate flows from buyers on the platform",
    ),
    FeatureSpec(
        "platform_overdue_12m",
        "live",
        1,
        "overdue items on the platform over the last 12 months",
        "{v} overdue item(s) on the platform in the last 12 months",
        "no overdue items on the platform",
        "{:.0f}",
    ),
    FeatureSpec(
        "sentiment_mean_6m",
        "live",
        -1,
        "mean lexicon sentiment (-1..1) of news and opinion items over 6 months",
        "recent news and opinion about the business is negative ({v})",
        "recent news and opinion about the business is positive ({v})",
    ),
    FeatureSpec(
        "sentiment_negative_6m",
        "live",
        1,
        "number of negative news or opinion items over 6 months",
        "{v} negative news or opinion item(s) in 6 months",
        "no negative news or opinion items",
        "{:.0f}",
    ),
    FeatureSpec(
        "months_of_data",
        "live",
        -1,
        "calendar months with any operating data in the last 24",
        "the operating history on file is short ({v} months)",
        "a long operating history is on file ({v} months)",
        "{:.0f}",
    ),
    FeatureSpec(
        "data_gaps_12m",
        "live",
        0,
        "share of the last 12 months with no store data",
        "store data is missing for {v} of the last 12 months",
        "store data is complete",
        "pct0",
    ),
)
FEATURES: tuple[str, ...] = tuple(f.name for f in CATALOGUE)
STATEMENT_FEATURES: tuple[str, ...] = tuple(f.name for f in CATALOGUE if f.group == "statement")
SPECS = {f.name: f for f in CATALOGUE}
MONOTONE: dict[str, int] = {f.name: f.direction for f in CATALOGUE}


def format_value(spec: FeatureSpec, value: float) -> str:
    if math.isnan(value):
        return "unknown"
    if spec.fmt == "pct":
        return _pct(value)
    if spec.fmt == "pct0":
        return f"{value * 100:.0f} %"
    return spec.fmt.format(value)


@dataclass(frozen=True, slots=True)
class FeatureVector:
    org_id: str
    as_of: dt.date
    values: dict[str, float]
    verified_revenue_12m_minor: int  # store sales + platform orders over 12 months, integer fen
    blacklisted: bool
    court_judgment: bool
    founded_on: dt.date | None

    def row(self, names: Sequence[str] = FEATURES) -> list[float]:
        return [self.values[n] for n in names]

    def snapshot(self) -> dict[str, object]:
        """What a decision stores: every input it used, JSON-safe (NaN as null)."""
        return {
            "feature_set": FEATURE_SET_VERSION,
            "as_of": self.as_of.isoformat(),
            "values": {k: (None if math.isnan(v) else v) for k, v in self.values.items()},
            "verified_revenue_12m_minor": self.verified_revenue_12m_minor,
            "blacklisted": self.blacklisted,
            "court_judgment": self.court_judgment,
        }

    def digest(self) -> str:
        """The feature hash every decision records: SHA-256 of the canonical JSON snapshot."""
        text = json.dumps(self.snapshot(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


FLOW = frozenset(
    {
        "sales_minor",
        "orders",
        "shipments",
        "electricity_kwh",
        "water_t",
        "gas_m3",
        "certificates_received_minor",
        "certificates_count",
        "orders_minor",
        "overdue_count",
    }
)


def _ratio(a: float, b: float) -> float:
    return a / b - 1.0 if b > 0 and not math.isnan(a) and not math.isnan(b) else NAN


ObservationRow = tuple[str, str, dt.date, dt.date, float]
"""An observation reduced to what the features read: ``(source, metric, period, available_on, value)``.
A database row with these five columns in this order serves as one (no object per row is built)."""


def compute_features(
    firm: FirmProfile | None, observations: Iterable[Observation], as_of: dt.date, org_id: str = ""
) -> FeatureVector:
    """The point-in-time features of one business on ``as_of`` (see the module docstring)."""
    return compute_features_from_rows(
        firm, ((o.source, o.metric, o.period, o.available_on, o.value) for o in observations), as_of, org_id
    )


def compute_features_from_rows(
    firm: FirmProfile | None, rows: Iterable[Sequence[Any]], as_of: dt.date, org_id: str = ""
) -> FeatureVector:
    """`compute_features` over `ObservationRow`-shaped rows: the one implementation of the pipeline
    (the same point-in-time rule, whatever the caller's query already filtered)."""
    ref = as_of.year * 12 + as_of.month
    # metric -> months back -> the values of that month
    cells: dict[str, dict[int, list[float]]] = {}
    taxes: dict[int, dict[str, float]] = {}
    sentiment: list[tuple[int, float]] = []
    for source, metric, period, available_on, value in rows:
        if available_on >= as_of or period >= as_of:
            continue
        if source == "tax":
            taxes.setdefault(period.year, {})[metric] = value
            continue
        mb = ref - (period.year * 12 + period.month)
        if source == "sentiment":
            sentiment.append((mb, value))
            continue
        cells.setdefault(metric, {}).setdefault(mb, []).append(value)
    # A month's total (flows) or mean (levels). `math.fsum` is exactly rounded, so the features do not
    # depend on the order the rows come in (a database returns them in no promised order).
    monthly: dict[str, dict[int, float]] = {
        metric: {
            mb: math.fsum(vals) if metric in FLOW else math.fsum(vals) / len(vals) for mb, vals in by_month.items()
        }
        for metric, by_month in cells.items()
    }

    def month_value(metric: str, mb: int) -> float:
        return monthly.get(metric, {}).get(mb, NAN)

    def window(metric: str, start: int, end: int, *, need: int = 1) -> float:
        """Flow: sum scaled to the full window; level: mean. NaN unless ``need`` months are present."""
        vals = [month_value(metric, m) for m in range(start, end + 1)]
        present = [v for v in vals if not math.isnan(v)]
        if len(present) < need:
            return NAN
        mean = sum(present) / len(present)
        return mean * len(vals) if metric in FLOW else mean

    def yoy(metric: str, start: int = 1, end: int = 3) -> float:
        return _ratio(window(metric, start, end, need=2), window(metric, start + 12, end + 12, need=2))

    v: dict[str, float] = {}
    v["business_age_months"] = (
        float(ref - (firm.founded_on.year * 12 + firm.founded_on.month)) if firm is not None else NAN
    )
    years = sorted(taxes)
    if years and "revenue_minor" in taxes[years[-1]]:
        last = taxes[years[-1]]
        rev = last["revenue_minor"]
        v["tax_revenue_log"] = math.log1p(max(rev, 0.0) / 100.0)
        v["tax_profit_margin"] = last["profit_minor"] / rev if rev > 0 and "profit_minor" in last else NAN
        prev = taxes.get(years[-1] - 1, {}).get("revenue_minor", NAN)
        v["tax_revenue_growth"] = _ratio(rev, prev)
    else:
        v["tax_revenue_log"] = v["tax_profit_margin"] = v["tax_revenue_growth"] = NAN
    v["sales_yoy_3m"] = yoy("sales_minor")
    prior = yoy("sales_minor", 4, 6)
    v["sales_momentum"] = v["sales_yoy_3m"] - prior if not math.isnan(prior) else NAN
    sales12 = [month_value("sales_minor", m) for m in range(1, 13)]
    present12 = [s for s in sales12 if not math.isnan(s)]
    if len(present12) >= 3:
        mean = sum(present12) / len(present12)
        var = sum((s - mean) ** 2 for s in present12) / len(present12)
        v["sales_cv_12m"] = math.sqrt(var) / mean if mean > 0 else NAN
    else:
        v["sales_cv_12m"] = NAN
    v["rating_3m"] = window("rating", 1, 3)
    v["return_rate_3m"] = window("return_rate", 1, 3)
    v["on_time_rate_3m"] = window("on_time_rate", 1, 3)
    v["shipments_yoy_3m"] = yoy("shipments")
    v["electricity_yoy_3m"] = yoy("electricity_kwh", 1, 3)
    hc = monthly.get("insured_headcount", {})
    if hc:
        latest = min(hc)
        now = month_value("insured_headcount", latest)
        before = month_value("insured_headcount", latest + 6)
        v["headcount_change_6m"] = _ratio(now, before)
    else:
        v["headcount_change_6m"] = NAN
    inflow = window("certificates_received_minor", 1, 6)
    v["platform_inflow_6m_log"] = math.log1p(inflow / 100.0) if not math.isnan(inflow) else NAN
    overdue = [month_value("overdue_count", m) for m in range(1, 13)]
    v["platform_overdue_12m"] = sum(x for x in overdue if not math.isnan(x))
    recent = [s for mb, s in sentiment if 0 <= mb <= 6]
    v["sentiment_mean_6m"] = math.fsum(recent) / len(recent) if recent else NAN
    v["sentiment_negative_6m"] = float(sum(1 for s in recent if s < 0))
    months_with_data = {mb for by_month in monthly.values() for mb in by_month if 1 <= mb <= 24}
    v["months_of_data"] = float(len(months_with_data))
    store_months = {mb for mb in monthly.get("sales_minor", {}) if 1 <= mb <= 12}
    v["data_gaps_12m"] = 1.0 - len(store_months) / 12.0 if months_with_data else NAN
    revenue = 0
    for metric in ("sales_minor", "orders_minor"):
        for mb, total in monthly.get(metric, {}).items():
            if 1 <= mb <= 12:
                revenue += int(total)
    return FeatureVector(
        org_id=firm.org_id if firm is not None else org_id,
        as_of=as_of,
        values={name: v[name] for name in FEATURES},
        verified_revenue_12m_minor=revenue,
        blacklisted=bool(firm and firm.blacklisted),
        court_judgment=bool(firm and firm.court_judgment),
        founded_on=firm.founded_on if firm is not None else None,
    )


def catalogue_digest(names: Sequence[str] = FEATURES) -> str:
    """Hash of the feature definitions a model was trained on (part of its version)."""
    doc = [[s.name, s.group, s.direction, s.description] for s in CATALOGUE if s.name in names]
    return hashlib.sha256(json.dumps([FEATURE_SET_VERSION, doc]).encode()).hexdigest()
