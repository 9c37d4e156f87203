"""Data credit on a real store (SQLite, and PostgreSQL when CREDITFLOW_TEST_PG_URL is set): imports with
row-level errors that change nothing, reproducible versioned training, decisions from stored data with
their snapshot, the financing hook, monitoring, the bring-your-own CSV command and the HTTP API."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from typer.testing import CliRunner

import creditflow.credit.tables  # noqa: F401  (registers the credit tables on the shared metadata)
from conftest import onboard
from creditflow.bootstrap import App
from creditflow.cli.credit import credit_cli
from creditflow.credit.service import CreditService
from creditflow.credit.simulate import simulate
from creditflow.credit.tables import credit_decisions, credit_observations
from creditflow.http.app import create_app
from creditflow.kernel.errors import NotFound
from creditflow.migrations.schema import metadata

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SMALL = {"num_boost_round": 60}
TRAIN = simulate(600, 5)


@pytest.fixture
def credit(app: App) -> CreditService:
    service = CreditService(app.engine, app.settings, app.clock)
    from creditflow.credit.artefacts import build_artefact
    from creditflow.credit.scorer import matrix, world_vectors

    service.store_model(build_artefact(matrix(world_vectors(TRAIN)), TRAIN.bad.astype(int), params=SMALL, seed=3))
    return service


def test_schema_matches_the_migration(app: App) -> None:
    with app.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if "credit_" in repr(d)] == []


def test_import_with_a_bad_row_changes_nothing_then_imports(credit: CreditService, app: App) -> None:
    bad = b"org_id,period,shipments,on_time_rate\nshop-1,2025-01,10,0.9\nshop-1,2025-02,ten,1.5\n"
    report = credit.import_file("logistics", bad, "logistics.csv")
    assert not report.ok and {(e.row, e.field) for e in report.errors} == {(2, "shipments"), (2, "on_time_rate")}
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(credit_observations)).scalar() == 0
    good = b"org_id,period,shipments,on_time_rate\nshop-1,2025-01,10,0.9\nshop-1,2025-02,12,0.95\n"
    assert credit.import_file("logistics", good, "logistics.csv").imported == 4
    again = credit.import_file("logistics", good, "logistics.csv")
    assert (again.imported, again.unchanged) == (0, 4)
    changed = credit.import_file("logistics", good.replace(b"0.95", b"0.5"), "logistics.csv")
    assert not changed.ok and "imported before" in changed.errors[0].message


def test_decision_from_stored_data_records_snapshot_model_and_hash(credit: CreditService, app: App) -> None:
    world = simulate(40, 9)
    ids = credit.load_world(world)
    seen = set()
    for i in range(world.n):
        record = credit.decide(ids[i], 2_000_000, as_of=world.as_of(i))
        seen.add(record.decision.outcome)
        stored = credit.decision(record.id)
        assert stored["model_version"] == credit.scorer().artefact.version
        assert (
            stored["feature_hash"] == record.feature_hash and stored["features"]["as_of"] == world.as_of(i).isoformat()
        )
        assert stored["reasons"] and all(r["message"] for r in stored["reasons"])
        # the stored features are exactly what the pipeline computes from the world itself
        from creditflow.credit.features import compute_features

        direct = compute_features(world.firms[i], world.observations(i), world.as_of(i))
        assert direct.digest() == record.feature_hash
    assert "approve" in seen and "decline" in seen
    with pytest.raises(NotFound):
        credit.decide("nobody", 1_000_000)
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(credit_decisions)).scalar() == world.n


def test_hook_has_the_financing_shape(credit: CreditService) -> None:
    world = simulate(5, 21)
    ids = credit.load_world(world)
    assert credit.credit_hook("unknown-holder", 1_000_000) is None
    assert credit.credit_hook(ids[0], 0) is None
    view = credit.credit_hook(ids[0], 1_000_000)
    assert view is not None and view.pd is not None and isinstance(view.approve, bool) and view.reasons


def test_training_is_reproducible_and_versioned(app: App) -> None:
    from creditflow.credit.artefacts import build_artefact
    from creditflow.credit.scorer import matrix, world_vectors

    world = simulate(300, 12)
    X, y = matrix(world_vectors(world)), world.bad.astype(int)
    a, b = build_artefact(X, y, params=SMALL, seed=1), build_artefact(X, y, params=SMALL, seed=1)
    assert a.version == b.version and a.champion.to_string() == b.champion.to_string()
    assert build_artefact(X, y, params=SMALL, seed=2).version != a.version
    y2 = y.copy()
    y2[0] = 1 - y2[0]
    assert build_artefact(X, y2, params=SMALL, seed=1).version != a.version


def test_monitoring_raises_psi_alarm_on_a_shifted_population(credit: CreditService) -> None:
    world = simulate(60, 31)
    ids = credit.load_world(world)
    scored = 0
    for i in range(world.n):
        first = credit.decide(ids[i], 2_000_000, as_of=world.as_of(i))
        credit.label(first.id, bool(world.bad[i]))
        scored += first.decision.pd is not None
    calm = credit.monitor()
    assert calm["decisions"] == world.n and "score" in calm
    # the same firms decided years later: their data has aged out, every live feature shifts to missing
    for i in range(world.n):
        credit.decide(ids[i], 2_000_000, as_of=world.as_of(i).replace(year=world.as_of(i).year + 3))
    shifted = credit.monitor()
    assert "sales_yoy_3m" in shifted["alarms"] and "sales_yoy_3m" not in calm["alarms"]
    assert calm["outcomes"]["labelled"] == scored > 0


@pytest.fixture
def client(app: App, credit: CreditService) -> Iterator[TestClient]:
    app.credit = credit  # this fixture's service carries a small trained model
    with TestClient(create_app(app)) as test_client:
        yield test_client


def test_api_application_end_to_end(app: App, credit: CreditService, client: TestClient) -> None:
    onboard(app, "factory", "bank", "other")
    world = simulate(3, 41)
    credit.load_world(world, [0], names={0: ("factory", "Factory")})
    h = {org: {"Authorization": f"Bearer {app.access.create_key(org)}"} for org in ("factory", "bank", "other")}
    response = client.post("/v1/credit/applications", json={"requested_minor": 3_000_000}, headers=h["factory"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcome"] in ("approve", "refer", "decline") and body["reasons"] and body["model_version"]
    got = client.get(f"/v1/credit/decisions/{body['decision_id']}", headers=h["factory"])
    assert got.status_code == 200 and got.json()["feature_hash"] == body["feature_hash"]
    # a bank sees only decisions it asked for under the business's authorisation (test_credit_consent.py)
    hidden = client.get(f"/v1/credit/decisions/{body['decision_id']}", headers=h["bank"])
    assert hidden.status_code == 404 and hidden.json()["code"] == "decision_not_found"
    other = client.post("/v1/credit/applications", json={"org_id": "factory", "requested_minor": 1}, headers=h["other"])
    assert other.status_code == 403
    bad = client.post("/v1/credit/applications", json={"requested_minor": -5}, headers=h["factory"])
    assert bad.status_code == 422 and bad.json()["field"] == "requested_minor"
    missing = client.post("/v1/credit/applications", json={"requested_minor": 100}, headers=h["other"])
    assert missing.status_code == 404 and missing.json()["code"] == "credit_profile_not_found"


def test_bring_your_own_csv(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    n = 400
    income = rng.normal(50, 15, n)
    city = rng.choice(["north", "south", "east"], n)
    risk = -0.06 * income + (city == "south") * 0.8 + rng.normal(0, 1, n)
    label = np.where(risk > np.quantile(risk, 0.75), "default", "paid")
    lines = ["id,income,city,month,status"]
    for i in range(n):
        inc = "" if i % 17 == 0 else f"{income[i]:.1f}"
        lines.append(f"row{i},{inc},{city[i]},{i // 40},{label[i]}")
    path = tmp_path / "loans.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        credit_cli,
        ["evaluate", "--csv", str(path), "--target", "status", "--positive", "default", "--folds", "3", "--json"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["champion"]["auc"] > 0.7 and doc["challenger"]["auc"] > 0.7
    assert doc["dropped"] == ["id"] and doc["categorical"] == ["city"] and doc["scheme"] == "3-fold"
    oot = runner.invoke(
        credit_cli,
        [
            "evaluate",
            "--csv",
            str(path),
            "--target",
            "status",
            "--positive",
            "default",
            "--time-col",
            "month",
            "--json",
        ],
    )
    assert oot.exit_code == 0, oot.output
    assert json.loads(oot.output)["scheme"].startswith("out-of-time")
    unnamed = runner.invoke(credit_cli, ["evaluate", "--csv", str(path), "--target", "status"])
    assert unnamed.exit_code == 3 and "--positive" in unnamed.output


def test_api_imports_a_data_source_row_by_row(app: App, credit: CreditService, client: TestClient) -> None:
    onboard(app, "operator", "factory")
    operator = {"Authorization": f"Bearer {app.access.create_key('operator')}"}
    factory = {"Authorization": f"Bearer {app.access.create_key('factory')}"}
    bad = b"org_id,period,shipments,on_time_rate\nshop-9,2025-01,10,0.9\nshop-9,2025-02,ten,1.5\n"
    refused = client.post("/v1/credit/sources/logistics/import?filename=l.csv", content=bad, headers=operator)
    assert refused.status_code == 422 and {e["row"] for e in refused.json()["errors"]} == {2}
    good = bad.replace(b"ten,1.5", b"12,0.95")
    assert client.post("/v1/credit/sources/logistics/import", content=good, headers=operator).status_code == 201
    again = client.post("/v1/credit/sources/logistics/import", content=good, headers=operator)
    assert again.status_code == 200 and again.json()["unchanged"] == 4
    assert client.post("/v1/credit/sources/logistics/import", content=good, headers=factory).status_code == 403
