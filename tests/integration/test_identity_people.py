"""People, not keys (issue 13): a personal token acts as its user, an organisation-wide key as nobody; the
user's roles travel with the principal; notifications reach the organisation's admins only."""

from __future__ import annotations

import warnings

import pytest

from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.identity import reads as identity
from creditflow.identity.roles import Auth, UserRole, parse_roles, require_person, require_user_role
from creditflow.kernel.errors import DomainError, Forbidden, InvalidInput, Unauthenticated

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def test_roles_parse_and_refuse_unknown_names() -> None:
    assert parse_roles("viewer admin") == {UserRole.ADMIN, UserRole.VIEWER}
    assert parse_roles("") == frozenset()
    with pytest.raises(InvalidInput) as caught:
        parse_roles(["admin", "root"])
    assert caught.value.code == "unknown_user_role"


def test_a_personal_token_is_its_user_and_an_organisation_key_is_nobody(world: App) -> None:
    world.people.add("xcmg", "wang.fang", "Wang Fang", [UserRole.APPROVER])
    personal = world.access.authenticate(world.access.create_key("xcmg", "wang's", user_id="wang.fang"))
    assert (personal.user_id, personal.user_roles, personal.auth) == (
        "wang.fang",
        {UserRole.APPROVER},
        Auth.PERSONAL_TOKEN,
    )
    assert require_user_role(personal, UserRole.APPROVER) == "wang.fang"
    with pytest.raises(Forbidden) as caught:
        require_user_role(personal, UserRole.ADMIN)
    assert caught.value.code == "user_role_not_allowed"

    organisation = world.access.authenticate(world.access.create_key("xcmg", "erp"))
    assert (organisation.user_id, organisation.is_person, organisation.auth) == (None, False, Auth.API_KEY)
    with pytest.raises(Forbidden) as caught:
        require_person(organisation)
    assert caught.value.code == "person_required"


def test_a_personal_token_names_a_user_of_its_own_organisation(world: App) -> None:
    world.people.add("factory", "li.wei", "Li Wei", ["maker", "approver"])
    with pytest.raises(DomainError) as caught:
        world.access.create_key("xcmg", "not mine", user_id="li.wei")
    assert caught.value.code == "user_not_found"
    with pytest.raises(Unauthenticated):
        world.access.authenticate("cf_0000000000000000_nothing")


def test_notifications_reach_the_admins_only(world: App) -> None:
    world.people.add("xcmg", "admin.zhao", "Zhao", [UserRole.ADMIN])
    world.people.add("xcmg", "viewer.qian", "Qian", [UserRole.VIEWER])
    with world.engine.begin() as conn:
        identity.notify_admins(
            conn, org_id="xcmg", kind="account_changed", message="账户已变更 / account changed", now_ms=1, data={"n": 1}
        )
        identity.notify_admins(conn, org_id="factory", kind="other", message="not xcmg's", now_ms=2)
    admin = world.access.create_key("xcmg", "admin", user_id="admin.zhao")
    viewer = world.access.create_key("xcmg", "viewer", user_id="viewer.qian")
    organisation = world.access.create_key("xcmg", "erp")
    with TestClient(create_app(world)) as client:
        for token in (admin, organisation):
            got = client.get("/v1/notifications", headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200, got.text
            assert [(n["kind"], n["message"], n["data"]) for n in got.json()["items"] if n["kind"] != "user_added"] == [
                ("account_changed", "账户已变更 / account changed", {"n": 1})
            ]
        refused = client.get("/v1/notifications", headers={"Authorization": f"Bearer {viewer}"})
        assert (refused.status_code, refused.json()["code"]) == (403, "user_role_not_allowed")
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {admin}"}).json()
        assert (me["user_id"], me["user_roles"], me["auth"]) == ("admin.zhao", ["admin"], "personal_token")
