"""The abuse cases of issue 13 about people, roles and approvals (helper H1), for the authorization
matrix's ABUSE table: (name, attempt, status, code, state), each refused with a stable code, nothing changed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from api_world import World

from conftest import table_rows
from creditflow.identity.tables import users
from creditflow.trade.tables import payable_approvals, payables

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _approvals_and_payables(w: World) -> Any:
    return table_rows(w.app, (payable_approvals, payables))


def _approvals(w: World) -> Any:
    return table_rows(w.app, (payable_approvals,))


def _users(w: World) -> Any:
    return table_rows(w.app, (users,))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _key_approves_twice(w: World, client: TestClient) -> Any:
    path = f"/v1/payables/{w.own.payable_id}/approvals"
    client.post(path, headers=w.own.headers("core_enterprise"))
    return client.post(path, headers=w.own.headers("core_enterprise"))


def _person_approves_twice(w: World, client: TestClient) -> Any:
    # the core's user approved this payable once already (api_world)
    path = f"/v1/payables/{w.own.approved_payable_id}/approvals"
    return client.post(path, headers=w.own.person_headers("core_enterprise"))


def _maker_approves_own(w: World, client: TestClient) -> Any:
    me = w.own.person_headers("core_enterprise")
    made = client.post(
        "/v1/payables", json={"creditor": w.own.supplier, "amount_minor": 1_000, "reference": "PO-mine"}, headers=me
    )
    assert made.status_code == 201 and made.json()["created_by"] == w.own.users["core_enterprise"], made.text
    return client.post(f"/v1/payables/{made.json()['id']}/approvals", headers=me)


def _a_person(w: World, roles: list[str]) -> str:
    user_id = uid("person")
    w.app.people.add(w.own.core, user_id, "Someone", roles)
    return w.app.access.create_key(w.own.core, "abuse", user_id=user_id)


def _viewer_approves(w: World, client: TestClient) -> Any:
    token = _a_person(w, ["viewer"])
    return client.post(f"/v1/payables/{w.own.payable_id}/approvals", headers=_bearer(token))


def _admin_changes_another_organisations_user(w: World, client: TestClient) -> Any:
    return client.put(
        f"/v1/users/{w.other.users['core_enterprise']}/roles",
        json={"roles": ["viewer"]},
        headers=w.own.person_headers("core_enterprise"),
    )


def _key_creates_a_user(w: World, client: TestClient) -> Any:
    body = {"user_id": "abuse.by.key", "name": "Mallory", "roles": ["admin", "approver"]}
    return client.post("/v1/users", json=body, headers=w.own.headers("core_enterprise"))


def _non_admin_creates_a_user(w: World, client: TestClient) -> Any:
    token = _a_person(w, ["maker", "approver"])
    body = {"user_id": "abuse.by.maker", "name": "Mallory", "roles": ["approver"]}
    return client.post("/v1/users", json=body, headers=_bearer(token))


def _would_be_user(user_id: str) -> Callable[[World], Any]:
    return lambda w: [r for r in table_rows(w.app, (users,))["users"] if user_id in r]


ABUSE_CASES: list[tuple[str, Callable[[World, TestClient], Any], int, str, Callable[[World], Any]]] = [
    (
        "one key approving twice: an organisation-wide key",
        _key_approves_twice,
        403,
        "person_required",
        _approvals_and_payables,
    ),
    (
        "one key approving twice: a person approving again",
        _person_approves_twice,
        409,
        "same_approver",
        _approvals_and_payables,
    ),
    ("the maker approving their own payable", _maker_approves_own, 403, "maker_cannot_approve", _approvals),
    ("a viewer approving", _viewer_approves, 403, "user_role_not_allowed", _approvals),
    (
        "an admin changing another organisation's user",
        _admin_changes_another_organisations_user,
        404,
        "user_not_found",
        _users,
    ),
    ("an organisation-wide key creating users", _key_creates_a_user, 403, "person_required", _users),
    (
        "a non-admin creating users",
        _non_admin_creates_a_user,
        403,
        "user_role_not_allowed",
        _would_be_user("abuse.by.maker"),
    ),
]
