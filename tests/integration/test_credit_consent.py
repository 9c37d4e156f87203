"""Consent for credit look-ups and four eyes on manual decisions (issue 13), through the API on SQLite and
PostgreSQL. The abuse first: a bank without a live authorisation (none, expired, revoked, given to another
bank) is refused with 403 ``credit_authorisation_required`` and nothing is written; a scope without the
features hides every feature value; another party's authorisation answers as a missing one; one person
cannot be both eyes, and an organisation-wide key is no person. Then what the business sees: who looked,
when, why and what they saw, and a notification to its admins."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import onboard, table_rows
from creditflow.bootstrap import App
from creditflow.credit import store as credit_store
from creditflow.credit.consent import redact_reason
from creditflow.credit.features import SPECS
from creditflow.credit.service import CreditService
from creditflow.credit.settings import CreditSettings
from creditflow.credit.simulate import simulate
from creditflow.credit.tables import credit_authorisations, credit_decisions, credit_manual_decisions, credit_queries
from creditflow.http.app import create_app
from creditflow.identity.roles import UserRole
from creditflow.identity.tables import notifications
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.uscc import make_uscc

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TRAIN = simulate(300, 5)
CREDIT_TABLES = (credit_decisions, credit_queries, credit_authorisations, credit_manual_decisions, notifications)
DAY_MS = 86_400_000


@pytest.fixture
def credit(app: App) -> CreditService:
    from creditflow.credit.artefacts import build_artefact
    from creditflow.credit.scorer import matrix, world_vectors

    service = CreditService(app.engine, app.settings, app.clock)
    artefact = build_artefact(matrix(world_vectors(TRAIN)), TRAIN.bad.astype(int), params={"num_boost_round": 20})
    service.store_model(artefact)
    return service


class Cast:
    """Organisation keys and personal tokens: ``h[name]`` headers for each."""

    def __init__(self, app: App):
        onboard(app, "factory", "steel", "bank", "auditor")
        app.ledger.register_organisation("bank2", "Second Bank", "bank", make_uscc("91320300134780042"))
        self.h: dict[str, dict[str, str]] = {}
        for org in ("factory", "steel", "bank", "bank2", "auditor"):
            self.h[org] = {"Authorization": f"Bearer {app.access.create_key(org)}"}
        people = {
            "factory.admin": ("factory", (UserRole.ADMIN,)),
            "factory.maker": ("factory", (UserRole.MAKER,)),
            "steel.admin": ("steel", (UserRole.ADMIN,)),
            "bank.anna": ("bank", (UserRole.MAKER, UserRole.APPROVER)),
            "bank.bo": ("bank", (UserRole.APPROVER,)),
            "bank.maker": ("bank", (UserRole.MAKER,)),
            "bank2.cai": ("bank2", (UserRole.MAKER, UserRole.APPROVER)),
        }
        for user_id, (org, roles) in people.items():
            app.people.add(org, user_id, user_id.title(), roles=roles)
            self.h[user_id] = {"Authorization": f"Bearer {app.access.create_key(org, 'mine', user_id=user_id)}"}


@pytest.fixture
def cast(app: App) -> Cast:
    return Cast(app)


@pytest.fixture
def client(app: App, credit: CreditService) -> Iterator[TestClient]:
    app.credit = credit
    with TestClient(create_app(app)) as test_client:
        yield test_client


@pytest.fixture
def profiled(credit: CreditService) -> str:
    """The factory has a credit profile (so an application is decided)."""
    world = simulate(3, 41)
    credit.load_world(world, [0], names={0: ("factory", "Factory")})
    return "factory"


def grant(
    client: TestClient, cast: Cast, *, bank: str = "bank", scope: str = "decision", days: int = 30
) -> dict[str, Any]:
    body = {"bank_id": bank, "purpose_code": "loan_application", "purpose": "working capital", "scope": scope}
    response = client.post(
        "/v1/credit/authorisations", json={**body, "valid_days": days}, headers=cast.h["factory.admin"]
    )
    assert response.status_code == 201, response.text
    granted: dict[str, Any] = response.json()
    assert granted["status"] == "live" and granted["granted_by"] == "factory.admin"
    assert granted["granted_auth"] == "personal_token"
    return granted


def apply(client: TestClient, headers: dict[str, str], org_id: str = "factory") -> Any:
    return client.post(
        "/v1/credit/applications", json={"org_id": org_id, "requested_minor": 3_000_000}, headers=headers
    )


def refused_without_trace(app: App, response: Any, status: int, code: str, before: Any) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert table_rows(app, CREDIT_TABLES) == before, "a refused look-up wrote something"


# --- abuse -------------------------------------------------------------------------------------------------


def test_a_bank_without_an_authorisation_is_refused_and_nothing_is_written(
    app: App, client: TestClient, cast: Cast, profiled: str
) -> None:
    before = table_rows(app, CREDIT_TABLES)
    refused_without_trace(app, apply(client, cast.h["bank"]), 403, "credit_authorisation_required", before)
    refused_without_trace(app, apply(client, cast.h["bank.anna"]), 403, "credit_authorisation_required", before)
    # a business that does not exist answers the same: the refusal reveals nothing
    refused_without_trace(
        app, apply(client, cast.h["bank"], "no-such-firm"), 403, "credit_authorisation_required", before
    )
    # another business is not a bank: it may ask only about itself
    refused_without_trace(app, apply(client, cast.h["steel"]), 403, "not_allowed", before)


def test_an_authorisation_for_another_bank_does_not_let_this_one_in(
    app: App, client: TestClient, cast: Cast, profiled: str
) -> None:
    grant(client, cast, bank="bank2")
    before = table_rows(app, CREDIT_TABLES)
    refused_without_trace(app, apply(client, cast.h["bank"]), 403, "credit_authorisation_required", before)
    assert apply(client, cast.h["bank2"]).status_code == 200


def test_an_expired_authorisation_refuses_applications_and_reads(
    app: App, client: TestClient, cast: Cast, profiled: str, clock: ManualClock
) -> None:
    grant(client, cast, days=1)
    decided = apply(client, cast.h["bank"])
    assert decided.status_code == 200, decided.text
    decision_id = decided.json()["decision_id"]
    clock.advance(DAY_MS)
    before = table_rows(app, CREDIT_TABLES)
    refused_without_trace(app, apply(client, cast.h["bank"]), 403, "credit_authorisation_required", before)
    gone = client.get(f"/v1/credit/decisions/{decision_id}", headers=cast.h["bank"])
    refused_without_trace(app, gone, 404, "decision_not_found", before)
    [listed] = client.get("/v1/credit/authorisations", headers=cast.h["factory"]).json()["items"]
    assert listed["status"] == "expired"


def test_a_revoked_authorisation_refuses_at_once_and_cannot_be_revoked_twice(
    app: App, client: TestClient, cast: Cast, profiled: str
) -> None:
    granted = grant(client, cast)
    decision_id = apply(client, cast.h["bank"]).json()["decision_id"]
    # an organisation-wide key of the business, or a person without the admin role, may not revoke
    path = f"/v1/credit/authorisations/{granted['authorisation_id']}/revoke"
    assert client.post(path, headers=cast.h["factory"]).json()["code"] == "person_required"
    assert client.post(path, headers=cast.h["factory.maker"]).json()["code"] == "user_role_not_allowed"
    revoked = client.post(path, headers=cast.h["factory.admin"])
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_by"] == "factory.admin"
    before = table_rows(app, CREDIT_TABLES)
    refused_without_trace(app, apply(client, cast.h["bank"]), 403, "credit_authorisation_required", before)
    gone = client.get(f"/v1/credit/decisions/{decision_id}", headers=cast.h["bank"])
    refused_without_trace(app, gone, 404, "decision_not_found", before)
    again = client.post(path, headers=cast.h["factory.admin"])
    refused_without_trace(app, again, 409, "credit_authorisation_revoked", before)


def test_another_partys_authorisation_answers_as_a_missing_one(app: App, client: TestClient, cast: Cast) -> None:
    granted = grant(client, cast)
    path = f"/v1/credit/authorisations/{granted['authorisation_id']}/revoke"
    before = table_rows(app, CREDIT_TABLES)
    for who in ("steel.admin", "bank", "bank.anna", "bank2"):
        response = client.post(path, headers=cast.h[who])
        refused_without_trace(app, response, 404, "credit_authorisation_not_found", before)
    missing = client.post(f"/v1/credit/authorisations/{uuid.uuid4()}/revoke", headers=cast.h["factory.admin"])
    refused_without_trace(app, missing, 404, "credit_authorisation_not_found", before)
    # each sees its own: the business its grants, the bank those it received, others nothing
    assert [
        a["authorisation_id"] for a in client.get("/v1/credit/authorisations", headers=cast.h["bank"]).json()["items"]
    ] == [granted["authorisation_id"]]
    assert client.get("/v1/credit/authorisations", headers=cast.h["bank2"]).json()["items"] == []
    assert client.get("/v1/credit/authorisations", headers=cast.h["steel"]).json()["items"] == []
    assert len(client.get("/v1/credit/authorisations", headers=cast.h["auditor"]).json()["items"]) == 1


def test_granting_needs_an_admin_person_of_a_business_a_bank_and_a_bounded_expiry(
    app: App, client: TestClient, cast: Cast
) -> None:
    body = {"bank_id": "bank", "purpose_code": "loan_application", "purpose": "loan", "valid_days": 30}
    before = table_rows(app, CREDIT_TABLES)
    cases = [
        ("factory", body, 403, "person_required"),
        ("factory.maker", body, 403, "user_role_not_allowed"),
        ("bank.anna", body, 403, "role_not_allowed"),
        ("factory.admin", {**body, "valid_days": 367}, 422, "authorisation_too_long"),
        ("factory.admin", {**body, "bank_id": "steel"}, 404, "bank_not_found"),
        ("factory.admin", {**body, "bank_id": "nobody"}, 404, "bank_not_found"),
        ("factory.admin", {**body, "purpose": "x" * 501}, 422, "validation_error"),
    ]
    for who, payload, status, code in cases:
        response = client.post("/v1/credit/authorisations", json=payload, headers=cast.h[who])
        assert response.status_code == status, (who, response.text)
        if code != "validation_error":
            refused_without_trace(app, response, status, code, before)
    assert table_rows(app, CREDIT_TABLES) == before


def test_the_decision_scope_hides_every_feature_value(app: App, client: TestClient, cast: Cast, profiled: str) -> None:
    grant(client, cast, scope="decision")
    answer = apply(client, cast.h["bank.anna"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scope"] == "decision" and body["features"] is None
    assert body["outcome"] in ("approve", "refer", "decline") and body["score"] is not None and body["reasons"]
    whole = app.credit.decision(body["decision_id"])  # what the platform stored
    assert len(body["reasons"]) == len(whole["reasons"])
    for shown, stored in zip(body["reasons"], whole["reasons"], strict=True):
        assert set(shown) <= {"code", "message", "contribution"} and shown["code"] == stored["code"]
        if shown["code"] in SPECS:  # a feature's reason: no number but those of the feature's own name
            allowed = set(re.findall(r"\d+", SPECS[shown["code"]].description))
            assert set(re.findall(r"\d+", shown["message"])) <= allowed, (shown, stored)
    read = client.get(f"/v1/credit/decisions/{body['decision_id']}", headers=cast.h["bank"]).json()
    assert read["features"] is None and read["scope"] == "decision" and read["reasons"] == body["reasons"]
    # the business itself sees everything
    own = client.get(f"/v1/credit/decisions/{body['decision_id']}", headers=cast.h["factory"]).json()
    assert own["features"] == whole["features"] and own["asked_by"] == "bank"


def test_a_reason_loses_its_quoted_value() -> None:
    quoted = {"code": "sales_yoy_3m", "message": "sales fell 37.2% year on year", "contribution": 0.41}
    redacted = redact_reason(quoted, {})
    assert "37" not in redacted["message"] and redacted["contribution"] == 0.41
    knocked = redact_reason({"code": "too_young", "message": "the business is 4 months old"}, {"too_young": "age"})
    assert "4" not in knocked["message"]


def test_the_features_scope_shows_them(app: App, client: TestClient, cast: Cast, profiled: str) -> None:
    grant(client, cast, scope="decision_and_features")
    body = apply(client, cast.h["bank"]).json()
    assert body["scope"] == "decision_and_features" and body["features"]["values"]


# --- what the business sees ---------------------------------------------------------------------------


def test_the_business_sees_who_looked_when_and_why_and_its_admins_are_told(
    app: App, client: TestClient, cast: Cast, profiled: str, clock: ManualClock
) -> None:
    granted = grant(client, cast)
    decision_id = apply(client, cast.h["bank.anna"]).json()["decision_id"]
    clock.advance(1000)
    assert client.get(f"/v1/credit/decisions/{decision_id}", headers=cast.h["bank"]).status_code == 200
    log = client.get("/v1/credit/queries", headers=cast.h["factory"]).json()["items"]
    assert [(q["kind"], q["asker_id"], q["user_id"], q["auth"]) for q in log] == [
        ("read", "bank", None, "api_key"),
        ("application", "bank", "bank.anna", "personal_token"),
    ]
    assert {(q["authorisation_id"], q["purpose"], q["scope"], q["decision_id"]) for q in log} == {
        (granted["authorisation_id"], "working capital", "decision", decision_id)
    }
    assert len(client.get("/v1/credit/queries", headers=cast.h["bank"]).json()["items"]) == 2  # its own look-ups
    assert client.get("/v1/credit/queries", headers=cast.h["bank2"]).json()["items"] == []
    assert client.get("/v1/credit/queries", headers=cast.h["steel"]).json()["items"] == []
    [notice] = [n for n in app.notices.of("factory").items if n.kind == "credit_queried"]
    assert notice.data["bank_id"] == "bank" and notice.data["decision_id"] == decision_id
    # the business asking about itself needs no authorisation and is not a "look-up by another party"
    own = apply(client, cast.h["factory"])
    assert own.status_code == 200 and own.json()["features"] is not None
    assert len(client.get("/v1/credit/queries", headers=cast.h["factory"]).json()["items"]) == 2
    # an overseer may ask, and is logged (no authorisation)
    clock.advance(1000)
    assert apply(client, cast.h["auditor"]).status_code == 200
    top = client.get("/v1/credit/queries", headers=cast.h["factory"]).json()["items"][0]
    assert (top["asker_id"], top["asker_role"], top["authorisation_id"]) == ("auditor", "auditor", None)


# --- four eyes -------------------------------------------------------------------------------------------


def stored_decision(app: App, org_id: str, outcome: str, asked_by: str | None) -> str:
    """A decision as `CreditService.decide` records it, with the outcome the test needs."""
    decision_id = str(uuid.uuid4())
    reasons = [{"code": "referred", "message": "in the review band"}]
    with app.engine.begin() as conn:
        credit_store.insert_decision(
            conn,
            {
                "id": decision_id,
                "org_id": org_id,
                "product": "pure_credit",
                "outcome": outcome,
                "pd": 0.08,
                "score": 610,
                "requested_minor": 3_000_000,
                "limit_minor": 0,
                "granted_minor": 0,
                "rate_bps": None,
                "reasons_json": json.dumps(reasons),
                "knockouts_json": "[]",
                "policy_version": "test",
                "policy_sha256": "0" * 64,
                "model_version": "test",
                "feature_hash": "0" * 64,
                "features_json": json.dumps({"values": {"sales_12m": 1234567.0}}),
                "as_of": dt.date(2026, 3, 2),
                "decided_ts_ms": app.clock.now_ms(),
                "decision_us": 500,
                "asked_by": asked_by,
            },
        )
    return decision_id


APPROVE = {"action": "approve", "granted_minor": 2_000_000, "rate_bps": 650, "note": "two core buyers on file"}


def test_four_eyes_one_person_cannot_be_both_and_a_key_is_nobody(app: App, client: TestClient, cast: Cast) -> None:
    grant(client, cast)
    decision_id = stored_decision(app, "factory", "refer", "bank")
    manual = f"/v1/credit/decisions/{decision_id}/manual"
    before = table_rows(app, CREDIT_TABLES)
    refused_without_trace(
        app, client.post(manual, json=APPROVE, headers=cast.h["bank"]), 403, "person_required", before
    )
    proposed = client.post(manual, json=APPROVE, headers=cast.h["bank.anna"])
    assert proposed.status_code == 201 and proposed.json()["status"] == "proposed", proposed.text
    assert client.get(f"/v1/credit/decisions/{decision_id}", headers=cast.h["bank"]).json()["final_outcome"] == "refer"
    before = table_rows(app, CREDIT_TABLES)
    cases = [
        ("bank.anna", 409, "four_eyes_same_person"),
        ("bank", 403, "person_required"),
        ("bank.maker", 403, "user_role_not_allowed"),
        ("bank2.cai", 404, "decision_not_found"),
        ("factory.admin", 404, "decision_not_found"),
    ]
    for who, status, code in cases:
        refused_without_trace(app, client.post(f"{manual}/confirm", headers=cast.h[who]), status, code, before)
    again = client.post(manual, json=APPROVE, headers=cast.h["bank.bo"])
    refused_without_trace(app, again, 409, "manual_decision_exists", before)
    confirmed = client.post(f"{manual}/confirm", headers=cast.h["bank.bo"])
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "effective", confirmed.text
    shown = client.get(f"/v1/credit/decisions/{decision_id}", headers=cast.h["bank"]).json()
    assert shown["outcome"] == "refer" and shown["final_outcome"] == "approve"
    m = shown["manual"]
    assert (m["proposed_by"], m["proposed_auth"], m["confirmed_by"], m["confirmed_auth"]) == (
        "bank.anna",
        "personal_token",
        "bank.bo",
        "personal_token",
    )
    assert m["proposed_ts_ms"] and m["confirmed_ts_ms"] and m["granted_minor"] == 2_000_000
    # the business sees the bank's decision about it
    assert client.get(f"/v1/credit/decisions/{decision_id}", headers=cast.h["factory"]).json()["manual"] == m


def test_manual_decisions_are_for_referrals_and_overriding_declines(app: App, client: TestClient, cast: Cast) -> None:
    approved = stored_decision(app, "factory", "approve", "bank")
    declined = stored_decision(app, "factory", "decline", "bank")
    own = stored_decision(app, "factory", "refer", None)  # the factory applied for itself
    before = table_rows(app, CREDIT_TABLES)
    decline = {"action": "decline", "note": "declined anyway"}
    cases = [
        (approved, APPROVE, 409, "manual_decision_not_allowed"),
        (declined, decline, 409, "manual_decision_not_allowed"),
        (own, APPROVE, 404, "decision_not_found"),
        (declined, {**APPROVE, "granted_minor": 9_000_000}, 422, "invalid_input"),
    ]
    for decision_id, body, status, code in cases:
        response = client.post(f"/v1/credit/decisions/{decision_id}/manual", json=body, headers=cast.h["bank.anna"])
        refused_without_trace(app, response, status, code, before)
    # rejecting a proposal lets a new one be made
    manual = f"/v1/credit/decisions/{declined}/manual"
    assert client.post(manual, json=APPROVE, headers=cast.h["bank.anna"]).status_code == 201
    assert client.post(f"{manual}/reject", headers=cast.h["bank.bo"]).json()["status"] == "rejected"
    assert client.post(f"{manual}/confirm", headers=cast.h["bank.bo"]).json()["code"] == "no_manual_proposal"
    assert client.post(manual, json=APPROVE, headers=cast.h["bank.bo"]).status_code == 201


def test_with_four_eyes_off_the_first_person_decides_alone(app: App, cast: Cast) -> None:
    alone = CreditService(app.engine, CreditSettings(credit_four_eyes=False), app.clock)
    decision_id = stored_decision(app, "factory", "refer", "bank")
    anna = app.access.authenticate(cast.h["bank.anna"]["Authorization"].split()[1])
    manual = alone.propose_manual(anna, decision_id, action="decline", note="thin file")
    assert manual["status"] == "effective" and manual["confirmed_by"] is None
    assert alone.decision(decision_id)["final_outcome"] == "decline"
