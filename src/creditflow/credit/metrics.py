"""Discrimination and calibration measures (numpy only): AUC, KS, Gini, Brier, calibration table."""

from __future__ import annotations

from typing import Any

import numpy as np


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both classes")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ks(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score distributions of bads and goods."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    thresholds = np.unique(p)
    bad = np.sort(p[y])
    good = np.sort(p[~y])
    cdf_bad = np.searchsorted(bad, thresholds, side="right") / max(len(bad), 1)
    cdf_good = np.searchsorted(good, thresholds, side="right") / max(len(good), 1)
    return float(np.max(np.abs(cdf_bad - cdf_good))) if len(thresholds) else 0.0


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Rows sorted by predicted PD, cut into ``bins`` groups of equal size: mean predicted vs observed."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="mergesort")
    out = []
    for chunk in np.array_split(order, min(bins, len(p))):
        if len(chunk):
            out.append({"n": len(chunk), "predicted": float(p[chunk].mean()), "observed": float(y[chunk].mean())})
    return out


def summary(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    a = auc(y, p)
    table = calibration_table(y, p)
    n = sum(r["n"] for r in table)
    ece = sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in table) / n
    return {
        "auc": round(a, 4),
        "gini": round(2 * a - 1, 4),
        "ks": round(ks(y, p), 4),
        "brier": round(brier(y, p), 4),
        "calibration_error": round(ece, 4),
        "mean_pd": round(float(np.mean(p)), 4),
        "bad_rate": round(float(np.mean(y)), 4),
        "calibration": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in table],
    }
