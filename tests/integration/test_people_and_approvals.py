"""People approve, not keys (issue 13, points 1, 3, 7 and 8), through the API on SQLite and PostgreSQL.

* only an admin in person adds users and grants roles; an organisation never loses its last admin; every
  change is notified to the organisation's admins; another organisation's user answers as absent;
* a payable is confirmed by distinct approvers in person: never an organisation-wide key, never its
  maker, never the same person twice; every approval records who, when and how;
* a viewer only looks: every state-changing request of a person with no other role is refused;
* the operator names an organisation's first admin when registering it;
* each refusal changes nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conftest import table_rows
from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.identity.tables import notifications, users
from creditflow.kernel.engine import alembic_config, make_engine
from creditflow.kernel.uscc import make_uscc
from creditflow.migrations.schema import metadata
from creditflow.trade.tables import payable_approvals, payables

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PEOPLE_TABLES = (users, notifications)
APPROVAL_TABLES = (payables, payable_approvals)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(world: App) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """xcmg with an admin (zhao), a maker (wang), two approvers (li, chen) and a viewer (qian), each with a
    personal token; rival with its own admin (rita); and every organisation's organisation-wide key."""
    cast = {
        "zhao": ("xcmg", ["admin"]),
        "wang": ("xcmg", ["maker"]),
        "li": ("xcmg", ["approver"]),
        "chen": ("xcmg", ["approver", "maker"]),
        "qian": ("xcmg", ["viewer"]),
        "rita": ("rival", ["admin", "approver"]),
        "fang": ("factory", ["admin", "approver"]),
    }
    h: dict[str, dict[str, str]] = {}
    for user_id, (org, roles) in cast.items():
        world.people.add(org, user_id, user_id.title(), roles)
        h[user_id] = bearer(world.access.create_key(org, f"{user_id}'s", user_id=user_id))
    for org in ("xcmg", "rival", "factory", "operator"):
        h[org] = bearer(world.access.create_key(org, "erp"))
    with TestClient(create_app(world)) as client:
        yield client, h


def refused(world: App, tables: Any, response: Any, status: int, code: str, before: Any) -> None:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text
    assert table_rows(world, tables) == before


def roles_of(world: App, user_id: str) -> list[str]:
    return sorted(r.value for r in world.people.get(user_id).roles)


# --- people and roles ----------------------------------------------------------------------------------


def test_only_an_admin_in_person_adds_users(world: App, api: Any) -> None:
    client, h = api
    body = {"user_id": "mallory", "name": "Mallory", "roles": ["admin", "approver"]}
    for caller, code in (
        ("xcmg", "person_required"),
        ("wang", "user_role_not_allowed"),
        ("li", "user_role_not_allowed"),
    ):
        before = table_rows(world, PEOPLE_TABLES)
        refused(world, PEOPLE_TABLES, client.post("/v1/users", json=body, headers=h[caller]), 403, code, before)
    before = table_rows(world, PEOPLE_TABLES)
    refused(
        world,
        PEOPLE_TABLES,
        client.post("/v1/users", json=body, headers=h["qian"]),
        403,
        "user_role_not_allowed",
        before,
    )

    created = client.post("/v1/users", json={**body, "roles": ["approver"]}, headers=h["zhao"])
    assert created.status_code == 201, created.text
    assert created.json() == {"user_id": "mallory", "org_id": "xcmg", "name": "Mallory", "roles": ["approver"]}
    before = table_rows(world, PEOPLE_TABLES)
    for bad, status, code in (
        ({**body, "user_id": "mallory"}, 409, "user_exists"),
        ({**body, "user_id": "li"}, 409, "user_exists"),  # ids are unique across organisations
        ({**body, "user_id": "x y"}, 422, "invalid_user_id"),
        ({**body, "user_id": "root2", "roles": ["root"]}, 422, "unknown_user_role"),
    ):
        refused(world, PEOPLE_TABLES, client.post("/v1/users", json=bad, headers=h["zhao"]), status, code, before)
    # the admins were told, by whom and what
    notes = client.get("/v1/notifications", headers=h["zhao"]).json()["items"]
    added = [n for n in notes if n["kind"] == "user_added" and n["data"]["user_id"] == "mallory"]
    assert [(n["data"]["by"], n["data"]["roles"]) for n in added] == [("zhao", ["approver"])]


def test_the_organisation_s_users_are_seen_by_its_admins_and_its_key_only(world: App, api: Any) -> None:
    client, h = api
    for caller in ("zhao", "xcmg"):
        listed = client.get("/v1/users", headers=h[caller])
        assert listed.status_code == 200
        assert {u["user_id"]: u["roles"] for u in listed.json()["items"]} == {
            "chen": ["approver", "maker"],
            "li": ["approver"],
            "qian": ["viewer"],
            "wang": ["maker"],
            "zhao": ["admin"],
        }
    for caller in ("li", "qian"):
        got = client.get("/v1/users", headers=h[caller])
        assert (got.status_code, got.json()["code"]) == (403, "user_role_not_allowed")


def test_an_admin_changes_roles_of_its_own_organisation_only_and_keeps_an_admin(world: App, api: Any) -> None:
    client, h = api
    changed = client.put("/v1/users/wang/roles", json={"roles": ["maker", "approver"]}, headers=h["zhao"])
    assert changed.status_code == 200 and changed.json()["roles"] == ["approver", "maker"]
    assert roles_of(world, "wang") == ["approver", "maker"]
    notes = client.get("/v1/notifications", headers=h["zhao"]).json()["items"]
    assert [n["data"] for n in notes if n["kind"] == "user_roles_changed"] == [
        {"user_id": "wang", "by": "zhao", "before": ["maker"], "after": ["approver", "maker"]}
    ]

    before = table_rows(world, PEOPLE_TABLES)
    # another organisation's user answers as one that does not exist
    for target in ("rita", "nobody"):
        response = client.put(f"/v1/users/{target}/roles", json={"roles": ["viewer"]}, headers=h["zhao"])
        refused(world, PEOPLE_TABLES, response, 404, "user_not_found", before)
    for caller, code in (("xcmg", "person_required"), ("chen", "user_role_not_allowed")):
        response = client.put("/v1/users/chen/roles", json={"roles": ["admin"]}, headers=h[caller])
        refused(world, PEOPLE_TABLES, response, 403, code, before)
    # the last admin keeps admin (also when demoting themselves)
    response = client.put("/v1/users/zhao/roles", json={"roles": ["approver"]}, headers=h["zhao"])
    refused(world, PEOPLE_TABLES, response, 409, "last_admin", before)
    response = client.put("/v1/users/zhao/roles", json={"roles": []}, headers=h["zhao"])
    assert response.status_code == 422
    assert table_rows(world, PEOPLE_TABLES) == before

    # with a second admin, the first may step down; then its token no longer manages anyone
    assert client.put("/v1/users/chen/roles", json={"roles": ["admin"]}, headers=h["zhao"]).status_code == 200
    assert client.put("/v1/users/zhao/roles", json={"roles": ["viewer"]}, headers=h["zhao"]).status_code == 200
    before = table_rows(world, PEOPLE_TABLES)
    response = client.put("/v1/users/chen/roles", json={"roles": ["viewer"]}, headers=h["zhao"])
    refused(world, PEOPLE_TABLES, response, 403, "user_role_not_allowed", before)
    response = client.put("/v1/users/chen/roles", json={"roles": ["viewer"]}, headers=h["chen"])
    refused(world, PEOPLE_TABLES, response, 409, "last_admin", before)


def test_the_operator_names_an_organisation_s_first_admin(world: App, api: Any) -> None:
    client, h = api
    body = {
        "org_id": "newco",
        "name": "Newco",
        "role": "supplier",
        "uscc": make_uscc("91320300134781234"),
        "admin": {"user_id": "newco.admin", "name": "Sun Li"},
    }
    taken = client.post(
        "/v1/organisations", json={**body, "admin": {"user_id": "li", "name": "Li"}}, headers=h["operator"]
    )
    assert (taken.status_code, taken.json()["code"]) == (409, "user_exists")
    assert [p.org_id for p in world.queries.parties() if p.org_id == "newco"] == []  # nothing registered
    created = client.post("/v1/organisations", json=body, headers=h["operator"])
    assert created.status_code == 201, created.text
    assert created.json()["admin_user_id"] == "newco.admin"
    admin = bearer(created.json()["admin_token"])
    me = client.get("/v1/me", headers=admin).json()
    assert (me["org_id"], me["user_id"], me["user_roles"]) == ("newco", "newco.admin", ["admin"])
    added = client.post(
        "/v1/users", json={"user_id": "newco.clerk", "name": "Clerk", "roles": ["maker"]}, headers=admin
    )
    assert added.status_code == 201


# --- approvals ---------------------------------------------------------------------------------------


def test_distinct_approvers_in_person_confirm_and_every_approval_says_how(world: App, api: Any) -> None:
    client, h = api
    made = client.post(
        "/v1/payables", json={"creditor": "factory", "amount_minor": 5_000_000, "reference": "PO-7"}, headers=h["chen"]
    )
    assert made.status_code == 201 and made.json()["created_by"] == "chen"
    path = f"/v1/payables/{made.json()['id']}/approvals"
    before = table_rows(world, APPROVAL_TABLES)
    for caller, status, code in (
        ("xcmg", 403, "person_required"),  # the organisation-wide key prepares, never approves
        ("chen", 403, "maker_cannot_approve"),  # the maker never approves their own
        ("wang", 403, "user_role_not_allowed"),  # a maker without the approver role
        ("qian", 403, "user_role_not_allowed"),  # a viewer only looks
        ("zhao", 403, "user_role_not_allowed"),  # an admin is not an approver
        ("fang", 403, "not_debtor_user"),  # the creditor's approver
        ("rita", 404, "payable_not_found"),  # another core enterprise: the payable is not theirs to see
    ):
        refused(world, APPROVAL_TABLES, client.post(path, headers=h[caller]), status, code, before)
    refused(
        world,
        APPROVAL_TABLES,
        client.post(path, json={"user_id": "chen"}, headers=h["li"]),
        403,
        "approver_mismatch",
        before,
    )

    first = client.post(path, json={"user_id": "li"}, headers=h["li"])
    assert first.status_code == 200 and first.json()["approvals"] == 1 and first.json()["status"] == "draft"
    before = table_rows(world, APPROVAL_TABLES)
    refused(world, APPROVAL_TABLES, client.post(path, headers=h["li"]), 409, "same_approver", before)
    # a second approver, signing in to the pages, confirms (the session is the person)
    world.people.add("xcmg", "sun", "Sun", ["approver"])
    world.sessions.set_password("sun", "correct horse battery 9")
    token, signed_in = world.sessions.sign_in("sun", "correct horse battery 9")
    client.cookies.set("cf_session", token)
    second = client.post(path, headers={"X-CSRF-Token": signed_in.csrf_token})
    client.cookies.clear()
    assert second.status_code == 200 and second.json()["status"] == "confirmed", second.text

    seen = client.get(f"/v1/payables/{made.json()['id']}", headers=h["zhao"]).json()
    assert seen["status"] == "confirmed" and seen["approvals_required"] == 2
    [by_li, by_sun] = seen["approvals"]
    key_id = h["li"]["Authorization"].split("_")[1]
    assert (by_li["user_id"], by_li["auth"], by_li["credential"]) == ("li", "personal_token", f"key:{key_id}")
    assert (by_sun["user_id"], by_sun["auth"]) == ("sun", "session")
    assert by_sun["credential"].startswith("session:") and token not in by_sun["credential"]
    assert by_li["approved_ts_ms"] == world.clock.now_ms()
    # the creditor sees the status, not who inside the debtor approved
    theirs = client.get(f"/v1/payables/{made.json()['id']}", headers=h["factory"]).json()
    assert theirs["status"] == "confirmed" and theirs["approvals"] is None


def test_a_viewer_changes_nothing_anywhere(world: App, api: Any) -> None:
    client, h = api
    watched = (*APPROVAL_TABLES, *PEOPLE_TABLES)
    before = table_rows(world, watched)
    attempts = [
        ("POST", "/v1/payables", {"creditor": "factory", "amount_minor": 1_000, "reference": "PO-v"}),
        ("PUT", "/v1/accounts", {"account_name": "A", "account_number": "6222000011112222", "bic": "ICBKCNBJ"}),
        ("POST", "/v1/users", {"user_id": "v2", "name": "V", "roles": ["viewer"]}),
    ]
    for method, path, body in attempts:
        response = client.request(method, path, json=body, headers=h["qian"])
        assert (response.status_code, response.json()["code"]) == (403, "user_role_not_allowed"), path
    assert table_rows(world, watched) == before
    assert client.get("/v1/me", headers=h["qian"]).status_code == 200  # looking is fine


# --- the schema --------------------------------------------------------------------------------------


def test_schema_matches_the_migration_and_it_goes_down_and_up(world: App, store_url: str) -> None:
    with world.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    mine = [d for d in diffs if any(t in repr(d) for t in ("payable_approvals", "'payables'", "created_by"))]
    assert mine == []
    engine = make_engine(store_url)
    try:
        command.downgrade(alembic_config(engine), "0014-1")  # as before this revision
        command.upgrade(alembic_config(engine), "head")
    finally:
        engine.dispose()


def test_an_idempotency_key_is_not_shared_between_people(world: App, api: Any) -> None:
    """Two approvers of one organisation sending the same Idempotency-Key (and the same empty body): the
    second is a different request (409), never a replay that tells them they approved."""
    client, h = api
    payable = world.payables.create_payable("xcmg", "factory", 1_000_000, "PO-idem")
    path = f"/v1/payables/{payable.id}/approvals"
    first = client.post(path, headers={**h["li"], "Idempotency-Key": "approve-1"})
    assert first.status_code == 200 and first.json()["approved_by"] == "li"
    replay = client.post(path, headers={**h["li"], "Idempotency-Key": "approve-1"})
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    before = table_rows(world, APPROVAL_TABLES)
    other = client.post(path, headers={**h["chen"], "Idempotency-Key": "approve-1"})
    refused(world, APPROVAL_TABLES, other, 409, "idempotency_key_reused", before)
