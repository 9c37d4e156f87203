"""`creditflow credit evaluate`: bring your own data. Any tabular CSV with a binary target.

The target is 0/1 (1 = bad) or two labels, with ``positive`` naming the bad one. Every other column is a
feature: numeric if every non-empty cell parses as a number, otherwise text (a category; a text column
whose values are nearly all distinct, such as an id, is dropped and named in ``dropped``). Missing values
stay missing. Without a time column, stratified k-fold: every row is predicted once by models that never
saw it. With ``time_col``: out-of-time -- the latest ``oot_fraction`` of rows (by that column) are
predicted by models trained on the earlier rows. Both models get exactly the same splits.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from creditflow.credit import metrics
from creditflow.credit.models import stratified_folds, train_challenger, train_champion
from creditflow.credit.settings import CreditSettings

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]


class EvaluateError(ValueError):
    """The data cannot be evaluated; ``field`` names the column or option at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Prepared:
    X: pd.DataFrame
    y: np.ndarray
    features: list[str]
    categorical: list[str]
    dropped: list[str] = field(default_factory=list)
    time: pd.Series | None = None


def read_csv(data: bytes, settings: CreditSettings) -> pd.DataFrame:
    import pandas as pd

    if len(data) > settings.credit_import_max_file_bytes:
        raise EvaluateError(
            "csv", f"the file has {len(data)} bytes; the limit is {settings.credit_import_max_file_bytes}"
        )
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvaluateError("csv", f"cannot read the CSV: {exc}") from None
    if len(df) > settings.credit_evaluate_max_rows:
        raise EvaluateError("csv", f"the file has {len(df)} rows; the limit is {settings.credit_evaluate_max_rows}")
    if df.shape[1] - 1 > settings.credit_evaluate_max_columns:
        raise EvaluateError(
            "csv", f"the file has {df.shape[1]} columns; the limit is {settings.credit_evaluate_max_columns}"
        )
    return df


MISSING = frozenset({"", "na", "nan", "null", "none", "?", "n/a"})


def prepare(
    df: pd.DataFrame, target: str, positive: str | None = None, time_col: str | None = None, min_class_rows: int = 10
) -> Prepared:
    import pandas as pd

    if target not in df.columns:
        raise EvaluateError("target", f"no column {target!r}; columns: {', '.join(map(str, df.columns))}")
    if time_col is not None and time_col not in df.columns:
        raise EvaluateError("time_col", f"no column {time_col!r}")
    raw = df[target].astype(str).str.strip()
    if (raw.str.lower().isin(MISSING)).any():
        rows = [int(i) + 1 for i in np.flatnonzero(raw.str.lower().isin(MISSING).to_numpy())[:5]]
        raise EvaluateError("target", f"the target is empty in row(s) {rows}; every row needs a label")
    labels = sorted(raw.unique())
    if positive is not None:
        if positive not in labels:
            raise EvaluateError("positive", f"{positive!r} is not a value of {target}; values: {labels[:10]}")
        if len(labels) != 2:
            raise EvaluateError("target", f"{target} must have exactly two values; it has {len(labels)}: {labels[:10]}")
        y = (raw == positive).to_numpy()
    elif set(labels) <= {"0", "1"} and len(labels) == 2:
        y = (raw == "1").to_numpy()
    else:
        raise EvaluateError(
            "positive",
            f"{target} has values {labels[:10]}: name the bad outcome with --positive"
            if len(labels) == 2
            else f"{target} must be binary (0/1 or two labels); it has {len(labels)} values",
        )
    for cls, name in ((True, "bad"), (False, "good")):
        if int((y == cls).sum()) < min_class_rows:
            raise EvaluateError(
                "target", f"only {int((y == cls).sum())} {name} row(s); at least {min_class_rows} of each are needed"
            )
    X = pd.DataFrame(index=df.index)
    categorical: list[str] = []
    dropped: list[str] = []
    for col in df.columns:
        if col in (target, time_col):
            continue
        text = df[col].astype(str).str.strip()
        missing = text.str.lower().isin(MISSING)
        numeric = pd.to_numeric(text.where(~missing), errors="coerce")
        if bool((numeric.notna() | missing).all()) and numeric.notna().any():
            X[str(col)] = numeric.astype(float)
        elif missing.all():
            dropped.append(str(col))
        else:
            values = text.where(~missing)
            distinct = values.nunique(dropna=True)
            if distinct > max(50, 0.5 * (~missing).sum()):
                dropped.append(str(col))
                continue
            X[str(col)] = values.astype("category")
            categorical.append(str(col))
    if X.shape[1] == 0:
        raise EvaluateError(
            "csv", "no usable feature column (every column is the target, the time column, empty or an id)"
        )
    times = None
    if time_col is not None:
        parsed = pd.to_numeric(df[time_col], errors="coerce")
        if parsed.isna().any():
            parsed = pd.to_datetime(df[time_col], errors="coerce")
        if parsed.isna().any():
            bad = int(np.flatnonzero(parsed.isna().to_numpy())[0]) + 1
            raise EvaluateError("time_col", f"{time_col} in row {bad} is neither a number nor a date")
        times = parsed
    return Prepared(X, y, list(X.columns), categorical, dropped, times)


def _fold_plan(
    prep: Prepared, folds: int, seed: int, oot_fraction: float
) -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
    if prep.time is None:
        return f"{folds}-fold", [(test, train) for _, test, train in stratified_folds(prep.y, folds, seed)]
    order = np.argsort(prep.time.to_numpy(), kind="mergesort")
    cut = round(len(order) * (1 - oot_fraction))
    train, test = order[:cut], order[cut:]
    for part, name in ((train, "earlier (training)"), (test, "latest (out-of-time)")):
        if prep.y[part].all() or not prep.y[part].any():
            raise EvaluateError("time_col", f"the {name} rows have only one class; out-of-time needs both")
    return f"out-of-time (latest {oot_fraction:.0%})", [(test, train)]


def evaluate(
    prep: Prepared,
    *,
    settings: CreditSettings | None = None,
    monotone: Mapping[str, int] | None = None,
    with_baseline: bool = False,
    folds: int | None = None,
) -> dict[str, Any]:
    """Champion and challenger side by side on the same splits (and optbinning's baseline, if asked)."""
    settings = settings or CreditSettings()
    k = folds or settings.credit_folds
    scheme, plan = _fold_plan(prep, k, settings.credit_seed, settings.credit_oot_fraction)
    names = ["champion", "challenger"] + (["baseline"] if with_baseline else [])
    preds = {n: np.full(len(prep.y), np.nan) for n in names}
    seconds = dict.fromkeys(names, 0.0)
    for fold, (test, train) in enumerate(plan):
        X_train, X_test = prep.X.iloc[train], prep.X.iloc[test]
        started = time.perf_counter()
        champ = train_champion(
            X_train, prep.y[train], prep.features, monotone=monotone, seed=settings.credit_seed + fold
        )
        preds["champion"][test] = champ.predict_pd(X_test)
        seconds["champion"] += time.perf_counter() - started
        for name in names[1:]:
            started = time.perf_counter()
            chal = train_challenger(
                X_train, prep.y[train], prep.features, prep.categorical, baseline=name == "baseline"
            )
            preds[name][test] = chal.predict_pd(X_test)
            seconds[name] += time.perf_counter() - started
    scored = np.isfinite(preds["champion"])
    out: dict[str, Any] = {
        "scheme": scheme,
        "rows": len(prep.y),
        "rows_scored": int(scored.sum()),
        "bad_rate": round(float(prep.y.mean()), 4),
        "features": len(prep.features),
        "categorical": prep.categorical,
        "dropped": prep.dropped,
    }
    for name in names:
        out[name] = {**metrics.summary(prep.y[scored], preds[name][scored]), "train_seconds": round(seconds[name], 2)}
    return out


def monotone_from_option(items: Sequence[str]) -> dict[str, int]:
    """``["age=-1", "debt_ratio=+1"]`` -> {"age": -1, "debt_ratio": 1}."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, sign = item.partition("=")
        if not sep or sign.strip() not in ("+1", "1", "-1"):
            raise EvaluateError("monotone", f"{item!r}: write COLUMN=+1 (risk rises with it) or COLUMN=-1")
        out[name.strip()] = int(sign)
    return out
