"""The admin's pages (issue 13, point 8): an organisation's admin lists its users and roles, adds a user with
an initial password and changes roles, with CSRF-protected forms; anybody else gets the 403 page; the last
admin keeps admin; every refusal changes nothing."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from web_helpers import PASSWORD, add_user, sign_in

from conftest import table_rows
from creditflow.bootstrap import App
from creditflow.identity.tables import users


def roles_of(world: App, user_id: str) -> list[str]:
    return sorted(r.value for r in world.people.get(user_id).roles)


def test_an_admin_manages_users_and_roles_on_the_page(web: TestClient, world: App) -> None:
    add_user(world, "factory", "zhao.admin", roles=("admin",))
    add_user(world, "factory", "wang.fang")
    add_user(world, "steel", "li.gang", roles=("admin",))
    csrf = sign_in(web, "zhao.admin")
    assert 'href="/ui/admin/users"' in web.get("/ui/supplier/pieces").text  # in the admin's menu
    page = web.get("/ui/admin/users")
    assert page.status_code == 200
    assert '<tr data-user="wang.fang" data-roles="approver maker">' in page.text
    assert "li.gang" not in page.text  # another organisation's people

    before = table_rows(world, (users,))
    for token in ({}, {"csrf_token": "forged"}):
        form = {**token, "user_id": "li.na", "name": "Li Na", "password": PASSWORD, "roles": ["approver"]}
        assert web.post("/ui/admin/users", data=form).status_code == 403
    weak = web.post(
        "/ui/admin/users",
        data={"csrf_token": csrf, "user_id": "li.na", "name": "Li Na", "password": "short", "roles": ["approver"]},
    )
    assert weak.status_code == 422 and 'data-code="password_too_short"' in weak.text
    no_role = web.post(
        "/ui/admin/users", data={"csrf_token": csrf, "user_id": "li.na", "name": "Li Na", "password": PASSWORD}
    )
    assert no_role.status_code == 422 and 'data-code="roles_required"' in no_role.text
    assert table_rows(world, (users,)) == before

    added = web.post(
        "/ui/admin/users",
        data={"csrf_token": csrf, "user_id": "li.na", "name": "Li Na", "password": PASSWORD, "roles": ["approver"]},
    )
    assert added.status_code == 200 and "User li.na added" in added.text
    assert roles_of(world, "li.na") == ["approver"]
    assert world.sessions.sign_in("li.na", PASSWORD)[1].org_id == "factory"  # the initial password works

    changed = web.post("/ui/admin/users/wang.fang/roles", data={"csrf_token": csrf, "roles": ["viewer"]})
    assert changed.status_code == 200 and "The roles of wang.fang are now: viewer." in changed.text
    assert roles_of(world, "wang.fang") == ["viewer"]

    before = table_rows(world, (users,))
    last = web.post("/ui/admin/users/zhao.admin/roles", data={"csrf_token": csrf, "roles": ["approver"]})
    assert last.status_code == 409 and 'data-code="last_admin"' in last.text
    theirs = web.post("/ui/admin/users/li.gang/roles", data={"csrf_token": csrf, "roles": ["viewer"]})
    assert theirs.status_code == 404 and 'data-code="user_not_found"' in theirs.text
    assert table_rows(world, (users,)) == before
    kinds = [n.kind for n in world.notices.of("factory").items]
    assert kinds.count("user_roles_changed") == 1 and "user_added" in kinds


def test_the_admin_pages_are_for_admins_only(web: TestClient, world: App) -> None:
    add_user(world, "factory", "zhao.admin", roles=("admin",))
    add_user(world, "factory", "wang.fang")
    csrf = sign_in(web, "wang.fang")
    assert 'href="/ui/admin/users"' not in web.get("/ui/supplier/pieces").text
    page = web.get("/ui/admin/users")
    assert page.status_code == 403 and 'data-code="user_role_not_allowed"' in page.text
    before = table_rows(world, (users,))
    for path, form in (
        ("/ui/admin/users", {"user_id": "li.na", "name": "Li Na", "password": PASSWORD, "roles": ["admin"]}),
        ("/ui/admin/users/wang.fang/roles", {"roles": ["admin"]}),
        ("/ui/admin/users/zhao.admin/roles", {"roles": ["viewer"]}),
    ):
        response = web.post(path, data={"csrf_token": csrf, **form})
        assert response.status_code == 403, path
    assert table_rows(world, (users,)) == before


def test_a_viewer_only_looks_on_every_page_but_may_sign_out(web: TestClient, world: App) -> None:
    add_user(world, "factory", "qian.viewer", roles=("viewer",))
    csrf = sign_in(web, "qian.viewer")
    assert web.get("/ui/supplier/pieces").status_code == 200
    refused = web.post("/ui/supplier/pieces/nothing/accept", data={"csrf_token": csrf})
    assert refused.status_code == 403 and 'data-code="user_role_not_allowed"' in refused.text
    out = web.post("/ui/sign-out", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and re.search(r"/ui/sign-in", out.headers["location"])
