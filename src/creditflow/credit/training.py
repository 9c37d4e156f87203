"""Training the live pair, champion and challenger, on one labelled set of applications.

The rows are applications: their point-in-time features (each computed from the data available before
its own application day), whether the business went bad, and the application day. Before the final fit:

1. Out-of-time validation. The applications are ordered by day; the latest ``oot_fraction`` of them
   (cut on a day boundary, so one day is never on both sides) are held out. Champion and challenger are
   fitted on the earlier ones and judged on the later ones, side by side: AUC, Gini, KS, Brier,
   calibration. Skipped, and said so, when either side has fewer than ``min_class_rows`` of a class.
2. The final fit on every row: the champion (`artefacts.build_artefact`) and the challenger
   (`artefacts.build_challenger_artefact`), both carrying the validation in their metrics.

Where the rows come from (a simulated world, or data imported into the store with a file of labelled
applications) is the service's business; this module only sees the matrix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from creditflow.credit import metrics as measures
from creditflow.credit.artefacts import Artefact, ChallengerArtefact, build_artefact, build_challenger_artefact
from creditflow.credit.features import FEATURES, MONOTONE
from creditflow.credit.models import WoeScorecard, train_challenger, train_champion


@dataclass
class Trained:
    champion: Artefact
    challenger: ChallengerArtefact | None
    validation: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        def describe(a: Artefact | ChallengerArtefact) -> dict[str, Any]:
            return {
                "version": a.version,
                "data_hash": a.data_hash,
                "feature_hash": a.feature_hash,
                "params_hash": a.params_hash,
            }

        return {
            "champion": describe(self.champion),
            "challenger": None if self.challenger is None else describe(self.challenger),
            "rows": self.champion.metrics.get("rows"),
            "bad_rate": self.champion.metrics.get("bad_rate"),
            "trained_on": self.champion.metrics.get("trained_on"),
            "validation": self.validation,
        }


def out_of_time_validation(
    X: np.ndarray,
    y: np.ndarray,
    days: Sequence[dt.date],
    *,
    oot_fraction: float,
    min_class_rows: int,
    seed: int,
    params: dict[str, Any] | None = None,
    with_challenger: bool = True,
) -> dict[str, Any]:
    """Champion and challenger fitted on the earlier applications, judged on the latest ones."""
    n = len(y)
    y = np.asarray(y, dtype=bool)
    ordinal = np.array([d.toordinal() for d in days], dtype=np.int64)
    ordered = np.sort(ordinal, kind="mergesort")
    position = min(max(round(n * (1 - oot_fraction)), 1), n - 1) if n > 1 else 0
    cutoff = int(ordered[position]) if n > 1 else 0
    test = ordinal >= cutoff
    train = ~test
    for part, name in ((train, "earlier"), (test, "latest")):
        bads, goods = int(y[part].sum()), int((~y[part]).sum())
        if n < 2 or min(bads, goods) < min_class_rows:
            return {
                "scheme": "skipped",
                "reason": f"the {name} applications have {bads} bad and {goods} good; "
                f"out-of-time validation needs at least {min_class_rows} of each on both sides",
            }
    champion = train_champion(X[train], y[train].astype(int), FEATURES, monotone=MONOTONE, params=params, seed=seed)
    out: dict[str, Any] = {
        "scheme": f"out-of-time: trained on applications before {dt.date.fromordinal(cutoff)}, "
        f"judged on those from then on",
        "cutoff": dt.date.fromordinal(cutoff).isoformat(),
        "train_rows": int(train.sum()),
        "test_rows": int(test.sum()),
        "champion": measures.summary(y[test], champion.predict_pd(X[test])),
    }
    if with_challenger:
        import pandas as pd  # type: ignore[import-untyped]

        frame = pd.DataFrame(X[train], columns=list(FEATURES))
        card = WoeScorecard.from_challenger(train_challenger(frame, y[train].astype(int), FEATURES, []))
        out["challenger"] = measures.summary(y[test], card.predict_pd(X[test]))
    return out


def train_pair(
    X: np.ndarray,
    y: np.ndarray,
    days: Sequence[dt.date],
    *,
    seed: int,
    trained_on: str,
    params: dict[str, Any] | None = None,
    with_challenger: bool = True,
    validate: bool = True,
    oot_fraction: float = 0.3,
    min_class_rows: int = 10,
    psi_bins: int = 10,
) -> Trained:
    """Validate out of time (unless ``validate`` is False), then fit both models on every row."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if len(days) != len(y) or X.shape != (len(y), len(FEATURES)):
        raise ValueError("one application day and one row of every catalogue feature per label")
    validation = (
        out_of_time_validation(
            X,
            y,
            days,
            oot_fraction=oot_fraction,
            min_class_rows=min_class_rows,
            seed=seed,
            params=params,
            with_challenger=with_challenger,
        )
        if validate
        else {"scheme": "not run"}
    )
    info = {
        "trained_on": trained_on,
        "rows": len(y),
        "bad_rate": round(float(y.mean()), 4) if len(y) else None,
        "applied_from": min(days).isoformat() if len(days) else None,
        "applied_to": max(days).isoformat() if len(days) else None,
        "validation": validation,
    }
    champion = build_artefact(X, y, params=params, seed=seed, psi_bins=psi_bins, metrics=info)
    challenger = build_challenger_artefact(X, y, metrics=info) if with_challenger else None
    return Trained(champion, challenger, validation)
