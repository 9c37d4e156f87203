"""Credit consent in the pages (issue 13): a business's admin authorises a bank, sees and revokes the
authorisation and sees who looked; a person without the admin role is refused; every form needs its CSRF
token. A bank's manual decision on a referral is proposed by one person and confirmed by another."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

from fastapi.testclient import TestClient
from web_helpers import PASSWORD, sign_in

from creditflow.bootstrap import App
from creditflow.credit import store as credit_store
from creditflow.identity.roles import UserRole

PAGE = "/ui/credit/authorisations"


def person(world: App, org_id: str, user_id: str, *roles: UserRole) -> str:
    world.people.add(org_id, user_id, user_id.title(), roles=roles)
    world.sessions.set_password(user_id, PASSWORD)
    return user_id


def asked_decision(world: App, org_id: str, bank: str, outcome: str) -> str:
    decision_id = str(uuid.uuid4())
    with world.engine.begin() as conn:
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
                "reasons_json": json.dumps([{"code": "referred", "message": "in the review band"}]),
                "knockouts_json": "[]",
                "policy_version": "test",
                "policy_sha256": "0" * 64,
                "model_version": "test",
                "feature_hash": "0" * 64,
                "features_json": json.dumps({"values": {"sales_12m": 1234567.0}}),
                "as_of": dt.date(2026, 3, 2),
                "decided_ts_ms": world.clock.now_ms(),
                "decision_us": 500,
                "asked_by": bank,
            },
        )
    return decision_id


def grant_form(csrf: str, **overrides: str) -> dict[str, str]:
    form = {"csrf_token": csrf, "bank_id": "bank", "purpose_code": "loan_application", "purpose": "loan 2026"}
    return {**form, "scope": "decision", "valid_days": "60", **overrides}


def test_a_business_admin_grants_sees_and_revokes_and_sees_who_looked(web: TestClient, world: App) -> None:
    csrf = sign_in(web, person(world, "factory", "factory.admin", UserRole.ADMIN))
    page = web.get(PAGE)
    assert page.status_code == 200 and 'id="no-authorisations"' in page.text and 'id="no-queries"' in page.text
    assert web.post(PAGE, data=grant_form("forged")).status_code == 403
    too_long = web.post(PAGE, data=grant_form(csrf, valid_days="9999"))
    assert too_long.status_code == 422 and 'id="e-valid_days" data-code="authorisation_too_long"' in too_long.text
    granted = web.post(PAGE, data=grant_form(csrf))
    assert granted.status_code == 200 and "bank may look up your credit" in granted.text
    [authorisation] = world.credit.authorisations(world.access.authenticate(world.access.create_key("factory"))).items
    row = f'data-authorisation="{authorisation["authorisation_id"]}" data-status="live"'
    assert row in granted.text
    # the bank reads a decision it asked for: the factory sees who, when, why and what
    decision_id = asked_decision(world, "factory", "bank", "approve")
    bank = world.access.authenticate(world.access.create_key("bank"))
    assert world.credit.decision_for(bank, decision_id)["features"] is None
    looked = web.get(PAGE).text
    assert 'data-asker="bank" data-kind="read"' in looked and "loan 2026" in looked
    revoke = f"{PAGE}/{authorisation['authorisation_id']}/revoke"
    assert web.post(revoke, data={"csrf_token": "forged"}).status_code == 403
    done = web.post(revoke, data={"csrf_token": csrf})
    assert (
        done.status_code == 200
        and f'data-authorisation="{authorisation["authorisation_id"]}" data-status="revoked"' in done.text
    )


def test_a_person_without_the_admin_role_is_refused_and_nothing_changes(web: TestClient, world: App) -> None:
    csrf = sign_in(web, person(world, "xcmg", "xcmg.maker", UserRole.MAKER))
    refused = web.post(PAGE, data=grant_form(csrf))
    assert refused.status_code == 403 and 'data-code="user_role_not_allowed"' in refused.text
    assert 'id="no-authorisations"' in refused.text


def test_the_consent_pages_are_for_businesses(web: TestClient, world: App) -> None:
    sign_in(web, person(world, "bank", "bank.clerk", UserRole.MAKER))
    assert web.get(PAGE).status_code == 403


def test_a_manual_decision_needs_a_second_person(web: TestClient, world: App) -> None:
    admin = world.access.authenticate(
        world.access.create_key("factory", "a", user_id=person(world, "factory", "factory.boss", UserRole.ADMIN))
    )
    body = {"purpose_code": "loan_application", "purpose": "loan", "scope": "decision", "valid_days": 30}
    world.credit.grant_authorisation(admin, bank_id="bank", **body)
    decision_id = asked_decision(world, "factory", "bank", "refer")
    path = f"/ui/bank/credit/decisions/{decision_id}"
    person(world, "bank", "bank.anna", UserRole.MAKER, UserRole.APPROVER)
    person(world, "bank", "bank.bo", UserRole.APPROVER)
    csrf = sign_in(web, "bank.anna")
    page = web.get(path)
    assert page.status_code == 200 and 'id="manual-form"' in page.text and 'id="no-features"' in page.text
    form = {"csrf_token": csrf, "action": "approve", "granted": "20,000.00", "rate": "6.5", "note": "two buyers"}
    assert web.post(f"{path}/manual", data={**form, "csrf_token": "forged"}).status_code == 403
    bad = web.post(f"{path}/manual", data={**form, "rate": "abc"})
    assert bad.status_code == 422 and 'id="e-rate"' in bad.text
    proposed = web.post(f"{path}/manual", data=form)
    assert (
        proposed.status_code == 200
        and 'data-status="proposed"' in proposed.text
        and 'id="manual-wait"' in proposed.text
    )
    alone = web.post(f"{path}/manual/confirm", data={"csrf_token": csrf})
    assert alone.status_code == 409 and 'data-code="four_eyes_same_person"' in alone.text
    web.cookies.clear()
    csrf_b = sign_in(web, "bank.bo")
    confirmed = web.post(f"{path}/manual/confirm", data={"csrf_token": csrf_b})
    assert confirmed.status_code == 200 and 'data-status="effective"' in confirmed.text
    assert re.search(r'id="decision-final">approve<', confirmed.text)
    manual = world.credit.decision(decision_id)["manual"]
    assert (manual["proposed_by"], manual["confirmed_by"], manual["confirmed_auth"]) == (
        "bank.anna",
        "bank.bo",
        "session",
    )
    assert (manual["granted_minor"], manual["rate_bps"]) == (2_000_000, 650)
