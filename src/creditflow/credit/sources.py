"""The data sources of a credit profile, each with ONE documented schema, and their CSV/JSON import.

Every source arrives as rows (CSV with a header, or a JSON array of objects) with the columns below.
Each row becomes one `Observation` per metric cell that is not empty: ``(org_id, source, metric, period,
available_on, value)``. ``available_on`` is the day the platform could first have known the value (the
period's end plus the source's publication lag, unless the row gives ``available_on``); the feature
pipeline only ever reads observations available strictly before the decision date.

| source             | period           | metric columns (unit)                                                   | lag  |
| ------------------ | ---------------- | ----------------------------------------------------------------------- | ---- |
| `platform`         | month or day     | certificates_received_minor (fen), certificates_count, orders_minor (fen), overdue_count | 1 d |
| `store`            | month or day     | sales_minor (fen), orders, rating (1-5), return_rate (0-1)             | 1 d  |
| `logistics`        | month or day     | shipments, on_time_rate (0-1)                                           | 1 d  |
| `utilities`        | month            | electricity_kwh, water_t, gas_m3                                        | 5 d  |
| `social_insurance` | month            | insured_headcount                                                       | 15 d |
| `tax`              | year (YYYY)      | revenue_minor (fen), profit_minor (fen, may be negative)                | to 31 May next year |
| `sentiment`        | day (published)  | text (scored by `creditflow.credit.sentiment`; stored as score -1..1)  | 0 d  |

Common columns: ``org_id`` (required, 1-64 of ``[A-Za-z0-9._-]``), ``period`` (``YYYY-MM``, ``YYYY-MM-DD``;
``YYYY`` for tax; for sentiment ``published_on``), optional ``available_on`` (``YYYY-MM-DD``, not before the
period starts). Unknown columns are refused (a typo must not silently drop a metric). Money is integer
fen. Firm profiles (`firms`): ``org_id, name, founded_on, industry, blacklisted, court_judgment``.

Bad input: every bad row is reported with its row number, column and rule, and a file with any bad row
imports nothing (`ImportReport.errors`). A file over the size or row limit is refused whole.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from creditflow.credit.sentiment import score_text

ORG_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MONEY, COUNT, RATIO, QUANTITY, SCORE, SIGNED_MONEY = "money", "count", "ratio", "quantity", "score", "signed_money"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    description: str
    metrics: tuple[Metric, ...]
    lag_days: int
    period_kind: str = "month"  # month (month or day accepted), year, day


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "platform",
            "platform transactions: certificate flows and orders on creditflow",
            (
                Metric("certificates_received_minor", MONEY),
                Metric("certificates_count", COUNT),
                Metric("orders_minor", MONEY),
                Metric("overdue_count", COUNT),
            ),
            1,
        ),
        Source(
            "store",
            "online store: sales, orders, customer ratings, return rate",
            (
                Metric("sales_minor", MONEY),
                Metric("orders", COUNT),
                Metric("rating", RATIO, 1, 5),
                Metric("return_rate", RATIO, 0, 1),
            ),
            1,
        ),
        Source(
            "logistics",
            "logistics: shipments and on-time rate",
            (Metric("shipments", COUNT), Metric("on_time_rate", RATIO, 0, 1)),
            1,
        ),
        Source(
            "utilities",
            "utilities: monthly electricity, water and gas",
            (Metric("electricity_kwh", QUANTITY), Metric("water_t", QUANTITY), Metric("gas_m3", QUANTITY)),
            5,
        ),
        Source("social_insurance", "social insurance: insured headcount", (Metric("insured_headcount", COUNT),), 15),
        Source(
            "tax",
            "annual tax filing: revenue and profit",
            (Metric("revenue_minor", MONEY), Metric("profit_minor", SIGNED_MONEY)),
            0,
            "year",
        ),
        Source(
            "sentiment", "news and opinion items, scored by the lexicon", (Metric("sentiment", SCORE, -1, 1),), 0, "day"
        ),
    )
}
MONEY_KINDS = frozenset({MONEY, SIGNED_MONEY})


@dataclass(frozen=True, slots=True)
class Observation:
    org_id: str
    source: str
    metric: str
    period: dt.date
    available_on: dt.date
    value: float
    item_key: str = ""  # distinguishes several items of one day (sentiment): digest of the text
    note: str | None = None


@dataclass(frozen=True, slots=True)
class FirmProfile:
    org_id: str
    name: str
    founded_on: dt.date
    industry: str
    blacklisted: bool = False
    court_judgment: bool = False


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1-based data row (the header is row 0)
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class ParseResult:
    source: str
    rows: int = 0
    observations: list[Observation] = field(default_factory=list)
    firms: list[FirmProfile] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    sha256: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


class FileRefused(ValueError):
    """The file as a whole cannot be read (size, format, header): nothing imported."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def month_end(day: dt.date) -> dt.date:
    nxt = dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def default_available_on(source: Source, period: dt.date, granularity: str) -> dt.date:
    if source.period_kind == "year":
        return dt.date(period.year + 1, 5, 31)
    if source.period_kind == "day" or granularity == "day":
        return period + dt.timedelta(days=max(source.lag_days, 0) or 0)
    return month_end(period) + dt.timedelta(days=source.lag_days)


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


def parse_period(text: str, kind: str) -> tuple[dt.date, str]:
    """(date, granularity). Raises ValueError with a readable message."""
    text = text.strip()
    if kind == "year":
        m = _YEAR.match(text)
        if not m:
            raise ValueError("must be a year like 2025")
        return dt.date(int(m.group(1)), 1, 1), "year"
    m = _DAY.match(text)
    if m:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))), "day"
    m = _MONTH.match(text)
    if m and kind == "month":
        return dt.date(int(m.group(1)), int(m.group(2)), 1), "month"
    raise ValueError("must be a date like 2026-03-15" + (" or a month like 2026-03" if kind == "month" else ""))


def parse_day(text: str) -> dt.date:
    m = _DAY.match(text.strip())
    if not m:
        raise ValueError("must be a date like 2026-03-15")
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _number(text: str, metric: Metric) -> float:
    cleaned = text.strip()
    if metric.kind in MONEY_KINDS or metric.kind == COUNT:
        if not re.fullmatch(r"-?\d+", cleaned):
            unit = "fen" if metric.kind in MONEY_KINDS else "items"
            raise ValueError(f"must be a whole number ({unit})")
        value = float(int(cleaned))
        if abs(value) > 10**17:
            raise ValueError("is beyond the largest amount")
    else:
        try:
            value = float(cleaned)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number") from None
    if metric.kind != SIGNED_MONEY and metric.kind != SCORE and value < 0:
        raise ValueError("must not be negative")
    if metric.low is not None and value < metric.low:
        raise ValueError(f"must be at least {metric.low:g}")
    if metric.high is not None and value > metric.high:
        raise ValueError(f"must be at most {metric.high:g}")
    return value


def read_rows(data: bytes, filename: str, *, max_bytes: int, max_rows: int) -> list[dict[str, str]]:
    """CSV (UTF-8, with header) or JSON (an array of objects), chosen by extension or first character."""
    if len(data) > max_bytes:
        raise FileRefused("file", f"the file has {len(data)} bytes; the limit is {max_bytes}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRefused("file", "the file is not UTF-8 text") from None
    rows: list[dict[str, str]]
    if filename.lower().endswith(".json") or text.lstrip().startswith("["):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise FileRefused("file", f"not valid JSON: {exc}") from None
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise FileRefused("file", "JSON must be an array of objects")
        rows = [
            {str(k): "" if v is None else (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in r.items()}
            for r in doc
        ]
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise FileRefused("file", "the CSV has no header row")
        rows = []
        for r in reader:
            if None in r:
                raise FileRefused("file", f"row {len(rows) + 1} has more cells than the header")
            rows.append({k: (v or "") for k, v in r.items()})
    if len(rows) > max_rows:
        raise FileRefused("file", f"the file has {len(rows)} rows; the limit is {max_rows}")
    return rows


def _truthy(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "y", "是"):
        return True
    if value in ("", "0", "false", "no", "n", "否"):
        return False
    raise ValueError("must be true or false")


def parse_firms(rows: Sequence[Mapping[str, str]]) -> ParseResult:
    result = ParseResult("firms", rows=len(rows))
    allowed = {"org_id", "name", "founded_on", "industry", "blacklisted", "court_judgment"}
    seen: set[str] = set()
    for i, row in enumerate(rows, start=1):
        unknown = sorted(set(row) - allowed)
        for col in unknown:
            result.errors.append(RowError(i, col, "is not a column of the firms schema"))
        org = row.get("org_id", "").strip()
        if not ORG_ID_RE.match(org):
            result.errors.append(RowError(i, "org_id", "must be 1-64 letters, digits, '.', '_' or '-'"))
            continue
        if org in seen:
            result.errors.append(RowError(i, "org_id", f"{org} appears twice in the file"))
        seen.add(org)
        name = row.get("name", "").strip()
        if not 1 <= len(name) <= 200:
            result.errors.append(RowError(i, "name", "must be 1-200 characters"))
        try:
            founded = parse_day(row.get("founded_on", ""))
            blacklisted = _truthy(row.get("blacklisted", ""))
            court = _truthy(row.get("court_judgment", ""))
        except ValueError as exc:
            bad = "founded_on" if not _DAY.match(row.get("founded_on", "").strip()) else "blacklisted/court_judgment"
            result.errors.append(RowError(i, bad, str(exc)))
            continue
        result.firms.append(
            FirmProfile(org, name, founded, row.get("industry", "").strip()[:64] or "unknown", blacklisted, court)
        )
    return result


def parse_source(source_name: str, rows: Sequence[Mapping[str, str]], *, max_text_chars: int = 2000) -> ParseResult:
    """Rows of one source -> observations, or every row-level error (then no observation is returned)."""
    if source_name == "firms":
        return parse_firms(rows)
    if source_name not in SOURCES:
        raise FileRefused("source", f"unknown source {source_name!r}; one of {', '.join([*SOURCES, 'firms'])}")
    source = SOURCES[source_name]
    result = ParseResult(source_name, rows=len(rows))
    period_col = "published_on" if source.name == "sentiment" else "period"
    value_cols = ("text", "lang") if source.name == "sentiment" else tuple(m.name for m in source.metrics)
    allowed = {"org_id", period_col, "available_on", *value_cols}
    seen: set[tuple[str, str, dt.date, str]] = set()
    for i, row in enumerate(rows, start=1):
        errors: list[RowError] = [
            RowError(i, col, f"is not a column of the {source.name} schema") for col in sorted(set(row) - allowed)
        ]
        org = row.get("org_id", "").strip()
        if not ORG_ID_RE.match(org):
            errors.append(RowError(i, "org_id", "must be 1-64 letters, digits, '.', '_' or '-'"))
        period: dt.date | None = None
        granularity = ""
        try:
            period, granularity = parse_period(row.get(period_col, ""), source.period_kind)
        except ValueError as exc:
            errors.append(RowError(i, period_col, str(exc)))
        available: dt.date | None = None
        if row.get("available_on", "").strip():
            try:
                available = parse_day(row["available_on"])
            except ValueError as exc:
                errors.append(RowError(i, "available_on", str(exc)))
            else:
                if period is not None and available < period:
                    errors.append(RowError(i, "available_on", "must not be before the period starts"))
        row_obs: list[Observation] = []
        if period is not None and available is None:
            available = default_available_on(source, period, granularity)
        if source.name == "sentiment":
            text = row.get("text", "").strip()
            if not text:
                errors.append(RowError(i, "text", "must not be empty"))
            elif len(text) > max_text_chars:
                errors.append(RowError(i, "text", f"must be at most {max_text_chars} characters"))
            elif period is not None and available is not None:
                scored = score_text(text)
                key = hashlib.sha256(text.encode()).hexdigest()[:16]
                row_obs.append(
                    Observation(org, "sentiment", "sentiment", period, available, scored.score, key, text[:500])
                )
        else:
            present = 0
            for metric in source.metrics:
                cell = row.get(metric.name, "")
                if not cell.strip():
                    continue
                present += 1
                try:
                    value = _number(cell, metric)
                except ValueError as exc:
                    errors.append(RowError(i, metric.name, str(exc)))
                    continue
                if period is not None and available is not None:
                    row_obs.append(Observation(org, source.name, metric.name, period, available, value))
            if present == 0:
                errors.append(RowError(i, "row", f"has no value in any of {', '.join(value_cols)}"))
        for obs in row_obs:
            key4 = (obs.org_id, obs.metric, obs.period, obs.item_key)
            if key4 in seen:
                errors.append(RowError(i, obs.metric, f"{obs.org_id} {obs.period} appears twice in the file"))
            seen.add(key4)
        if errors:
            result.errors.extend(errors)
        else:
            result.observations.extend(row_obs)
    if result.errors:
        result.observations.clear()
    return result


def parse_file(
    source_name: str, data: bytes, filename: str, *, max_bytes: int, max_rows: int, max_text_chars: int = 2000
) -> ParseResult:
    rows = read_rows(data, filename, max_bytes=max_bytes, max_rows=max_rows)
    result = parse_source(source_name, rows, max_text_chars=max_text_chars)
    result.sha256 = hashlib.sha256(data).hexdigest()
    return result


@dataclass(frozen=True, slots=True)
class Application:
    """One labelled past application, for training on imported data: the business, the day it applied
    (its features are computed from the data available before that day) and whether it went bad."""

    org_id: str
    applied_on: dt.date
    bad: bool


APPLICATION_OPTIONAL = ("requested_minor",)


def parse_applications(rows: Sequence[Mapping[str, str]], target: str) -> tuple[list[Application], list[RowError]]:
    """Rows ``org_id, applied_on, <target>[, requested_minor]`` (the layout `creditflow simulate credit
    --out` writes as ``applications.csv``); the target is 1 (bad) or 0. Every bad row is reported and
    then no application is returned."""
    if not rows:
        raise FileRefused("file", "the file has no applications")
    for col in ("org_id", "applied_on", target):
        if col not in rows[0]:
            raise FileRefused(
                "target" if col == target else "file", f"no column {col!r}; columns: {', '.join(rows[0])}"
            )
    allowed = {"org_id", "applied_on", target, *APPLICATION_OPTIONAL}
    out: list[Application] = []
    errors: list[RowError] = []
    seen: set[tuple[str, dt.date]] = set()
    for i, row in enumerate(rows, start=1):
        row_errors = [
            RowError(i, col, "is not a column of the applications schema") for col in sorted(set(row) - allowed)
        ]
        org = row.get("org_id", "").strip()
        if not ORG_ID_RE.match(org):
            row_errors.append(RowError(i, "org_id", "must be 1-64 letters, digits, '.', '_' or '-'"))
        applied: dt.date | None = None
        try:
            applied = parse_day(row.get("applied_on", ""))
        except ValueError as exc:
            row_errors.append(RowError(i, "applied_on", str(exc)))
        label = row.get(target, "").strip()
        if label not in ("0", "1"):
            row_errors.append(RowError(i, target, "must be 1 (went bad) or 0"))
        if applied is not None and (org, applied) in seen:
            row_errors.append(RowError(i, "applied_on", f"{org} applied on {applied} twice in the file"))
        if applied is not None:
            seen.add((org, applied))
        if row_errors:
            errors.extend(row_errors)
        elif applied is not None:
            out.append(Application(org, applied, label == "1"))
    return ([] if errors else out), errors


def observations_to_rows(observations: Iterable[Observation]) -> dict[str, list[dict[str, str]]]:
    """The inverse of `parse_source` (used by the simulator to write its world as files)."""
    by_key: dict[tuple[str, str, dt.date, dt.date, str], dict[str, str]] = {}
    out: dict[str, list[dict[str, str]]] = {name: [] for name in SOURCES}
    for obs in observations:
        source = SOURCES[obs.source]
        if obs.source == "sentiment":
            out["sentiment"].append(
                {
                    "org_id": obs.org_id,
                    "published_on": obs.period.isoformat(),
                    "available_on": obs.available_on.isoformat(),
                    "text": obs.note or "",
                }
            )
            continue
        period = str(obs.period.year) if source.period_kind == "year" else obs.period.strftime("%Y-%m")
        key = (obs.source, obs.org_id, obs.period, obs.available_on, "")
        row = by_key.get(key)
        if row is None:
            row = {"org_id": obs.org_id, "period": period, "available_on": obs.available_on.isoformat()}
            row.update({m.name: "" for m in source.metrics})
            by_key[key] = row
            out[obs.source].append(row)
        metric = next(m for m in source.metrics if m.name == obs.metric)
        row[obs.metric] = str(int(obs.value)) if metric.kind in (MONEY, SIGNED_MONEY, COUNT) else f"{obs.value:.6g}"
    return out
