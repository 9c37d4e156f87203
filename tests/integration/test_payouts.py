"""Accounts and payouts (issue 13, point 4), on SQLite and PostgreSQL: an account change waits and is
notified to the organisation's admins, who may cancel it; one holder's bad account never fails another's
payout (a row saved before the rules, inserted here straight into the database); held payouts are paid
later by a release. The chain of test_clearing_flow: live at maturity factory 600,000.00, steel 150,000.00,
bank 250,000.00.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from lxml import etree
from sqlalchemy import insert, update
from test_clearing_flow import ACCOUNTS, FACE, MATURITY, NS, at, capp, make_chain, refused, set_accounts, snapshot

from conftest import make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.financing import pain001
from creditflow.financing.tables import settlement_accounts
from creditflow.http.app import create_app
from creditflow.identity.notices import Notice
from creditflow.identity.roles import UserRole
from creditflow.kernel.clock import ManualClock
from creditflow.ledger.model.certificates import CertificateState

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

__all__ = ["capp"]  # the fixture, shared with test_clearing_flow
WAIT_MS = 24 * 3600 * 1000
NEW = ("江苏精艺 new account", "6222999900001111", "PCBCCNBJ")


def creditors(file: bytes) -> dict[str, int]:
    doc = etree.fromstring(file)
    return {
        str(tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS)): round(
            float(str(tx.findtext("p:Amt/p:InstdAmt", namespaces=NS))) * 100
        )
        for tx in doc.xpath("//p:CdtTrfTxInf", namespaces=NS)
    }


def kinds(app: App, org: str) -> list[str]:
    return [n.kind for n in app.notices.of(org).items]


def notice_of(app: App, org: str, kind: str) -> Notice:
    found = [n for n in app.notices.of(org).items if n.kind == kind]
    assert len(found) == 1, [n.kind for n in app.notices.of(org).items]
    return found[0]


@pytest.fixture
def client(capp: App) -> Iterator[TestClient]:
    with TestClient(create_app(capp), base_url="http://127.0.0.1") as c:
        yield c


def bearer(app: App, org: str, user_id: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org, 'test', user_id=user_id)}"}


# --- the waiting period ------------------------------------------------------------------------------


def test_the_first_account_is_at_once_a_change_waits_and_the_admins_are_told(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    assert kinds(capp, "factory") == ["account_set"]
    state = capp.clearing.set_account("factory", *NEW, requested_by="key k1")
    assert state["account"]["account_number"] == ACCOUNTS["factory"][1]
    pending = state["pending"]
    assert (pending["account_number"], pending["effective_ts_ms"], pending["requested_by"]) == (
        NEW[1],
        clock.now_ms() + WAIT_MS,
        "key k1",
    )
    notice = notice_of(capp, "factory", "account_change_requested")
    assert (
        notice.data["account_number"] == "************1111"
        and notice.data["effective_ts_ms"] == pending["effective_ts_ms"]
    )
    assert NEW[1] not in notice.message  # masked: a notice is no place for a full account number
    assert kinds(capp, "steel") == ["account_set"]  # another organisation hears nothing of it
    # asking again for the same change does not restart the wait
    clock.advance(1000)
    assert capp.clearing.set_account("factory", *NEW)["pending"]["effective_ts_ms"] == pending["effective_ts_ms"]
    # a millisecond before the end of the wait, the old account is in effect; then the new one
    clock.set(pending["effective_ts_ms"] - 1)
    assert capp.clearing.account_state("factory")["account"]["account_number"] == ACCOUNTS["factory"][1]
    clock.set(pending["effective_ts_ms"])
    state = capp.clearing.account_state("factory")
    assert state["account"]["account_number"] == NEW[1] and state["pending"] is None


def test_during_the_wait_clearing_pays_the_previous_account(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    chain = make_chain(capp)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "maturity")
    at(clock, MATURITY)
    capp.clearing.set_account("factory", *NEW)  # e.g. a stolen key, at maturity
    result = capp.clearing.clear(chain.certificate_id)
    paid = creditors(result.payment_file)
    assert paid[ACCOUNTS["factory"][1]] == 60_000_000 and NEW[1] not in paid


def test_saving_the_account_in_effect_withdraws_a_pending_change(capp: App) -> None:
    set_accounts(capp, "factory")
    capp.clearing.set_account("factory", *NEW)
    state = capp.clearing.set_account("factory", *ACCOUNTS["factory"])
    assert state["pending"] is None and "account_change_cancelled" in kinds(capp, "factory")


def test_an_admin_person_cancels_a_pending_change_and_no_one_else(capp: App, client: TestClient) -> None:
    set_accounts(capp, "factory")
    capp.people.add("factory", "admin.li", "Li", roles=(UserRole.ADMIN,))
    capp.people.add("factory", "viewer.wu", "Wu", roles=(UserRole.VIEWER,))
    body = {"account_name": NEW[0], "account_number": NEW[1], "bic": NEW[2]}
    asked = client.put("/v1/accounts", json=body, headers=bearer(capp, "factory"))
    assert asked.status_code == 200 and asked.json()["pending"]["account_number"] == NEW[1]
    assert asked.json()["pending"]["requested_by"].startswith("key ")
    # a person without the admin role may neither change nor cancel
    viewer = bearer(capp, "factory", "viewer.wu")
    assert client.put("/v1/accounts", json=body, headers=viewer).json()["code"] == "user_role_not_allowed"
    before = snapshot(capp)
    for headers, status, code in [
        (bearer(capp, "factory"), 403, "person_required"),  # the key that asked cannot cancel the alarm
        (viewer, 403, "user_role_not_allowed"),
    ]:
        response = client.delete("/v1/accounts/pending", headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert snapshot(capp) == before
    admin = bearer(capp, "factory", "admin.li")
    cancelled = client.delete("/v1/accounts/pending", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["pending"] is None
    assert cancelled.json()["account"]["account_number"] == ACCOUNTS["factory"][1]
    assert "account_change_cancelled" in kinds(capp, "factory")
    assert notice_of(capp, "factory", "account_change_cancelled").data["cancelled_by"] == "admin.li"
    again = client.delete("/v1/accounts/pending", headers=admin)
    assert (again.status_code, again.json()["code"]) == (404, "account_change_not_found")
    assert client.get("/v1/accounts", headers=admin).json()["pending"] is None


def test_the_api_refuses_each_bad_field_with_its_code(capp: App, client: TestClient) -> None:
    good = {"account_name": "Factory", "account_number": "6222020200112233", "bic": "ICBKCNBJ"}
    for field, value, code in [
        ("account_name", "Factory\u0007", "invalid_account_name"),  # (NUL: the request hardening refuses it)
        ("account_name", "Fac\u202etory", "invalid_account_name"),
        ("account_name", "x" * 141, "invalid_account_name"),
        ("account_number", "6222 0202", "invalid_account_number"),
        ("bic", "ICBKCN", "invalid_bic"),
    ]:
        response = client.put("/v1/accounts", json={**good, field: value}, headers=bearer(capp, "factory"))
        assert (response.status_code, response.json()["code"], response.json()["field"]) == (422, code, field)
    assert client.get("/v1/accounts", headers=bearer(capp, "factory")).json()["account"] is None


def test_with_no_wait_a_change_is_at_once(store_url: str, clock: ManualClock) -> None:
    settings = make_settings(store_url, financing={"account_change_wait_s": 0})
    with build(settings, clock=clock) as app:
        onboard(app, "factory")
        app.clearing.set_account("factory", *ACCOUNTS["factory"])
        state = app.clearing.set_account("factory", *NEW)
        assert state["account"]["account_number"] == NEW[1] and state["pending"] is None
        assert [n.kind for n in app.notices.of("factory").items] == ["account_set", "account_set"]


# --- one party's data never fails another's payout -----------------------------------------------------


def _bad_row(app: App, org: str, name: str) -> None:
    """An account saved before the rules existed (straight into the table, as old data would be)."""
    with app.engine.begin() as conn:
        conn.execute(update(settlement_accounts).where(settlement_accounts.c.org_id == org).values(account_name=name))


def test_a_holder_with_a_bad_account_is_held_and_everyone_else_is_paid(
    capp: App, clock: ManualClock, client: TestClient
) -> None:
    set_accounts(capp)
    _bad_row(capp, "steel", "徐州钢铁\x07有限公司")  # a control character: lxml cannot even write it
    chain = make_chain(capp)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "maturity")
    at(clock, MATURITY)
    response = client.post(f"/v1/certificates/{chain.certificate_id}/clear", headers=bearer(capp, "xcmg"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["held"] == [
        {
            "piece_id": chain.steel_piece,
            "holder": "steel",
            "amount_minor": 15_000_000,
            "code": "invalid_settlement_account",
        }
    ]
    assert body["total_minor"] == FACE - 15_000_000
    assert sorted((t["holder"], t["amount_minor"]) for t in body["transfers"]) == [
        ("bank", 25_000_000),
        ("factory", 60_000_000),
    ]
    file = client.get(body["payment_file"], headers=bearer(capp, "xcmg")).content
    pain001.validate(file)
    assert creditors(file) == {ACCOUNTS["factory"][1]: 60_000_000, ACCOUNTS["bank"][1]: 25_000_000}
    assert capp.queries.certificate(chain.certificate_id).state == CertificateState.CLEARED
    assert "payout_held" in kinds(capp, "steel") and "payout_held" not in kinds(capp, "factory")
    capp.verify()

    # who sees the held payouts: the issuer all, the holder its own, another holder none of them
    url = f"/v1/certificates/{chain.certificate_id}/payouts"
    assert [p["holder"] for p in client.get(url, headers=bearer(capp, "xcmg")).json()["payouts"]] == ["steel"]
    steel_sees = client.get(url, headers=bearer(capp, "steel")).json()["payouts"]
    assert [p["code"] for p in steel_sees] == ["invalid_settlement_account"]
    assert client.get(url, headers=bearer(capp, "factory")).json()["payouts"] == []

    # nothing to release until steel's account is valid and in effect
    release = f"/v1/certificates/{chain.certificate_id}/payouts/release"
    still = client.post(release, headers=bearer(capp, "xcmg"))
    assert (still.status_code, still.json()["code"]) == (409, "payouts_still_held")
    refused_by = client.post(release, headers=bearer(capp, "factory"))
    assert (refused_by.status_code, refused_by.json()["code"]) == (403, "role_not_allowed")
    capp.clearing.set_account("steel", *ACCOUNTS["steel"])  # a change of an account on file: it waits
    assert client.post(release, headers=bearer(capp, "xcmg")).json()["code"] == "payouts_still_held"
    clock.advance(WAIT_MS)
    released = client.post(release, headers=bearer(capp, "operator"))
    assert released.status_code == 200, released.text
    assert released.json()["transfers"] == [
        {"piece_id": chain.steel_piece, "holder": "steel", "amount_minor": 15_000_000}
    ]
    assert released.json()["held"] == []
    again = client.get(released.json()["payment_file"], headers=bearer(capp, "xcmg")).content
    pain001.validate(again)
    assert creditors(again) == {ACCOUNTS["steel"][1]: 15_000_000}
    # paid once: the file of clearing and the file of the release add up to the face value
    assert sum(creditors(file).values()) + sum(creditors(again).values()) == FACE
    twice = client.post(release, headers=bearer(capp, "xcmg"))
    assert (twice.status_code, twice.json()["code"]) == (409, "no_held_payouts")
    assert (
        client.get(url, headers=bearer(capp, "steel")).json()["payouts"][0]["released_message_id"]
        == released.json()["message_id"]
    )


def test_when_every_holder_is_held_there_is_no_file_and_no_500(capp: App, clock: ManualClock) -> None:
    set_accounts(capp, "xcmg")  # no holder has an account
    chain = make_chain(capp)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "maturity")
    at(clock, MATURITY)
    result = capp.clearing.clear(chain.certificate_id)
    assert (result.payment_file_present, result.total_minor) == (False, 0)
    assert sorted(h["holder"] for h in result.held or []) == ["bank", "factory", "steel"]
    refused(capp, "payment_file_not_found", lambda: capp.clearing.payment_file(chain.certificate_id))


def test_the_issuers_own_bad_account_stops_only_its_own_clearing(capp: App, clock: ManualClock) -> None:
    set_accounts(capp)
    with capp.engine.begin() as conn:  # an old row: a BIC that breaks the rules
        conn.execute(settlement_accounts.delete().where(settlement_accounts.c.org_id == "xcmg"))
        conn.execute(
            insert(settlement_accounts).values(org_id="xcmg", account_name="XCMG", account_number="1", bic="x")
        )
    chain = make_chain(capp)
    capp.clearing.record_payment("xcmg", chain.certificate_id, FACE, "maturity")
    at(clock, MATURITY)
    error = refused(capp, "invalid_settlement_account", lambda: capp.clearing.clear(chain.certificate_id))
    assert error.field == "org_id" and "xcmg" in error.message
