"""Signing in to the pages: Argon2id passwords, lock-out, sessions, CSRF, cookies, headers."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from web_helpers import PASSWORD, add_user, sign_in, sign_in_form_token

from conftest import issue_accepted
from creditflow.bootstrap import App
from creditflow.identity.tables import users
from creditflow.kernel.errors import InvalidInput


def test_password_is_stored_as_an_argon2id_hash_only(world: App) -> None:
    add_user(world, "factory", "wang.fang")
    with world.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.user_id == "wang.fang")).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert "m=8192" in stored  # the configured memory cost (tests lower it; the default is 64 MiB)


@pytest.mark.parametrize(
    ("password", "code"), [("short1", "password_too_short"), ("aaaaaaaaaaaa", "password_too_weak")]
)
def test_weak_passwords_are_refused(world: App, password: str, code: str) -> None:
    world.people.add("factory", "wang.fang", "Wang Fang", ["maker", "approver"])
    with pytest.raises(InvalidInput) as refused:
        world.sessions.set_password("wang.fang", password)
    assert refused.value.code == code


def test_sign_in_leads_to_the_roles_home_page(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    sign_in(web, "wang.fang")
    page = web.get("/ui")
    assert page.url.path == "/ui/supplier/pieces"
    assert "My pieces" in page.text and "Wang Fang" in page.text


def test_session_cookie_is_httponly_and_same_site_strict(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    token = sign_in_form_token(web)
    response = web.post(
        "/ui/sign-in",
        data={"user_id": "wang.fang", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("cf_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


def test_wrong_password_and_unknown_user_get_the_same_answer(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    answers = []
    for user_id, password in (("wang.fang", "wrong password 1"), ("nobody", PASSWORD)):
        token = sign_in_form_token(web)
        response = web.post("/ui/sign-in", data={"user_id": user_id, "password": password, "csrf_token": token})
        answers.append((response.status_code, re.search(r'role="alert"[^>]*>([^<]+)<', response.text).group(1)))  # type: ignore[union-attr]
    assert answers[0] == answers[1] == (401, "the user name or the password is wrong")
    assert "cf_session" not in web.cookies


def test_too_many_wrong_passwords_make_the_user_wait(web: TestClient, world: App, clock) -> None:  # type: ignore[no-untyped-def]
    add_user(world, "factory", "wang.fang")
    for _ in range(world.settings.web.sign_in_max_failures):
        token = sign_in_form_token(web)
        web.post("/ui/sign-in", data={"user_id": "wang.fang", "password": "not it at all", "csrf_token": token})
    token = sign_in_form_token(web)
    locked = web.post("/ui/sign-in", data={"user_id": "wang.fang", "password": PASSWORD, "csrf_token": token})
    wait_s = world.settings.web.sign_in_delay_base_s
    assert locked.status_code == 401 and "too many wrong passwords" in locked.text
    assert locked.headers["retry-after"] == str(wait_s)
    assert f"wait {wait_s} s" in locked.text and f"请等待 {wait_s} 秒后再试" in locked.text  # English and Chinese
    assert "cf_session" not in web.cookies
    clock.advance(wait_s * 1000)  # a short, growing delay: not a long lock an attacker could impose
    sign_in(web, "wang.fang")


def test_sign_in_form_without_its_token_is_refused(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    response = web.post("/ui/sign-in", data={"user_id": "wang.fang", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 403
    assert "cf_session" not in web.cookies


def test_pages_redirect_to_sign_in_and_back(web: TestClient, world: App) -> None:
    response = web.get("/ui/supplier/pieces", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in?next=%2Fui%2Fsupplier%2Fpieces"


def test_next_never_leaves_the_site(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    for evil in ("https://evil.example/", "//evil.example/ui", "/ui\\..\\x"):
        token = sign_in_form_token(web)
        response = web.post(
            "/ui/sign-in",
            data={"user_id": "wang.fang", "password": PASSWORD, "csrf_token": token, "next": evil},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/ui"


def test_another_roles_pages_are_refused(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    sign_in(web, "wang.fang")
    assert web.get("/ui/bank").status_code == 403
    assert web.get("/ui/audit").status_code == 403


def test_form_posts_need_the_sessions_csrf_token(web: TestClient, world: App) -> None:
    world.ledger.transfer("factory", issue_accepted(world), "steel", 50_000)
    add_user(world, "steel", "wang.fang")
    csrf = sign_in(web, "wang.fang")
    pending = world.queries.pieces_by_holder("steel", live_only=True).items
    target = next(p for p in pending if p.state.value == "pending")
    forged = web.post(f"/ui/supplier/pieces/{target.id}/accept", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert world.queries.piece(target.id).state.value == "pending"
    accepted = web.post(f"/ui/supplier/pieces/{target.id}/accept", data={"csrf_token": csrf})
    assert accepted.status_code == 200 and "Accepted piece" in accepted.text
    assert world.queries.piece(target.id).state.value == "active"


def test_the_api_takes_the_session_cookie_and_wants_csrf_for_writes(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang", roles=("admin",))
    csrf = sign_in(web, "wang.fang")
    assert web.get("/v1/me").json()["org_id"] == "factory"
    body = {"user_id": "li.na", "name": "Li Na", "roles": ["maker"]}
    refused = web.post("/v1/users", json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    created = web.post("/v1/users", json=body, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201


def test_sign_out_ends_the_session(web: TestClient, world: App) -> None:
    add_user(world, "factory", "wang.fang")
    csrf = sign_in(web, "wang.fang")
    cookie = web.cookies["cf_session"]
    web.post("/ui/sign-out", data={"csrf_token": csrf})
    web.cookies.set("cf_session", cookie)  # a stolen copy of the cookie is worthless now
    assert web.get("/ui/supplier/pieces", follow_redirects=False).status_code == 303
    assert web.get("/v1/me").status_code == 401


def test_sessions_expire(web: TestClient, world: App, clock) -> None:  # type: ignore[no-untyped-def]
    add_user(world, "factory", "wang.fang")
    sign_in(web, "wang.fang")
    clock.advance(world.settings.web.session_ttl_s * 1000 + 1)
    assert web.get("/ui/supplier/pieces", follow_redirects=False).status_code == 303


def test_pages_carry_security_headers(web: TestClient, world: App) -> None:
    page = web.get("/ui/sign-in")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    api = web.get("/healthz")
    assert api.headers["x-content-type-options"] == "nosniff"


def test_plotly_is_served_from_the_installed_package(web: TestClient) -> None:
    script = web.get("/ui/vendor/plotly.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert len(script.content) > 1_000_000 and b"plotly" in script.content[:2000].lower()
