"""Monitoring: population stability (PSI) per feature and on the score, with FIXED bins, and AUC/KS on
newly labelled outcomes.

Bins are fixed once, at training: the edges are the training deciles (``bins`` quantiles, duplicates
merged) and missing values have a bin of their own. PSI compares the shares of a recent population with
the training shares in those same bins:

    PSI = sum_b (actual_b - expected_b) x ln(actual_b / expected_b),   shares floored at 1e-4

An alarm is raised when PSI exceeds the configured threshold (default 0.25, the usual "significant
shift" line; 0.1-0.25 is "moderate").

Champion against challenger (`challenger_report`): on the decisions the challenger shadow-scored, how
often the two would have decided alike (over the applications the models decided, i.e. no knock-out),
the cross-table of outcomes, approval rates and mean PDs, and -- once outcomes are labelled -- AUC and
KS of both on exactly the same labelled applications.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from creditflow.credit import metrics

FLOOR = 1e-4


def reference_bins(values: np.ndarray, bins: int = 10) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    edges = sorted(set(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]).tolist())) if len(finite) else []
    return {"edges": edges, "expected": shares(v, edges)}


def shares(values: np.ndarray | Sequence[float], edges: Sequence[float]) -> list[float]:
    """Shares per bin: ``len(edges) + 1`` finite bins (right-closed), then one for missing."""
    v = np.asarray(values, dtype=float)
    n = max(len(v), 1)
    finite = np.isfinite(v)
    idx = np.searchsorted(np.asarray(edges, dtype=float), v[finite], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return [*(counts / n).tolist(), float((~finite).sum()) / n]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, FLOOR), max(a, FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def stability_report(
    reference: Mapping[str, Any], recent: Mapping[str, np.ndarray], recent_score: np.ndarray | None, alarm: float
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    if recent_score is not None and len(recent_score) == 0:
        recent_score = None
    if not any(len(v) for v in recent.values()):
        return {"features": rows, "alarm_threshold": alarm, "alarms": [], "note": "no recent decisions to compare"}
    for name, ref in reference["features"].items():
        if name not in recent:
            continue
        value = psi(ref["expected"], shares(recent[name], ref["edges"]))
        rows.append({"feature": name, "psi": round(value, 4), "alarm": value > alarm})
    out: dict[str, Any] = {"features": rows, "alarm_threshold": alarm}
    if recent_score is not None and "score" in reference:
        value = psi(reference["score"]["expected"], shares(recent_score, reference["score"]["edges"]))
        out["score"] = {"psi": round(value, 4), "alarm": value > alarm}
    out["alarms"] = [r["feature"] for r in rows if r["alarm"]] + (
        ["score"] if out.get("score", {}).get("alarm") else []
    )
    return out


def outcome_report(y: np.ndarray, pd: np.ndarray) -> dict[str, Any]:
    """AUC and KS on labelled outcomes; None while only one class has been seen."""
    y = np.asarray(y, dtype=bool)
    if len(y) == 0 or y.all() or not y.any():
        return {"labelled": len(y), "auc": None, "ks": None}
    return {
        "labelled": len(y),
        "auc": round(metrics.auc(y, pd), 4),
        "ks": round(metrics.ks(y, pd), 4),
        "bad_rate": round(float(y.mean()), 4),
    }


OUTCOMES = ("approve", "refer", "decline")


def challenger_report(
    champion_outcome: Sequence[str],
    champion_pd: Sequence[float | None],
    challenger_outcome: Sequence[str],
    challenger_pd: Sequence[float | None],
    bad: Sequence[bool | None],
) -> dict[str, Any]:
    """One entry per shadow-scored decision; ``bad`` is None while a decision's outcome is unknown."""
    n = len(champion_outcome)
    modelled = [i for i in range(n) if champion_pd[i] is not None and challenger_pd[i] is not None]
    table = {a: dict.fromkeys(OUTCOMES, 0) for a in OUTCOMES}
    for i in modelled:
        table[champion_outcome[i]][challenger_outcome[i]] += 1
    out: dict[str, Any] = {
        "decisions": n,
        "model_decided": len(modelled),
        "agreement": (
            round(sum(champion_outcome[i] == challenger_outcome[i] for i in modelled) / len(modelled), 4)
            if modelled
            else None
        ),
        "outcomes": table,
    }
    if modelled:
        out["approval_rate"] = {
            "champion": round(sum(champion_outcome[i] == "approve" for i in modelled) / len(modelled), 4),
            "challenger": round(sum(challenger_outcome[i] == "approve" for i in modelled) / len(modelled), 4),
        }
        out["mean_pd"] = {
            "champion": round(float(np.mean([champion_pd[i] for i in modelled])), 4),
            "challenger": round(float(np.mean([challenger_pd[i] for i in modelled])), 4),
        }
    labelled = [i for i in modelled if bad[i] is not None]
    y = np.array([bool(bad[i]) for i in labelled], dtype=bool)
    out["labelled"] = {
        "champion": outcome_report(y, np.array([champion_pd[i] for i in labelled], dtype=float)),
        "challenger": outcome_report(y, np.array([challenger_pd[i] for i in labelled], dtype=float)),
    }
    return out
