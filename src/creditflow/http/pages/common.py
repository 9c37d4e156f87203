"""The web pages' shell: sign-in and sign-out, the home page of each role, static files, and the
helpers every role's pages use (`render`, `page_user`, `check_csrf`, `form_error`).

Pages are server-rendered HTML with plain forms (they work without a build step and, for the forms,
without JavaScript); charts and live alarms use small scripts served from this package and plotly.js
served from the installed ``plotly`` wheel. Nothing is fetched from a CDN.

Every page handler is a plain ``def`` (FastAPI runs it in its thread pool) that calls the same services
and visibility rules as the JSON API with the signed-in user's `Principal`.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import anyio
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from creditflow.bootstrap import App
from creditflow.http.security import SAFE_METHODS, SESSION_COOKIE, STATE_KEY, client_address
from creditflow.http.templating import STATIC, environment
from creditflow.http.vendor import plotly_js_path
from creditflow.identity.roles import UserRole
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import DomainError
from creditflow.ledger.model.parties import Role

SIGN_IN_CSRF_COOKIE = "cf_signin"

# The menu of each role: (path, label). Each role's page module adds its pages here.
NAV: dict[Role, list[tuple[str, str]]] = {role: [] for role in Role}
HOME: dict[Role, str] = {}

_env = environment()


class SignInRequired(Exception):
    def __init__(self, next_path: str):
        self.next_path = next_path


class PageForbidden(Exception):
    def __init__(self, message: str, code: str = "forbidden"):
        self.message = message
        self.code = code


def app_of(request: Request) -> App:
    app: App = getattr(request.app.state, STATE_KEY)
    return app


async def signed_in_user(request: Request) -> WebUser:
    """The signed-in user, or a redirect to the sign-in page (which comes back here afterwards)."""
    token = request.cookies.get(SESSION_COOKIE)
    user = await anyio.to_thread.run_sync(app_of(request).sessions.resolve, token) if token else None
    if user is None:
        raise SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    request.state.web_user = user
    return user


async def page_user(request: Request) -> WebUser:
    """The signed-in user (`signed_in_user`), under the pages' one shared rule, as the API's `caller`:
    a person who only looks (no role but ``viewer``) posts no form that changes something (403)."""
    user = await signed_in_user(request)
    if request.method not in SAFE_METHODS and not user.roles - {UserRole.VIEWER}:
        raise PageForbidden("a viewer only looks: this changes something", code="user_role_not_allowed")
    return user


PageUser = Annotated[WebUser, Depends(page_user)]
SignedInUser = Annotated[WebUser, Depends(signed_in_user)]

# Pages for people by their roles within the organisation, whatever the organisation's platform role:
# (path, label, the user role that sees the link). The admin's pages add theirs here.
PERSON_NAV: list[tuple[str, str, UserRole]] = []


def nav_of(user: WebUser) -> list[tuple[str, str]]:
    """The menu of ``user``: its organisation's role's pages, then those of its own roles."""
    return NAV.get(user.role, []) + [(href, label) for href, label, role in PERSON_NAV if role in user.roles]


def role_pages(*roles: Role) -> Any:
    """A dependency: the signed-in user, who must have one of ``roles`` (else a 403 page)."""

    async def dependency(request: Request) -> WebUser:
        user = await page_user(request)
        if user.role not in roles:
            raise PageForbidden(
                f"these pages are for {', '.join(r.value for r in roles)}; you sign in as {user.role.value}"
            )
        return user

    return Depends(dependency)


def check_csrf(user: WebUser, token: str | None) -> None:
    """A form post must carry the session's CSRF token (the hidden ``csrf_token`` field of every form)."""
    if not token or not secrets.compare_digest(token.encode(), user.csrf_token.encode()):
        raise PageForbidden("the form has expired or did not come from these pages: reload the page and try again")


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    user: WebUser | None = getattr(request.state, "web_user", None)
    html = _env.get_template(template).render(
        request=request,
        user=user,
        nav=nav_of(user) if user else [],
        path=request.url.path,
        notice=request.query_params.get("ok"),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def done(path: str, message: str) -> RedirectResponse:
    """Post/redirect/get: after an action, back to ``path`` with a one-line notice."""
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{sep}{urlencode({'ok': message})}", status_code=303)


def form_error(error: DomainError, rename: dict[str, str] | None = None) -> dict[str, Any]:
    """What a form shows for a refused action: the message, the stable code, and the field at fault
    (``rename``: the service's field name -> the form's, where they differ)."""
    field = (rename or {}).get(error.field or "", error.field)
    return {"error": {"message": error.message, "code": error.code, "field": field}}


def _safe_next(value: str | None) -> str:
    """Only our own pages (no open redirect to another site)."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui"


router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=303)


def _form_token(request: Request, csrf_token: str) -> str | None:
    """The signed-out forms' CSRF token (their cookie) if the form echoed it, else None."""
    expected = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        return None
    return expected


def _refused(request: Request, template: str, refusal: DomainError, /, **context: Any) -> HTMLResponse:
    """The signed-out form again with the refusal, and ``Retry-After`` when a sign-in delay says when."""
    wait_s = refusal.details.get("retry_after_s")
    page = render(request, template, status=refusal.status, wait_s=wait_s, **context)
    if isinstance(wait_s, int):
        page.headers["Retry-After"] = str(wait_s)
    return page


@router.get("/ui/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", next=_safe_next(next), csrf_token=token)
    _set_cookie(request, response, SIGN_IN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.post("/ui/sign-in", response_model=None)
def sign_in(
    request: Request,
    user_id: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/ui",
) -> Response:
    expected = _form_token(request, csrf_token)
    if expected is None:
        return render(
            request,
            "sign_in.html",
            status=403,
            next=_safe_next(next),
            csrf_token=request.cookies.get(SIGN_IN_CSRF_COOKIE, ""),
            error={"message": "the sign-in form has expired: reload the page", "code": "csrf_failed", "field": None},
        )
    app = app_of(request)
    address = client_address(request, app.settings.web.forwarded_for_hops)
    try:
        token, _user = app.sessions.sign_in(user_id.strip(), password, address=address)
    except DomainError as error:
        return _refused(
            request,
            "sign_in.html",
            error,
            next=_safe_next(next),
            csrf_token=expected,
            user_id=user_id,
            **form_error(error),
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=app.settings.web.session_ttl_s)
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path="/ui/sign-in")
    return response


@router.get("/ui/sign-in/reset")
def reset_page(request: Request) -> HTMLResponse:
    """Setting a new password with the one-time token an admin handed over (POST
    /v1/users/{user_id}/password-reset). The sign-in form's CSRF cookie covers this path too."""
    token = secrets.token_urlsafe(24)
    response = render(request, "reset_password.html", csrf_token=token)
    _set_cookie(request, response, SIGN_IN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.post("/ui/sign-in/reset", response_model=None)
def reset_password(
    request: Request,
    user_id: Annotated[str, Form(max_length=64)] = "",
    reset_token: Annotated[str, Form(max_length=200)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    expected = _form_token(request, csrf_token)
    if expected is None:
        error = {"message": "the form has expired: reload the page", "code": "csrf_failed", "field": None}
        cookie = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
        return render(request, "reset_password.html", status=403, csrf_token=cookie, error=error)
    app = app_of(request)
    address = client_address(request, app.settings.web.forwarded_for_hops)
    try:
        app.sessions.redeem_reset(user_id.strip(), reset_token.strip(), new_password, address=address)
    except DomainError as error:
        return _refused(
            request,
            "reset_password.html",
            error,
            csrf_token=expected,
            user_id=user_id,
            **form_error(error, rename={"password": "new_password"}),
        )
    return done("/ui/sign-in", "New password set: sign in with it · 新密码已设置，请用它登录")


@router.post("/ui/sign-out")
def sign_out(request: Request, user: SignedInUser, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    check_csrf(user, csrf_token)
    app_of(request).sessions.sign_out(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/ui")
def home(user: PageUser) -> RedirectResponse:
    return RedirectResponse(HOME.get(user.role, "/ui/account"), status_code=303)


@router.get("/ui/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    """plotly.js from the installed ``plotly`` wheel: charts without a CDN."""
    return FileResponse(
        plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


def _set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int) -> None:
    secure = app_of(request).settings.web.cookie_secure
    path = "/ui/sign-in" if name == SIGN_IN_CSRF_COOKIE else "/"
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict", secure=secure)


def install(api: FastAPI) -> None:
    """Mount the pages on the API application: the routers of every role, static files, and the
    handlers that turn "sign in first" and "not for you" into a redirect and a page."""
    from creditflow.http.pages import admin as pages_admin
    from creditflow.http.pages import auditor as pages_auditor
    from creditflow.http.pages import bank as pages_bank
    from creditflow.http.pages import core as pages_core
    from creditflow.http.pages import credit as pages_credit
    from creditflow.http.pages import keys as pages_keys
    from creditflow.http.pages import supplier as pages_supplier

    api.include_router(router)
    for module in (pages_supplier, pages_core, pages_bank, pages_auditor, pages_credit, pages_admin, pages_keys):
        api.include_router(module.router)
    api.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @api.exception_handler(SignInRequired)
    async def _sign_in_first(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/ui/sign-in?next={quote(exc.next_path, safe='')}", status_code=303)

    @api.exception_handler(PageForbidden)
    async def _forbidden(request: Request, exc: PageForbidden) -> Response:
        return render(request, "error.html", status=403, message=exc.message, code=exc.code)
