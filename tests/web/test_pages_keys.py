"""The pages of keys and passwords: an admin's API-key page, a user's own tokens and password, the
reset page; each form needs its CSRF token, each text is in English and Chinese."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from web_helpers import PASSWORD, sign_in, sign_in_form_token

from creditflow.bootstrap import App
from creditflow.identity.access import key_id_of
from creditflow.identity.roles import UserRole

NEW_PASSWORD = "another horse 10 staple"


def add(app: App, org: str, user_id: str, *roles: UserRole) -> None:
    app.people.add(org, user_id, user_id.replace(".", " ").title(), roles=roles)
    app.sessions.set_password(user_id, PASSWORD)


def test_an_admin_creates_an_organisation_key_and_sees_its_secret_once(web: TestClient, world: App) -> None:
    add(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    csrf = sign_in(web, "admin.zhao")
    page = web.get("/ui/admin/keys")
    assert page.status_code == 200 and "API keys" in page.text and "API 密钥" in page.text
    created = web.post("/ui/admin/keys", data={"csrf_token": csrf, "label": "erp", "kind": "organisation"})
    assert created.status_code == 200
    secret = re.search(r'<code id="secret">(cf_[^<]+)</code>', created.text).group(1)  # type: ignore[union-attr]
    assert world.access.authenticate(secret).user_id is None
    again = web.get("/ui/admin/keys")
    assert key_id_of(secret) in again.text and secret not in again.text  # shown once only


def test_an_admin_revokes_a_key_with_the_forms_token_only(web: TestClient, world: App) -> None:
    add(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    token = world.access.create_key("xcmg", "erp")
    csrf = sign_in(web, "admin.zhao")
    forged = web.post(f"/ui/admin/keys/{key_id_of(token)}/revoke", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert world.access.authenticate(token).org_id == "xcmg"
    revoked = web.post(f"/ui/admin/keys/{key_id_of(token)}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 200 and "Revoked key" in revoked.text and "已吊销密钥" in revoked.text
    assert f'data-key="{key_id_of(token)}" data-state="revoked"' in revoked.text


def test_another_organisations_key_is_not_revoked_from_the_page(web: TestClient, world: App) -> None:
    add(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    rival = world.access.create_key("rival", "rival's")
    csrf = sign_in(web, "admin.zhao")
    refused = web.post(f"/ui/admin/keys/{key_id_of(rival)}/revoke", data={"csrf_token": csrf})
    assert refused.status_code == 404 and 'data-code="api_key_not_found"' in refused.text
    assert world.access.authenticate(rival).org_id == "rival"


def test_the_key_page_is_for_admins(web: TestClient, world: App) -> None:
    add(world, "xcmg", "clerk.li", UserRole.MAKER)
    sign_in(web, "clerk.li")
    assert web.get("/ui/admin/keys").status_code == 403
    account = web.get("/ui/account")
    assert account.status_code == 200 and 'id="admin-keys-link"' not in account.text


def test_a_user_makes_and_revokes_its_own_token(web: TestClient, world: App) -> None:
    add(world, "xcmg", "clerk.li", UserRole.MAKER)
    csrf = sign_in(web, "clerk.li")
    assert web.post("/ui/account/tokens", data={"csrf_token": "forged", "label": "x"}).status_code == 403
    created = web.post("/ui/account/tokens", data={"csrf_token": csrf, "label": "laptop", "expires_days": "30"})
    secret = re.search(r'<code id="secret">(cf_[^<]+)</code>', created.text).group(1)  # type: ignore[union-attr]
    principal = world.access.authenticate(secret)
    assert principal.user_id == "clerk.li"
    bad = web.post("/ui/account/tokens", data={"csrf_token": csrf, "label": "x", "expires_days": "ever"})
    assert bad.status_code == 422 and 'id="e-expires_days"' in bad.text
    revoked = web.post(f"/ui/account/tokens/{principal.key_id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 200 and f'data-key="{principal.key_id}" data-state="revoked"' in revoked.text


def test_changing_the_password_on_the_account_page(web: TestClient, world: App) -> None:
    add(world, "factory", "wang.fang", UserRole.MAKER)
    csrf = sign_in(web, "wang.fang")
    forged = web.post(
        "/ui/account/password",
        data={"csrf_token": "forged", "current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert forged.status_code == 403
    wrong = web.post(
        "/ui/account/password", data={"csrf_token": csrf, "current_password": "nope", "new_password": NEW_PASSWORD}
    )
    assert wrong.status_code == 422 and 'id="e-current_password"' in wrong.text
    weak = web.post(
        "/ui/account/password", data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": "x"}
    )
    assert weak.status_code == 422 and 'id="e-new_password"' in weak.text
    cookie = web.cookies["cf_session"]
    changed = web.post(
        "/ui/account/password",
        data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.url.path == "/ui/sign-in" and "密码已更改" in changed.text
    web.cookies.set("cf_session", cookie)
    assert web.get("/ui/account", follow_redirects=False).status_code == 303  # the old session has ended
    web.cookies.clear()
    sign_in(web, "wang.fang", NEW_PASSWORD)


def test_setting_a_new_password_with_an_admins_reset_token(web: TestClient, world: App) -> None:
    add(world, "xcmg", "wang.fang", UserRole.APPROVER)
    add(world, "xcmg", "admin.zhao", UserRole.ADMIN)
    admin = world.access.authenticate(world.access.create_key("xcmg", "admin", user_id="admin.zhao"))
    reset_token, _ = world.sessions.reset_password(admin, "wang.fang")
    page = web.get("/ui/sign-in/reset")
    assert page.status_code == 200 and "重置令牌" in page.text
    form = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    data = {"user_id": "wang.fang", "reset_token": reset_token, "new_password": NEW_PASSWORD}
    forged = web.post("/ui/sign-in/reset", data={**data, "csrf_token": "forged"})
    assert forged.status_code == 403
    wrong = web.post("/ui/sign-in/reset", data={**data, "reset_token": "cfr_wrong", "csrf_token": form})
    assert wrong.status_code == 401 and 'data-code="reset_token_invalid"' in wrong.text
    done = web.post("/ui/sign-in/reset", data={**data, "csrf_token": form})
    assert done.url.path == "/ui/sign-in" and "新密码已设置" in done.text
    sign_in(web, "wang.fang", NEW_PASSWORD)


def test_the_sign_in_throttle_is_per_address_behind_a_trusted_proxy_only(web: TestClient, world: App) -> None:
    add(world, "factory", "wang.fang", UserRole.MAKER)
    for i in range(world.settings.web.sign_in_max_failures):
        token = sign_in_form_token(web)
        web.post(
            "/ui/sign-in",
            data={"user_id": "wang.fang", "password": "wrong one 1", "csrf_token": token},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},  # no proxy is configured: the header means nothing
        )
    token = sign_in_form_token(web)
    locked = web.post(
        "/ui/sign-in",
        data={"user_id": "wang.fang", "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert locked.status_code == 401 and "retry-after" in locked.headers
    assert "请等待" in locked.text and 'id="sign-in-wait"' in locked.text
