"""The challenger as a stored artefact: the frozen WoE scorecard scores exactly as the fitted optbinning
scorecard, survives JSON, is versioned by what made it; the champion-vs-challenger report; the schema
of labelled applications; out-of-time validation on a day boundary."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from creditflow.credit import metrics
from creditflow.credit.artefacts import ChallengerArtefact, build_challenger_artefact, load_artefact
from creditflow.credit.decisions import load_policy
from creditflow.credit.features import FEATURES
from creditflow.credit.models import Challenger, WoeScorecard, train_challenger
from creditflow.credit.monitoring import challenger_report
from creditflow.credit.scorer import matrix, world_vectors
from creditflow.credit.simulate import simulate
from creditflow.credit.sources import FileRefused, parse_applications
from creditflow.credit.training import out_of_time_validation

TRAIN = simulate(600, 5)
TEST = simulate(300, 6)
X_TRAIN, Y_TRAIN = matrix(world_vectors(TRAIN)), TRAIN.bad.astype(int)
TEST_VECTORS = world_vectors(TEST)
X_TEST = matrix(TEST_VECTORS)


@pytest.fixture(scope="module")
def fitted() -> tuple[Challenger, WoeScorecard]:
    challenger = train_challenger(pd.DataFrame(X_TRAIN, columns=list(FEATURES)), Y_TRAIN, FEATURES, [])
    return challenger, WoeScorecard.from_challenger(challenger)


def test_frozen_scorecard_scores_as_the_fitted_optbinning_scorecard(fitted: tuple[Challenger, WoeScorecard]) -> None:
    challenger, card = fitted
    expected = challenger.predict_pd(pd.DataFrame(X_TEST, columns=list(FEATURES)))
    assert np.isnan(X_TEST).any(), "the test rows must exercise missing values"
    assert np.allclose(card.predict_pd(X_TEST), expected, rtol=0, atol=1e-12)
    for i, fv in enumerate(TEST_VECTORS):
        pd_row, contributions = card.pd_and_contributions(fv.values)
        assert abs(pd_row - expected[i]) < 1e-12
        logit = card.intercept + sum(contributions.values())
        assert abs(logit - math.log(expected[i] / (1 - expected[i]))) < 1e-9
    # the points add up to the scorecard's own score (optbinning rounds nothing here)
    points = challenger.points(pd.DataFrame(X_TEST, columns=list(FEATURES)))
    for i in range(20):
        mine = card.points(TEST_VECTORS[i].values)
        assert np.allclose([mine.get(f, 0.0) for f in FEATURES], points[i], atol=1e-9)


def test_challenger_artefact_round_trips_and_is_versioned() -> None:
    a = build_challenger_artefact(X_TRAIN, Y_TRAIN, metrics={"rows": len(Y_TRAIN)})
    b = load_artefact(a.to_json())
    assert isinstance(b, ChallengerArtefact) and b.version == a.version and b.kind == "challenger"
    assert np.array_equal(b.scorecard.predict_pd(X_TEST), a.scorecard.predict_pd(X_TEST))
    assert build_challenger_artefact(X_TRAIN, Y_TRAIN).version == a.version
    flipped = Y_TRAIN.copy()
    flipped[0] = 1 - flipped[0]
    assert build_challenger_artefact(X_TRAIN, flipped).version != a.version
    doc = json.loads(a.to_json())
    doc["model"]["bins"][0]["woe"] = doc["model"]["bins"][0]["woe"][:-1]
    with pytest.raises(ValueError, match="not consistent"):
        ChallengerArtefact.from_json(json.dumps(doc))


def test_shadow_decision_uses_the_same_policy_on_the_challengers_numbers(
    fitted: tuple[Challenger, WoeScorecard],
) -> None:
    from creditflow.credit.artefacts import build_artefact
    from creditflow.credit.scorer import Scorer

    _, card = fitted
    champion = build_artefact(X_TRAIN, Y_TRAIN, params={"num_boost_round": 40}, seed=1)
    challenger = ChallengerArtefact("c" * 16, card, "d", "f", "p")
    scorer = Scorer(champion, load_policy(), challenger)
    outcomes = set()
    for fv in TEST_VECTORS:
        shadow = scorer.shadow(fv, 2_000_000)
        decision, _ = scorer.decide(fv, 2_000_000)
        assert shadow is not None
        if decision.knockouts:  # knock-outs come first for both: same decline, no model consulted
            assert shadow.knockouts == decision.knockouts and shadow.pd is None
            continue
        pd_row, _ = card.pd_and_contributions(fv.values)
        assert shadow.pd == pd_row and shadow.reasons
        outcomes.add(shadow.outcome)
    assert {"approve", "decline"} <= outcomes
    assert Scorer(champion, load_policy()).shadow(TEST_VECTORS[0], 2_000_000) is None


def test_challenger_report_counts_agreement_and_judges_both_on_the_same_labels() -> None:
    report = challenger_report(
        ["approve", "approve", "decline", "refer", "decline"],
        [0.02, 0.05, 0.4, 0.095, None],
        ["approve", "decline", "decline", "approve", "decline"],
        [0.03, 0.2, 0.5, 0.05, None],
        [False, True, True, None, True],
    )
    assert report["decisions"] == 5 and report["model_decided"] == 4
    assert report["agreement"] == 0.5
    assert report["outcomes"]["approve"] == {"approve": 1, "refer": 0, "decline": 1}
    assert report["outcomes"]["refer"]["approve"] == 1
    assert report["approval_rate"] == {"champion": 0.5, "challenger": 0.5}
    # labelled and model-decided: rows 0-2; the challenger ranks them perfectly, the champion too
    assert report["labelled"]["champion"]["labelled"] == 3
    assert report["labelled"]["challenger"]["auc"] == 1.0
    empty = challenger_report([], [], [], [], [])
    assert empty["agreement"] is None and empty["labelled"]["champion"]["auc"] is None


def test_applications_schema_reports_every_bad_row() -> None:
    rows = [
        {"org_id": "shop-1", "applied_on": "2025-03-10", "bad_within_12m": "1", "requested_minor": "500"},
        {"org_id": "shop 2", "applied_on": "2025-13-01", "bad_within_12m": "yes", "requested_minor": ""},
        {"org_id": "shop-1", "applied_on": "2025-03-10", "bad_within_12m": "0", "requested_minor": ""},
    ]
    apps, errors = parse_applications(rows, "bad_within_12m")
    assert apps == []
    assert {(e.row, e.field) for e in errors} == {
        (2, "org_id"),
        (2, "applied_on"),
        (2, "bad_within_12m"),
        (3, "applied_on"),
    }
    good, none = parse_applications(rows[:1], "bad_within_12m")
    assert none == [] and good[0].bad and good[0].applied_on == dt.date(2025, 3, 10)
    with pytest.raises(FileRefused, match="no column 'defaulted'"):
        parse_applications(rows, "defaulted")
    with pytest.raises(FileRefused, match="no applications"):
        parse_applications([], "bad_within_12m")
    extra, errs = parse_applications([{**rows[0], "note": "x"}], "bad_within_12m")
    assert extra == [] and errs[0].field == "note"


def test_out_of_time_validation_holds_out_the_latest_days_whole() -> None:
    vectors = world_vectors(TRAIN)
    days = [fv.as_of for fv in vectors]
    result = out_of_time_validation(
        X_TRAIN, Y_TRAIN, days, oot_fraction=0.3, min_class_rows=10, seed=1, params={"num_boost_round": 40}
    )
    cutoff = dt.date.fromisoformat(result["cutoff"])
    assert result["test_rows"] == sum(d >= cutoff for d in days)
    assert result["train_rows"] == sum(d < cutoff for d in days)
    assert 0.2 < result["test_rows"] / len(days) < 0.45
    held_out = np.array([d >= cutoff for d in days])
    assert result["champion"]["bad_rate"] == round(float(Y_TRAIN[held_out].mean()), 4)
    assert 0.5 < result["champion"]["auc"] <= 1 and 0.5 < result["challenger"]["auc"] <= 1
    same_day = [days[0]] * len(days)
    skipped = out_of_time_validation(X_TRAIN, Y_TRAIN, same_day, oot_fraction=0.3, min_class_rows=10, seed=1)
    assert skipped["scheme"] == "skipped" and "earlier" in skipped["reason"]


def test_metrics_auc_of_the_challenger_beats_chance_on_a_fresh_world(fitted: tuple[Challenger, WoeScorecard]) -> None:
    _, card = fitted
    y = TEST.bad.astype(bool)
    assert metrics.auc(y, card.predict_pd(X_TEST)) > 0.65
    # a feature the scorecard dropped (IV below the floor) never moves its PD
    dropped = [f for f in FEATURES if f not in {b.name for b in card.bins}]
    if dropped:
        fv = TEST_VECTORS[0]
        moved = dataclasses.replace(fv, values={**fv.values, dropped[0]: 1e9})
        assert card.pd_and_contributions(moved.values)[0] == card.pd_and_contributions(fv.values)[0]
