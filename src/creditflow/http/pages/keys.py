"""Keys and passwords in the pages: an admin's page of the organisation's API keys (/ui/admin/keys: list,
create an organisation-wide key or a personal token showing its secret once, rotate, revoke), and every
user's account page (/ui/account: its own personal tokens, changing its password).

The handlers call the same `Access` and `WebSessions` methods as the JSON API with the signed-in user's
`Principal`, so the same rules refuse the same things (docs/SECURITY.md ("Keys, sessions and sign-in")).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from creditflow.http.pages.common import PageForbidden, PageUser, app_of, check_csrf, done, form_error, render
from creditflow.http.security import SESSION_COOKIE, client_address
from creditflow.identity.roles import UserRole
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import DomainError, InvalidInput

router = APIRouter(include_in_schema=False)
Token = Annotated[str, Form(max_length=200)]
DAY_S = 86_400


def _require_admin(user: WebUser) -> None:
    if UserRole.ADMIN not in user.roles:
        raise PageForbidden(
            "only an admin of the organisation manages its API keys · 只有本机构的管理员可以管理 API 密钥"
        )


def _lifetime(days: str) -> int | None:
    text = days.strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 3650:
        raise InvalidInput("expires in: a whole number of days", code="api_key_lifetime_invalid", field="expires_in_s")
    return int(text) * DAY_S


def _keys(request: Request, user: WebUser) -> list[dict[str, Any]]:
    app = app_of(request)
    now = app.clock.now_ms()
    return [k.to_json(now) for k in app.access.keys_visible_to(user.principal)]


def _names(request: Request, user: WebUser) -> dict[str, str]:
    return app_of(request).sessions.user_names(user.org_id)


# --- the admin's page of the organisation's keys --------------------------------------------------------


@router.get("/ui/admin/keys")
def admin_keys(request: Request, user: PageUser) -> HTMLResponse:
    _require_admin(user)
    return render(request, "admin_keys.html", keys=_keys(request, user), names=_names(request, user))


@router.post("/ui/admin/keys", response_model=None)
def admin_create_key(
    request: Request,
    user: PageUser,
    csrf_token: Token = "",
    label: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=20)] = "organisation",
    expires_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    check_csrf(user, csrf_token)
    _require_admin(user)
    app = app_of(request)
    try:
        token, info = app.access.issue_key(
            user.principal,
            label=label.strip() or "default",
            personal=kind == "personal",
            expires_in_s=_lifetime(expires_days),
        )
    except DomainError as error:
        return render(
            request,
            "admin_keys.html",
            status=error.status,
            keys=_keys(request, user),
            names=_names(request, user),
            **form_error(error, rename={"expires_in_s": "expires_days"}),
        )
    return render(
        request, "admin_keys.html", keys=_keys(request, user), names=_names(request, user), secret=token, created=info
    )


@router.post("/ui/admin/keys/{key_id}/{action}", response_model=None)
def admin_key_action(request: Request, user: PageUser, key_id: str, action: str, csrf_token: Token = "") -> Response:
    check_csrf(user, csrf_token)
    _require_admin(user)
    return _key_action(request, user, key_id, action, "/ui/admin/keys", "admin_keys.html")


# --- the user's own account: personal tokens, password ------------------------------------------------


def _account(request: Request, user: WebUser, *, status: int = 200, **context: Any) -> HTMLResponse:
    mine = [k for k in _keys(request, user) if k["user_id"] == user.user_id]
    return render(request, "account.html", status=status, tokens=mine, is_admin=UserRole.ADMIN in user.roles, **context)


@router.get("/ui/account")
def account(request: Request, user: PageUser) -> HTMLResponse:
    return _account(request, user)


@router.post("/ui/account/tokens", response_model=None)
def create_token(
    request: Request,
    user: PageUser,
    csrf_token: Token = "",
    label: Annotated[str, Form(max_length=200)] = "",
    expires_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    check_csrf(user, csrf_token)
    app = app_of(request)
    try:
        token, info = app.access.issue_key(
            user.principal, label=label.strip() or "personal", personal=True, expires_in_s=_lifetime(expires_days)
        )
    except DomainError as error:
        return _account(
            request, user, status=error.status, **form_error(error, rename={"expires_in_s": "expires_days"})
        )
    return _account(request, user, secret=token, created=info)


@router.post("/ui/account/tokens/{key_id}/{action}", response_model=None)
def token_action(request: Request, user: PageUser, key_id: str, action: str, csrf_token: Token = "") -> Response:
    check_csrf(user, csrf_token)
    return _key_action(request, user, key_id, action, "/ui/account", "account.html")


@router.post("/ui/account/password", response_model=None)
def change_password(
    request: Request,
    user: PageUser,
    csrf_token: Token = "",
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    check_csrf(user, csrf_token)
    app = app_of(request)
    address = client_address(request, app.settings.web.forwarded_for_hops)
    try:
        app.sessions.change_password(user.principal, current_password, new_password, address=address)
    except DomainError as error:
        return _account(request, user, status=error.status, **form_error(error, rename={"password": "new_password"}))
    response = done("/ui/sign-in", "Password changed: sign in with the new one · 密码已更改，请用新密码登录")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _key_action(request: Request, user: WebUser, key_id: str, action: str, back: str, template: str) -> Response:
    app = app_of(request)
    try:
        if action == "revoke":
            app.access.revoke(user.principal, key_id)
            return done(back, f"Revoked key {key_id} · 已吊销密钥 {key_id}")
        if action == "rotate":
            token, info = app.access.rotate(user.principal, key_id)
        else:
            return RedirectResponse(back, status_code=303)
    except DomainError as error:
        shown = form_error(error, rename={"key_id": ""})  # not a field of the page's forms: shown on top
        if template == "account.html":
            return _account(request, user, status=error.status, **shown)
        return render(
            request, template, status=error.status, keys=_keys(request, user), names=_names(request, user), **shown
        )
    if template == "account.html":
        return _account(request, user, secret=token, created=info)
    return render(request, template, keys=_keys(request, user), names=_names(request, user), secret=token, created=info)
