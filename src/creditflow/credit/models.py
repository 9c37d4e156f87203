"""Champion and challenger.

Champion: gradient-boosted trees (LightGBM) with monotone constraints where the business direction is
known (`features.MONOTONE`, or given for bring-your-own data), and Platt calibration fitted on
out-of-fold margins (3 inner folds), so the probability of default is calibrated without touching the
rows used to judge it. Explanations are LightGBM's own per-feature contributions (``pred_contrib``, in
log-odds) -- exact TreeSHAP values for this model.

Challenger: a WoE-binned logistic scorecard (optbinning `BinningProcess` with monotonic trends and an IV
floor, `Scorecard` scaled to points: 600 points at odds 50:1, 20 points to double the odds). Its
explanation is each feature's points. The baseline is optbinning's scorecard with its documented
defaults, measured beside the two.

LightGBM and optbinning are imported inside the functions that need them.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm
    import pandas as pd  # type: ignore[import-untyped]

CHAMPION_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 7,
    "max_depth": 3,
    "min_data_in_leaf": 25,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "cat_smooth": 20,
    "min_data_per_group": 20,
    "num_boost_round": 300,
    "verbose": -1,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 2,
}
SCORE_POINTS, SCORE_ODDS, SCORE_PDO = 600.0, 50.0, 20.0
# the challenger's settings (part of its artefact version); the baseline uses optbinning's defaults
CHALLENGER_PARAMS: dict[str, Any] = {
    "monotonic_trend": "auto_asc_desc",
    "iv_min": 0.02,
    "min_prebin_size": 0.05,
    "logistic_c": 0.5,
    "logistic_max_iter": 1000,
    "metric_missing_woe": 0.0,
}


def _lgb_params(params: Mapping[str, Any], seed: int, monotone: Sequence[int]) -> tuple[dict[str, Any], int]:
    p = dict(CHAMPION_PARAMS)
    p.update(params)
    rounds = int(p.pop("num_boost_round"))
    p["seed"] = seed
    if any(monotone):
        p["monotone_constraints"] = list(monotone)
        p["monotone_constraints_method"] = "advanced"
    return p, rounds


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def fit_platt(margin: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression of y on one margin, by Newton's method (a, b with pd = sigmoid(a m + b))."""
    a, b = 1.0, 0.0
    m = np.asarray(margin, dtype=float)
    t = np.asarray(y, dtype=float)
    for _ in range(50):
        p = _sigmoid(a * m + b)
        w = p * (1 - p) + 1e-9
        g_a, g_b = float(np.sum((p - t) * m)), float(np.sum(p - t))
        h_aa, h_ab, h_bb = float(np.sum(w * m * m)) + 1e-6, float(np.sum(w * m)), float(np.sum(w)) + 1e-6
        det = h_aa * h_bb - h_ab * h_ab
        if det <= 0:
            break
        da = (h_bb * g_a - h_ab * g_b) / det
        db = (h_aa * g_b - h_ab * g_a) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return float(a), float(b)


def _frame(X: Any) -> Any:
    return X


@dataclass
class Champion:
    booster: lightgbm.Booster
    features: list[str]
    platt: tuple[float, float]
    monotone: list[int]
    params: dict[str, Any] = field(default_factory=dict)

    def margin(self, X: Any) -> np.ndarray:
        out: np.ndarray = np.asarray(self.booster.predict(X, raw_score=True), dtype=float)
        return out

    def predict_pd(self, X: Any) -> np.ndarray:
        a, b = self.platt
        return _sigmoid(a * self.margin(X) + b)

    def contributions(self, X: Any) -> np.ndarray:
        """Per-feature contributions to the calibrated log-odds (last column: the base value)."""
        raw = np.asarray(self.booster.predict(X, pred_contrib=True), dtype=float)
        a, b = self.platt
        raw = raw * a
        raw[:, -1] += b
        return raw

    def to_string(self) -> str:
        text: str = self.booster.model_to_string()
        return text


def booster_from_string(text: str) -> lightgbm.Booster:
    import lightgbm

    return lightgbm.Booster(model_str=text)


def train_champion(
    X: Any,
    y: np.ndarray,
    features: Sequence[str],
    *,
    monotone: Mapping[str, int] | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    calibrate_folds: int = 3,
) -> Champion:
    """Fit LightGBM on X (numpy array or DataFrame with the columns ``features``) and calibrate it."""
    import lightgbm

    mono = [int((monotone or {}).get(f, 0)) for f in features]
    lgb_params, rounds = _lgb_params(params or {}, seed, mono)
    y = np.asarray(y, dtype=float)

    def fit(idx: np.ndarray) -> lightgbm.Booster:
        rows = X.iloc[idx] if hasattr(X, "iloc") else X[idx]
        data = lightgbm.Dataset(rows, label=y[idx], feature_name=list(features), free_raw_data=True)
        return lightgbm.train(lgb_params, data, num_boost_round=rounds)

    oof = np.zeros(len(y))
    for _, test_idx, train_idx in _folds(y, calibrate_folds, seed + 1):
        booster = fit(train_idx)
        rows = X.iloc[test_idx] if hasattr(X, "iloc") else X[test_idx]
        oof[test_idx] = booster.predict(rows, raw_score=True)
    platt = fit_platt(oof, y)
    return Champion(fit(np.arange(len(y))), list(features), platt, mono, dict(params or {}))


def _folds(y: np.ndarray, k: int, seed: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Stratified k folds: (fold, test indices, train indices)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(bool)
    assign = np.empty(len(y), dtype=int)
    for cls in (True, False):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        assign[idx] = np.arange(len(idx)) % k
    return [(f, np.flatnonzero(assign == f), np.flatnonzero(assign != f)) for f in range(k)]


stratified_folds = _folds


@dataclass
class Challenger:
    scorecard: Any  # optbinning.Scorecard
    features: list[str]

    def predict_pd(self, X: pd.DataFrame) -> np.ndarray:
        out: np.ndarray = np.asarray(self.scorecard.predict_proba(X[self.features])[:, 1], dtype=float)
        return out

    def score(self, X: pd.DataFrame) -> np.ndarray:
        out: np.ndarray = np.asarray(self.scorecard.score(X[self.features]), dtype=float)
        return out

    def points(self, X: pd.DataFrame) -> np.ndarray:
        """Points of each feature for each row (they add up to `score`): higher points, lower risk."""
        bp = self.scorecard.binning_process_
        selected = list(bp.get_support(names=True))
        woe = bp.transform(X[self.features], metric="woe")[selected].to_numpy(dtype=float)
        est = self.scorecard.estimator_
        coef = np.asarray(est.coef_, dtype=float).ravel()
        intercept = float(np.asarray(est.intercept_).ravel()[0])
        factor = SCORE_PDO / math.log(2)
        offset = SCORE_POINTS - factor * math.log(SCORE_ODDS)
        contrib = woe * coef  # log-odds of the event (bad) per feature
        per = -factor * contrib + (offset - factor * intercept) / len(selected)
        out = np.zeros((len(X), len(self.features)))
        for j, name in enumerate(selected):
            out[:, self.features.index(name)] = per[:, j]
        return out


def train_challenger(
    X: pd.DataFrame, y: np.ndarray, features: Sequence[str], categorical: Sequence[str], *, baseline: bool = False
) -> Challenger:
    """optbinning scorecard. ``baseline=True``: optbinning's documented defaults; otherwise monotonic
    trends chosen per feature, an IV floor of 0.02 and a regularised logistic regression."""
    from optbinning import BinningProcess, Scorecard  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    names = list(features)
    cats = [c for c in categorical if c in names]
    if baseline:
        process = BinningProcess(names, categorical_variables=cats)
        estimator = LogisticRegression()
    else:
        p = CHALLENGER_PARAMS
        params = {n: {"monotonic_trend": p["monotonic_trend"]} for n in names if n not in cats}
        process = BinningProcess(
            names,
            categorical_variables=cats,
            selection_criteria={"iv": {"min": p["iv_min"]}},
            binning_fit_params=params,
            min_prebin_size=p["min_prebin_size"],
        )
        estimator = LogisticRegression(C=p["logistic_c"], max_iter=p["logistic_max_iter"])
    card = Scorecard(
        binning_process=process,
        estimator=estimator,
        scaling_method="pdo_odds",
        scaling_method_params={"pdo": SCORE_PDO, "odds": SCORE_ODDS, "scorecard_points": SCORE_POINTS},
    )
    with warnings.catch_warnings():
        # optbinning/pandas internals: deprecation chatter that is not ours to fix
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        card.fit(X[names], np.asarray(y, dtype=int))
    return Challenger(card, names)


@dataclass(frozen=True, slots=True)
class WoeBins:
    """One selected feature of a scorecard: the bin of a value is ``bisect_right(splits, value)`` (what
    optbinning's ``np.digitize(x, splits, right=False)`` gives), its WoE ``woe[bin]``; a missing value
    gets ``woe_missing``. ``coef`` is the logistic regression's coefficient of this WoE."""

    name: str
    splits: tuple[float, ...]
    woe: tuple[float, ...]
    woe_missing: float
    coef: float

    def woe_of(self, value: float) -> float:
        if math.isnan(value):
            return self.woe_missing
        return self.woe[bisect.bisect_right(self.splits, value)]


@dataclass(frozen=True)
class WoeScorecard:
    """The challenger as plain numbers, for storing and live scoring without optbinning or pickle:
    log-odds of default = intercept + sum over the selected features of coef x WoE(bin of the value),
    exactly the fitted `Challenger`'s ``predict_proba`` (tested). Numeric features only (the feature
    catalogue); a bring-your-own scorecard with text columns stays in `credit evaluate`.

    Each feature's term ``coef x WoE`` is its contribution to the log-odds of default (+ raises the
    risk): the challenger's reasons. Its points on the 600/50:1/20 scale are ``points``."""

    features: tuple[str, ...]
    bins: tuple[WoeBins, ...]
    intercept: float

    @classmethod
    def from_challenger(cls, challenger: Challenger) -> WoeScorecard:
        bp = challenger.scorecard.binning_process_
        selected = [str(n) for n in bp.get_support(names=True)]
        est = challenger.scorecard.estimator_
        coef = np.asarray(est.coef_, dtype=float).ravel()
        missing = float(CHALLENGER_PARAMS["metric_missing_woe"])
        bins = []
        for j, name in enumerate(selected):
            optb = bp.get_binned_variable(name)
            if optb.dtype != "numerical":
                raise ValueError(f"{name} is not numeric: only numeric scorecards are stored")
            splits = tuple(float(x) for x in np.asarray(optb.splits, dtype=float))
            # one representative per bin: -inf falls in bin 0, a split point s_k opens bin k + 1
            probe = np.array([-np.inf, *splits], dtype=float)
            woe = optb.transform(probe, metric="woe", metric_special=0, metric_missing=missing)
            bins.append(WoeBins(name, splits, tuple(float(w) for w in woe), missing, float(coef[j])))
        intercept = float(np.asarray(est.intercept_, dtype=float).ravel()[0])
        return cls(tuple(challenger.features), tuple(bins), intercept)

    def terms(self, values: Mapping[str, float]) -> list[float]:
        """Each selected feature's contribution to the log-odds of default, in ``bins`` order."""
        return [b.coef * b.woe_of(values[b.name]) for b in self.bins]

    def pd_and_contributions(self, values: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        terms = self.terms(values)
        logit = self.intercept
        for t in terms:
            logit += t
        pd = 1.0 / (1.0 + math.exp(-logit))
        return pd, {b.name: t for b, t in zip(self.bins, terms, strict=True)}

    def predict_pd(self, X: np.ndarray) -> np.ndarray:
        """PD of each row of X (columns: ``features``)."""
        X = np.asarray(X, dtype=float)
        logit = np.full(len(X), self.intercept)
        for b in self.bins:
            x = X[:, self.features.index(b.name)]
            w = np.asarray(b.woe, dtype=float)[np.searchsorted(np.asarray(b.splits, dtype=float), x, side="right")]
            w[np.isnan(x)] = b.woe_missing
            logit += b.coef * w
        return _sigmoid(logit)

    def points(self, values: Mapping[str, float]) -> dict[str, float]:
        """Points of each selected feature (they add up to the score; higher points, lower risk)."""
        factor = SCORE_PDO / math.log(2)
        offset = SCORE_POINTS - factor * math.log(SCORE_ODDS)
        share = (offset - factor * self.intercept) / max(len(self.bins), 1)
        return {b.name: -factor * t + share for b, t in zip(self.bins, self.terms(values), strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "intercept": self.intercept,
            "bins": [
                {
                    "name": b.name,
                    "splits": list(b.splits),
                    "woe": list(b.woe),
                    "woe_missing": b.woe_missing,
                    "coef": b.coef,
                }
                for b in self.bins
            ],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> WoeScorecard:
        bins = tuple(
            WoeBins(
                str(b["name"]),
                tuple(float(x) for x in b["splits"]),
                tuple(float(x) for x in b["woe"]),
                float(b["woe_missing"]),
                float(b["coef"]),
            )
            for b in doc["bins"]
        )
        for b in bins:
            if len(b.woe) != len(b.splits) + 1 or list(b.splits) != sorted(b.splits):
                raise ValueError(f"scorecard bins of {b.name} are not consistent")
        card = cls(tuple(str(f) for f in doc["features"]), bins, float(doc["intercept"]))
        unknown = [b.name for b in bins if b.name not in card.features]
        if unknown:
            raise ValueError(f"scorecard bins for features it does not list: {unknown}")
        return card
