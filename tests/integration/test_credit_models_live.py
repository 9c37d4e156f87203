"""Data credit models in use, on a real store (SQLite, and PostgreSQL when CREDITFLOW_TEST_PG_URL is set):
the fast single-decision path decides exactly as batch scoring of the same firms; the challenger is
stored beside the champion, shadow-scores every decision and is compared in monitoring; training on
data imported into the store (labelled applications) is the same model as training on the world it
came from, validated out of time; and the same through the CLI from files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import creditflow.credit.tables  # noqa: F401  (registers the credit tables on the shared metadata)
from creditflow.bootstrap import App
from creditflow.credit.decisions import decide, knockouts
from creditflow.credit.scorer import matrix, world_vectors
from creditflow.credit.service import CreditService
from creditflow.credit.simulate import World, simulate
from creditflow.credit.tables import credit_decisions, credit_models

SMALL = {"num_boost_round": 60}
TRAIN = simulate(600, 5)


def _applications_csv(world: World, ids: list[str] | None = None) -> bytes:
    lines = ["org_id,applied_on,bad_within_12m,requested_minor"]
    for i in range(world.n):
        org = world.firms[i].org_id if ids is None else ids[i]
        lines.append(f"{org},{world.as_of(i).isoformat()},{int(world.bad[i])},{int(world.requested_minor[i])}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def paired(app: App) -> CreditService:
    service = CreditService(app.engine, app.settings, app.clock)
    service.train_on_world(TRAIN, params=SMALL, validate=False)
    return service


def test_single_decision_from_the_store_equals_batch_scoring(app: App) -> None:
    """The fast path (one firm's rows from SQL -> features -> one-row LightGBM on one thread -> policy)
    gives the same features, PD, decision and reasons as scoring all firms at once from memory."""
    service = CreditService(app.engine, app.settings, app.clock)
    service.train_on_world(TRAIN, with_challenger=False, validate=False)  # the production parameters
    scorer = service.scorer()
    world = simulate(250, 77)
    ids = service.load_world(world)
    vectors = world_vectors(world)  # in memory, from the simulator's observation objects
    X = matrix(vectors)
    champion = scorer.artefact.champion
    a, b = champion.platt
    batch_contrib = np.asarray(champion.booster.predict(X, pred_contrib=True), dtype=float)  # all rows, all threads
    batch_pd = champion.predict_pd(X)  # the batch-scoring path (raw margins)
    decided = 0
    for i in range(world.n):
        requested = int(world.requested_minor[i])
        fv = service.features(ids[i], world.as_of(i))
        assert fv is not None and fv.digest() == vectors[i].digest()
        fast, _ = scorer.decide(fv, requested)
        if knockouts(vectors[i], scorer.policy):
            expected = decide(vectors[i], None, None, scorer.policy, requested)
        else:
            row = batch_contrib[i]
            pd = 1.0 / (1.0 + math.exp(-(a * float(row.sum()) + b)))
            contributions = {n: a * float(c) for n, c in zip(champion.features, row[:-1], strict=True)}
            expected = decide(vectors[i], pd, contributions, scorer.policy, requested)
            assert fast.pd is not None and abs(fast.pd - batch_pd[i]) < 1e-12
            decided += 1
        assert fast.to_json() == expected.to_json()
        assert fast == expected
    assert decided > world.n // 2


def test_challenger_is_stored_beside_the_champion_and_shadow_scores(paired: CreditService, app: App) -> None:
    models = paired.models()
    active = {m["kind"]: m for m in models if m["active"]}
    assert set(active) == {"champion", "challenger"}
    assert active["champion"]["metrics"]["trained_on"] == active["challenger"]["metrics"]["trained_on"]
    world = simulate(60, 31)
    ids = paired.load_world(world)
    records = []
    for i in range(world.n):
        record = paired.decide(ids[i], 2_000_000, as_of=world.as_of(i))
        records.append(record)
        paired.label(record.id, bool(world.bad[i]))
    scorer = paired.scorer()
    assert scorer.challenger is not None
    for i, record in enumerate(records):
        stored = paired.decision(record.id)
        shadow = stored["challenger"]
        assert shadow["version"] == active["challenger"]["version"]
        expected = scorer.shadow(world_vectors(world)[i], 2_000_000)
        assert expected is not None and shadow["outcome"] == expected.outcome
        assert (shadow["pd"] is None) == (record.decision.pd is None)
        if shadow["pd"] is not None:
            assert abs(shadow["pd"] - expected.pd) < 1e-12  # type: ignore[operator]
    report = paired.monitor()["challenger"]
    assert report["version"] == active["challenger"]["version"] and report["decisions"] == world.n
    modelled = [r for r in records if r.decision.pd is not None]
    assert report["model_decided"] == len(modelled)
    agree = sum(r.decision.outcome == paired.decision(r.id)["challenger"]["outcome"] for r in modelled) / len(modelled)
    assert report["agreement"] == round(agree, 4)
    assert sum(sum(row.values()) for row in report["outcomes"].values()) == len(modelled)
    assert report["labelled"]["champion"]["labelled"] == report["labelled"]["challenger"]["labelled"] == len(modelled)
    # another process (a fresh service on the same store) loads the same pair from the database
    again = CreditService(app.engine, app.settings, app.clock)
    fresh = again.scorer()
    assert fresh.artefact.version == scorer.artefact.version and fresh.challenger_version == scorer.challenger_version
    fv = again.features(ids[0], world.as_of(0))
    assert fv is not None
    first, second = fresh.shadow(fv, 2_000_000), scorer.shadow(fv, 2_000_000)
    assert first is not None and second is not None and first.to_json() == second.to_json()


def test_training_on_imported_data_is_the_model_of_that_data(app: App) -> None:
    service = CreditService(app.engine, app.settings, app.clock)
    world = simulate(400, 12)
    ids = service.load_world(world)  # stored as if imported, up to each firm's application
    report = service.train_on_applications(_applications_csv(world, ids), "applications.csv", params=SMALL)
    assert report.ok, report.to_json()
    trained = report.trained
    assert trained is not None and trained.challenger is not None
    # the same rows as the in-memory world: the stored data reproduce the features point in time
    direct = service.train_on_world(world, params=SMALL, validate=False, activate=False)
    assert trained.champion.version == direct.champion.version
    assert direct.challenger is not None and trained.challenger.version == direct.challenger.version
    validation = trained.validation
    assert validation["scheme"].startswith("out-of-time") and validation["test_rows"] > 0
    assert set(validation) >= {"champion", "challenger", "cutoff"}
    assert trained.champion.metrics["validation"] == validation
    assert service.scorer().artefact.version == trained.champion.version
    with app.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(credit_models)).scalar()
    # a bad file trains nothing: an applicant without data, a bad label; every bad row is listed
    bad = _applications_csv(world, ids).replace(f"{ids[3]},".encode(), b"nobody-here,", 1)
    bad = bad.replace(b",1,", b",maybe,", 1)
    refused = service.train_on_applications(bad, "applications.csv", params=SMALL)
    assert not refused.ok and refused.trained is None
    assert {e.field for e in refused.errors} == {"bad_within_12m"}  # the label error stops it before reading data
    unknown = _applications_csv(world, ids).replace(f"{ids[3]},".encode(), b"nobody-here,", 1)
    missing = service.train_on_applications(unknown, "applications.csv", params=SMALL)
    assert [(e.row, e.field) for e in missing.errors] == [(4, "org_id")]
    one_class = b"org_id,applied_on,bad_within_12m\n" + f"{ids[0]},{world.as_of(0)},0\n".encode()
    assert "at least" in (service.train_on_applications(one_class, "a.csv").file_error or "")
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(credit_models)).scalar() == stored
        assert conn.execute(select(func.count()).select_from(credit_decisions)).scalar() == 0


def test_cli_trains_on_imported_files_and_reports_the_challenger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import CLI_SECRETS_ENV
    from creditflow.cli.main import cli

    monkeypatch.setenv("CREDITFLOW_KDF_OPSLIMIT", "1")
    monkeypatch.setenv("CREDITFLOW_KDF_MEMLIMIT_BYTES", str(8 * 1024 * 1024))
    for name, value in CLI_SECRETS_ENV.items():
        monkeypatch.setenv(name, value)
    url = f"sqlite:///{tmp_path / 'credit.db'}"
    files = tmp_path / "world"
    runner = CliRunner()
    made = runner.invoke(cli, ["simulate", "credit", "--firms", "400", "--seed", "23", "--out", str(files), "--json"])
    assert made.exit_code == 0, made.output
    for name in ("firms", "platform", "store", "logistics", "utilities", "social_insurance", "tax", "sentiment"):
        done = runner.invoke(cli, ["credit", "import", str(files / f"{name}.csv"), "--source", name, "--db", url])
        assert done.exit_code == 0, (name, done.output)
    trained = runner.invoke(
        cli, ["credit", "train", "--applications", str(files / "applications.csv"), "--db", url, "--json"]
    )
    assert trained.exit_code == 0, trained.output
    doc = json.loads(trained.output)
    assert doc["ok"] and doc["rows"] == 400 and doc["champion"]["version"] and doc["challenger"]["version"]
    assert doc["trained_on"].startswith("imported data: 400 labelled applications")
    assert doc["validation"]["scheme"] != "not run"
    models = json.loads(runner.invoke(cli, ["credit", "models", "--db", url, "--json"]).output)
    assert {m["kind"] for m in models if m["active"]} == {"champion", "challenger"}
    table = runner.invoke(cli, ["credit", "models", "--db", url])
    assert table.exit_code == 0 and doc["challenger"]["version"] in table.output
    firm = (files / "applications.csv").read_text().splitlines()[1].split(",")[0]
    decision = runner.invoke(cli, ["credit", "decide", firm, "--amount-minor", "2000000", "--db", url, "--json"])
    assert decision.exit_code == 0, decision.output
    decision_id = json.loads(decision.output)["decision_id"]
    assert runner.invoke(cli, ["credit", "label", decision_id, "--bad", "--db", url]).exit_code == 0
    assert runner.invoke(cli, ["credit", "label", "no-such-decision", "--good", "--db", url]).exit_code == 2
    monitor = json.loads(runner.invoke(cli, ["credit", "monitor", "--db", url, "--json"]).output)
    assert monitor["challenger"]["version"] == doc["challenger"]["version"] and monitor["challenger"]["decisions"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("org_id,applied_on,bad_within_12m\nnobody,2025-01-01,2\n", encoding="utf-8")
    refused = runner.invoke(cli, ["credit", "train", "--applications", str(bad), "--db", url])
    assert refused.exit_code == 4 and "bad_within_12m" in refused.output
    wrong = runner.invoke(
        cli, ["credit", "train", "--applications", str(bad), "--target", "defaulted", "--db", url, "--json"]
    )
    assert wrong.exit_code == 3 and "defaulted" in json.loads(wrong.output)["file_error"]
