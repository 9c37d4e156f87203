"""The runtime scorer: features -> calibrated PD and per-feature contributions in ONE LightGBM call
(``pred_contrib`` sums to the margin, so the PD comes from the same numbers as the reasons), then the
decision engine. Also the training set of a simulated world.

One decision is one row: it goes to LightGBM as a 2-D float64 numpy array (no DataFrame) with
``num_threads=1``, so a single prediction runs on the calling thread and never waits for OpenMP
worker threads (which compete for the same cores); batch scoring keeps the model's threads.
The model and the policy are immutable and loaded once per process.

With a challenger (`artefacts.ChallengerArtefact`), `shadow` decides the same application by the same
policy on the challenger's PD and reasons; the champion's decision is the one that counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from creditflow.credit.artefacts import Artefact, ChallengerArtefact
from creditflow.credit.decisions import CreditDecision, Policy, decide, knockouts
from creditflow.credit.features import FEATURES, FeatureVector, compute_features
from creditflow.credit.simulate import World


@dataclass
class Scored:
    pd: float
    contributions: dict[str, float]


class Scorer:
    def __init__(self, artefact: Artefact, policy: Policy, challenger: ChallengerArtefact | None = None):
        self.artefact = artefact
        self.policy = policy
        self.challenger = challenger
        self.features = artefact.champion.features
        self._booster = artefact.champion.booster
        self._a, self._b = artefact.champion.platt

    def score(self, fv: FeatureVector) -> Scored:
        row = np.array([[fv.values[n] for n in self.features]], dtype=np.float64)
        contrib = np.asarray(self._booster.predict(row, pred_contrib=True, num_threads=1), dtype=float)[0]
        margin = float(contrib.sum())
        pd = 1.0 / (1.0 + math.exp(-(self._a * margin + self._b)))
        return Scored(pd, {n: self._a * float(c) for n, c in zip(self.features, contrib[:-1], strict=True)})

    def decide(
        self, fv: FeatureVector, requested_minor: int, product: str = "pure_credit"
    ) -> tuple[CreditDecision, Scored | None]:
        if knockouts(fv, self.policy):
            return decide(fv, None, None, self.policy, requested_minor, product), None
        scored = self.score(fv)
        return decide(fv, scored.pd, scored.contributions, self.policy, requested_minor, product), scored

    @property
    def challenger_version(self) -> str | None:
        return None if self.challenger is None else self.challenger.version

    def shadow(self, fv: FeatureVector, requested_minor: int, product: str = "pure_credit") -> CreditDecision | None:
        """The challenger's decision of the same application (None without a challenger)."""
        if self.challenger is None:
            return None
        if knockouts(fv, self.policy):
            return decide(fv, None, None, self.policy, requested_minor, product)
        pd, contributions = self.challenger.scorecard.pd_and_contributions(fv.values)
        return decide(fv, pd, contributions, self.policy, requested_minor, product)

    def batch_pd(self, X: np.ndarray) -> np.ndarray:
        return self.artefact.champion.predict_pd(X)


def world_vectors(world: World) -> list[FeatureVector]:
    return [compute_features(world.firms[i], world.observations(i), world.as_of(i)) for i in range(world.n)]


def matrix(vectors: list[FeatureVector], names: tuple[str, ...] = FEATURES) -> np.ndarray:
    return np.array([[fv.values[n] for n in names] for fv in vectors], dtype=np.float64)
