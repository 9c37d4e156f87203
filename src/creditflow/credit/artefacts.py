"""Model artefacts, versioned by what made them: ``version = sha256(data hash, feature hash, parameter
hash)[:16]``. Same data, same features, same parameters, same seed -> same version and, LightGBM being
run deterministically, the same model text (tested).

An artefact is JSON (no pickle, so loading one never runs code): the LightGBM model text, the Platt
calibration, the feature list and monotone constraints, the three hashes, the training metrics and
the PSI reference (fixed bin edges and training shares for each feature and for the score).

The challenger (the WoE scorecard) is an artefact of its own, kind ``challenger``, format
``creditflow-scorecard/1``: its bins, WoE values, coefficients and intercept as numbers
(`models.WoeScorecard`), versioned the same way from the same data and feature hashes and its own
parameter hash. The two are trained on the same rows and stored side by side; the challenger
shadow-scores the champion's decisions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from creditflow.credit.features import FEATURES, MONOTONE, catalogue_digest
from creditflow.credit.models import (
    CHALLENGER_PARAMS,
    CHAMPION_PARAMS,
    Champion,
    WoeScorecard,
    booster_from_string,
    train_challenger,
    train_champion,
)
from creditflow.credit.monitoring import reference_bins


def data_digest(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(np.nan_to_num(np.asarray(X, dtype=np.float64), nan=-1e300)).tobytes())
    h.update(np.ascontiguousarray(np.asarray(y, dtype=np.uint8)).tobytes())
    return h.hexdigest()


def params_digest(params: dict[str, Any], seed: int) -> str:
    return hashlib.sha256(json.dumps({"params": params, "seed": seed}, sort_keys=True).encode()).hexdigest()


@dataclass
class Artefact:
    version: str
    kind: str
    champion: Champion
    data_hash: str
    feature_hash: str
    params_hash: str
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "creditflow-model/1",
                "version": self.version,
                "kind": self.kind,
                "features": self.champion.features,
                "monotone": self.champion.monotone,
                "platt": list(self.champion.platt),
                "params": self.champion.params,
                "data_hash": self.data_hash,
                "feature_hash": self.feature_hash,
                "params_hash": self.params_hash,
                "metrics": self.metrics,
                "reference": self.reference,
                "model": self.champion.to_string(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Artefact:
        doc = json.loads(text)
        if doc.get("format") != "creditflow-model/1":
            raise ValueError("not a creditflow model artefact")
        champ = Champion(
            booster_from_string(doc["model"]),
            list(doc["features"]),
            (float(doc["platt"][0]), float(doc["platt"][1])),
            list(doc["monotone"]),
            dict(doc["params"]),
        )
        return cls(
            doc["version"],
            doc["kind"],
            champ,
            doc["data_hash"],
            doc["feature_hash"],
            doc["params_hash"],
            doc["metrics"],
            doc["reference"],
        )


def build_artefact(
    X: np.ndarray,
    y: np.ndarray,
    *,
    features: tuple[str, ...] = FEATURES,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    kind: str = "champion",
    metrics: dict[str, Any] | None = None,
    psi_bins: int = 10,
) -> Artefact:
    params = dict(params or {})
    champ = train_champion(X, y, features, monotone=MONOTONE, params=params, seed=seed)
    d_hash = data_digest(X, y)
    f_hash = catalogue_digest(features)
    p_hash = params_digest({**CHAMPION_PARAMS, **params}, seed)
    version = hashlib.sha256(f"{d_hash}:{f_hash}:{p_hash}".encode()).hexdigest()[:16]
    pd_train = champ.predict_pd(X)
    reference = {
        "features": {name: reference_bins(X[:, j], psi_bins) for j, name in enumerate(features)},
        "score": reference_bins(pd_train, psi_bins),
    }
    return Artefact(version, kind, champ, d_hash, f_hash, p_hash, dict(metrics or {}), reference)


@dataclass
class ChallengerArtefact:
    version: str
    scorecard: WoeScorecard
    data_hash: str
    feature_hash: str
    params_hash: str
    metrics: dict[str, Any] = field(default_factory=dict)
    kind: str = "challenger"

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "creditflow-scorecard/1",
                "version": self.version,
                "kind": self.kind,
                "data_hash": self.data_hash,
                "feature_hash": self.feature_hash,
                "params_hash": self.params_hash,
                "params": CHALLENGER_PARAMS,
                "metrics": self.metrics,
                "model": self.scorecard.to_dict(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ChallengerArtefact:
        doc = json.loads(text)
        if doc.get("format") != "creditflow-scorecard/1":
            raise ValueError("not a creditflow scorecard artefact")
        return cls(
            doc["version"],
            WoeScorecard.from_dict(doc["model"]),
            doc["data_hash"],
            doc["feature_hash"],
            doc["params_hash"],
            doc["metrics"],
            doc["kind"],
        )


def build_challenger_artefact(
    X: np.ndarray,
    y: np.ndarray,
    *,
    features: tuple[str, ...] = FEATURES,
    metrics: dict[str, Any] | None = None,
) -> ChallengerArtefact:
    """Fit the WoE scorecard (`models.train_challenger`) on the rows the champion is trained on and
    freeze it into numbers."""
    import pandas as pd  # type: ignore[import-untyped]

    frame = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=list(features))
    card = WoeScorecard.from_challenger(train_challenger(frame, np.asarray(y, dtype=int), features, []))
    d_hash = data_digest(X, y)
    f_hash = catalogue_digest(features)
    p_hash = params_digest({"challenger": CHALLENGER_PARAMS}, 0)
    version = hashlib.sha256(f"{d_hash}:{f_hash}:{p_hash}".encode()).hexdigest()[:16]
    return ChallengerArtefact(version, card, d_hash, f_hash, p_hash, dict(metrics or {}))


def load_artefact(text: str) -> Artefact | ChallengerArtefact:
    """A stored artefact of either kind, told apart by its ``format``."""
    fmt = json.loads(text).get("format")
    if fmt == "creditflow-scorecard/1":
        return ChallengerArtefact.from_json(text)
    return Artefact.from_json(text)
