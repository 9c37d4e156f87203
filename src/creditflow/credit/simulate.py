"""`creditflow simulate credit`: a synthetic world of small businesses in which one latent business
health drives every observed data stream and the defaults. Deterministic for a given seed.

The generating model (all draws from one `numpy.random.Generator(seed)`; months are indexed from
January 2022; firm i applies for credit on the 10th of month T_i):

    T_i ~ Uniform{30..41}  (July 2024 .. June 2025), outcomes observed over months T_i+1 .. T_i+12
    health   mu_i ~ N(0, 0.8);  h_i,0 = mu_i + N(0, 0.6)
             h_i,t = m_i,t + 0.9 (h_i,t-1 - m_i,t) + 0.25 e_t,  e_t ~ N(0, 1)            (AR(1) around m)
             m_i,t = mu_i, except a DISTRESS shock (prob 0.20): from month s_i ~ U{T_i-8 .. T_i+4} on,
             m_i,t = mu_i - d_i, d_i ~ U(1.0, 2.5); and a RECOVERY (prob 0.08): m = mu_i + U(0.5, 1.5) from s_i
    season   s(m) = 1 + a_i cos(2 pi (m - 11) / 12) - 0.20 [m = February],  a_i ~ U(0, 0.25)   (Double 11 peak,
             Spring Festival dip)
    store    sales = S_i s(m) exp(0.35 h + N(0, 0.12)) fen, S_i ~ LogNormal(ln 3e7, 0.9) (300k yuan a month)
             orders ~ Poisson(sales / ticket_i);  rating = clip(4.3 + 0.25 h + N(0, 0.12), 1, 5)
             return_rate = clip(0.07 - 0.025 h + N(0, 0.01), 0, 1)
    logistics shipments ~ Poisson(0.9 orders); on_time_rate = clip(0.92 + 0.03 h + N(0, 0.015), 0, 1)
    utilities electricity = E_i s(m) exp(0.25 h + N(0, 0.08)) kWh; water, gas alike with 0.1 h and more noise
    social insurance headcount = round(H_i exp(0.12 h) + N(0, 0.7)), H_i ~ 3 + Poisson(12)
    platform  (60 % of firms sell to a core enterprise) certificates = 0.3 sales exp(0.2 h + N(0, 0.2)),
             count ~ 1 + Poisson(2); orders_minor = 0.5 sales; overdue ~ Poisson(sigmoid(-4.5 - 1.5 h))
    tax      for each full calendar year: revenue = 12 x mean monthly sales x exp(N(-0.05, 0.12)),
             profit = revenue x (0.05 + 0.04 mean(h) + N(0, 0.03)); filed, and known, on 31 May next year
    sentiment ~ Poisson(0.25) items a month; positive with probability sigmoid(1.5 h); the text is drawn from
             templates (Chinese or English) that contain lexicon terms, and is scored at import by the lexicon
    default  monthly hazard sigmoid(-5.6 - 1.4 h_t) over T_i+1 .. T_i+12; bad = defaulted in those 12 months
    files    history length: thin file (prob 0.12) 2..8 months, else 14..30 months before T_i; founded 0..60
             months before the history starts; each source is absent for a firm with prob 0.10-0.40 (see
             `PRESENCE`), and each present source-month is missing with prob 0.06
    flags    court_judgment ~ Bernoulli(sigmoid(-5.5 - 1.5 h_T)); blacklisted ~ Bernoulli(0.005)

So live streams move with h month by month while tax filings lag 6-18 months and are noisy: a distress
that starts shortly before the application shows in sales, electricity, headcount and sentiment but not
yet in the statements. That is the claim `benchmarks.credit` measures (statement-only vs live features).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from creditflow.credit.sentiment import score_text
from creditflow.credit.sources import SOURCES, FirmProfile, Observation, default_available_on

START_YEAR, START_MONTH = 2022, 1
N_MONTHS = 54
INDUSTRIES = ("apparel", "electronics", "food", "home goods", "auto parts", "cosmetics")
PRESENCE = {"store": 0.9, "logistics": 0.85, "utilities": 0.8, "social_insurance": 0.85, "platform": 0.6, "tax": 0.9}

POS_EN = (
    "{n} wins a regional quality award",
    "{n} expands its warehouse after record orders",
    "{n} signs a supply contract with a national retailer",
    "customers praise {n} for reliable delivery",
)
NEG_EN = (
    "suppliers complain {n} has unpaid invoices",
    "{n} faces a lawsuit over delayed deliveries",
    "{n} announces layoffs as losses mount",
    "regulator fines {n} after customer complaints",
)
POS_ZH = ("{n}获得年度质量奖，订单增长", "{n}与大型零售商签约合作", "{n}扩产并招聘新员工", "{n}产品好评率稳定")
NEG_ZH = ("{n}被供应商起诉拖欠货款", "{n}因质量问题被处罚并召回产品", "{n}裁员，经营亏损", "消费者投诉{n}，多起维权")


def month_start(k: int) -> dt.date:
    y, m = divmod(START_MONTH - 1 + k, 12)
    return dt.date(START_YEAR + y, m + 1, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


@dataclass
class World:
    seed: int
    n: int
    health: np.ndarray  # (n, N_MONTHS)
    apply_month: np.ndarray
    hist_start: np.ndarray
    founded_month: np.ndarray
    bad: np.ndarray
    requested_minor: np.ndarray
    firms: list[FirmProfile]
    streams: dict[str, np.ndarray]  # metric -> (n, N_MONTHS), NaN where missing
    tax: dict[str, np.ndarray]  # revenue_minor / profit_minor -> (n, years)
    sentiment: list[list[tuple[int, int, str]]]  # per firm: (month, day, text)

    def as_of(self, i: int) -> dt.date:
        return month_start(int(self.apply_month[i])).replace(day=10)

    def observations(self, i: int, until_month: int | None = None) -> list[Observation]:
        """Firm i's observations for months hist_start .. until_month (default: one past its application,
        so the pipeline is always handed some data it must ignore)."""
        org = self.firms[i].org_id
        last = int(self.apply_month[i]) + 1 if until_month is None else until_month
        out: list[Observation] = []
        first = int(self.hist_start[i])
        for metric, arr in self.streams.items():
            source = METRIC_SOURCE[metric]
            row = arr[i]
            for k in range(first, min(last, N_MONTHS - 1) + 1):
                value = row[k]
                if value != value:  # NaN: missing
                    continue
                period = month_start(k)
                out.append(
                    Observation(
                        org,
                        source,
                        metric,
                        period,
                        default_available_on(SOURCES[source], period, "month"),
                        float(value),
                    )
                )
        for y in range(self.tax["revenue_minor"].shape[1]):
            rev = self.tax["revenue_minor"][i, y]
            if rev != rev:
                continue
            period = dt.date(START_YEAR + y, 1, 1)
            avail = default_available_on(SOURCES["tax"], period, "year")
            if (avail.year - START_YEAR) * 12 + avail.month - 1 > last:
                continue
            out.append(Observation(org, "tax", "revenue_minor", period, avail, float(rev)))
            out.append(Observation(org, "tax", "profit_minor", period, avail, float(self.tax["profit_minor"][i, y])))
        for n, (k, day, text) in enumerate(self.sentiment[i]):
            if k > last:
                continue
            published = month_start(k).replace(day=day)
            out.append(
                Observation(
                    org, "sentiment", "sentiment", published, published, score_text(text).score, f"sim-{n}", text
                )
            )
        return out


METRIC_SOURCE = {m.name: s.name for s in SOURCES.values() for m in s.metrics if s.name not in ("tax", "sentiment")}


def simulate(n_firms: int, seed: int) -> World:
    if n_firms < 1:
        raise ValueError("n_firms must be at least 1")
    rng = np.random.default_rng(seed)
    n, months = n_firms, N_MONTHS
    k = np.arange(months)
    apply_month = rng.integers(30, 42, n)
    thin = rng.random(n) < 0.12
    hist_len = np.where(thin, rng.integers(2, 9, n), rng.integers(14, 31, n))
    hist_start = np.maximum(apply_month - hist_len, 0)
    founded_month = hist_start - rng.integers(0, 61, n)
    mu = rng.normal(0, 0.8, n)
    target = np.repeat(mu[:, None], months, axis=1)
    shock_month = apply_month + rng.integers(-8, 5, n)
    distress = rng.random(n) < 0.20
    recovery = (~distress) & (rng.random(n) < 0.08)
    after = k[None, :] >= shock_month[:, None]
    target = target - np.where(distress[:, None] & after, rng.uniform(1.0, 2.5, n)[:, None], 0.0)
    target = target + np.where(recovery[:, None] & after, rng.uniform(0.5, 1.5, n)[:, None], 0.0)
    h = np.empty((n, months))
    h[:, 0] = mu + rng.normal(0, 0.6, n)
    eps = rng.normal(0, 1, (n, months))
    for t in range(1, months):
        h[:, t] = target[:, t] + 0.9 * (h[:, t - 1] - target[:, t]) + 0.25 * eps[:, t]
    cal_month = (START_MONTH - 1 + k) % 12 + 1
    amp = rng.uniform(0, 0.25, n)
    season = 1 + amp[:, None] * np.cos(2 * np.pi * (cal_month[None, :] - 11) / 12) - 0.20 * (cal_month == 2)[None, :]
    base_sales = np.exp(rng.normal(np.log(3e7), 0.9, n))
    sales = base_sales[:, None] * season * np.exp(0.35 * h + rng.normal(0, 0.12, (n, months)))
    ticket = np.exp(rng.normal(np.log(15000), 0.5, n))  # fen per order
    orders = rng.poisson(np.maximum(sales / ticket[:, None], 0)).astype(float)
    rating = np.clip(4.3 + 0.25 * h + rng.normal(0, 0.12, (n, months)), 1, 5)
    returns = np.clip(0.07 - 0.025 * h + rng.normal(0, 0.01, (n, months)), 0, 1)
    shipments = rng.poisson(0.9 * orders).astype(float)
    on_time = np.clip(0.92 + 0.03 * h + rng.normal(0, 0.015, (n, months)), 0, 1)
    base_kwh = np.exp(rng.normal(np.log(8000), 0.7, n))
    kwh = base_kwh[:, None] * season * np.exp(0.25 * h + rng.normal(0, 0.08, (n, months)))
    water = (base_kwh / 40)[:, None] * np.exp(0.1 * h + rng.normal(0, 0.15, (n, months)))
    gas = (base_kwh / 20)[:, None] * season * np.exp(0.1 * h + rng.normal(0, 0.2, (n, months)))
    heads = 3 + rng.poisson(12, n)
    headcount = np.maximum(np.round(heads[:, None] * np.exp(0.12 * h) + rng.normal(0, 0.7, (n, months))), 0)
    certs = 0.3 * sales * np.exp(0.2 * h + rng.normal(0, 0.2, (n, months)))
    cert_count = 1 + rng.poisson(2, (n, months)).astype(float)
    overdue = rng.poisson(_sigmoid(-4.5 - 1.5 * h)).astype(float)
    streams = {
        "sales_minor": np.round(sales),
        "orders": orders,
        "rating": np.round(rating, 3),
        "return_rate": np.round(returns, 4),
        "shipments": shipments,
        "on_time_rate": np.round(on_time, 4),
        "electricity_kwh": np.round(kwh, 1),
        "water_t": np.round(water, 2),
        "gas_m3": np.round(gas, 1),
        "insured_headcount": headcount,
        "certificates_received_minor": np.round(certs),
        "certificates_count": cert_count,
        "orders_minor": np.round(0.5 * sales),
        "overdue_count": overdue,
    }
    present = {src: rng.random(n) < p for src, p in PRESENCE.items()}
    before = k[None, :] < hist_start[:, None]
    for metric in streams:
        src = METRIC_SOURCE[metric]
        missing = rng.random((n, months)) < 0.06
        mask = before | ~present[src][:, None]
        streams[metric] = np.where(mask | missing, np.nan, streams[metric])
    # a missing month is missing for every metric of its source
    for src in {METRIC_SOURCE[m] for m in streams}:
        metrics = [m for m in streams if METRIC_SOURCE[m] == src]
        gap = np.zeros((n, months), dtype=bool)
        for m in metrics:
            gap |= np.isnan(streams[m])
        for m in metrics:
            streams[m] = np.where(gap, np.nan, streams[m])
    years = months // 12
    tax_rev = np.full((n, years), np.nan)
    tax_profit = np.full((n, years), np.nan)
    for y in range(years):
        cols = slice(y * 12, y * 12 + 12)
        existed = founded_month <= y * 12
        mean_sales = sales[:, cols].mean(axis=1)
        rev = 12 * mean_sales * np.exp(rng.normal(-0.05, 0.12, n))
        margin = 0.05 + 0.04 * h[:, cols].mean(axis=1) + rng.normal(0, 0.03, n)
        ok = existed & present["tax"]
        tax_rev[:, y] = np.where(ok, np.round(rev), np.nan)
        tax_profit[:, y] = np.where(ok, np.round(rev * margin), np.nan)
    future = (k[None, :] > apply_month[:, None]) & (k[None, :] <= apply_month[:, None] + 12)
    hazard = _sigmoid(-5.6 - 1.4 * h)
    survive = np.prod(np.where(future, 1 - hazard, 1.0), axis=1)
    bad = rng.random(n) > survive
    h_apply = h[np.arange(n), apply_month]
    court = rng.random(n) < _sigmoid(-5.5 - 1.5 * h_apply)
    black = rng.random(n) < 0.005
    sentiment: list[list[tuple[int, int, str]]] = []
    counts = rng.poisson(0.25, (n, months))
    pos_draw = rng.random((n, months, 3))
    tmpl = rng.integers(0, 4, (n, months, 3))
    zh = rng.random(n) < 0.6
    days = rng.integers(1, 29, (n, months, 3))
    firms: list[FirmProfile] = []
    width = max(5, len(str(n)))
    for i in range(n):
        org = f"sim-{seed}-{i:0{width}d}"
        name = f"Shop {i:0{width}d}" if not zh[i] else f"店铺{i:0{width}d}"
        founded = (
            month_start(int(founded_month[i]))
            if founded_month[i] >= 0
            else month_start(0) - dt.timedelta(days=31 * int(-founded_month[i]))
        )
        firms.append(
            FirmProfile(
                org, name, founded.replace(day=1), INDUSTRIES[i % len(INDUSTRIES)], bool(black[i]), bool(court[i])
            )
        )
        items: list[tuple[int, int, str]] = []
        for t in range(int(hist_start[i]), months):
            for j in range(min(int(counts[i, t]), 3)):
                positive = pos_draw[i, t, j] < 1 / (1 + np.exp(-1.5 * h[i, t]))
                pool = (POS_ZH if positive else NEG_ZH) if zh[i] else (POS_EN if positive else NEG_EN)
                item = (t, int(days[i, t, j]), pool[int(tmpl[i, t, j])].format(n=name))
                if item not in items:  # the same text twice on one day is one item
                    items.append(item)
        sentiment.append(items)
    monthly_sales = np.nan_to_num(np.nanmean(np.where(before, np.nan, sales), axis=1), nan=3e7)
    requested = np.maximum(np.round(1.5 * monthly_sales / 100_000) * 100_000, 1_000_000).astype(np.int64)
    return World(
        seed=seed,
        n=n,
        health=h,
        apply_month=apply_month,
        hist_start=hist_start,
        founded_month=founded_month,
        bad=bad,
        requested_minor=requested,
        firms=firms,
        streams=streams,
        tax={"revenue_minor": tax_rev, "profit_minor": tax_profit},
        sentiment=sentiment,
    )
