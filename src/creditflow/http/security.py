"""Who is calling: API keys (``Authorization: Bearer cf_...`` or ``X-API-Key: cf_...``) and role rules.

`caller` is the FastAPI dependency every authenticated endpoint takes; it resolves the key through
`Access.authenticate` (cached in memory after the first look-up) into a `Principal`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated

import anyio
from fastapi import Depends, Request

from creditflow.bootstrap import App
from creditflow.http.ratelimit import charge_principal
from creditflow.identity.access import Principal
from creditflow.identity.roles import Auth, UserRole
from creditflow.kernel.errors import Forbidden, Unauthenticated
from creditflow.ledger.model.parties import Role

STATE_KEY = "creditflow"
SESSION_COOKIE = "cf_session"  # set by the sign-in page (creditflow.http); HttpOnly, SameSite=Strict
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# For the OpenAPI document (the "Authorize" button): `create_app` lists these as the security of every
# operation that takes `Caller`. They are not FastAPI security dependencies: those would be solved on
# every request only to be ignored, since `caller` reads the headers itself.
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer cf_..."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "X-API-Key: cf_..."},
}


async def get_app(request: Request) -> App:
    """The `App` this API was created for (stored on the FastAPI instance by `create_app`).
    ``async`` so FastAPI does not hop to a worker thread for it on every request."""
    app: App = getattr(request.app.state, STATE_KEY)
    return app


AppDep = Annotated[App, Depends(get_app)]


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries: a Bearer token, else ``X-API-Key``; None if neither."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    api_key = headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


async def caller(request: Request, app: AppDep) -> Principal:
    """Authenticate the request (401 ``unauthenticated`` if there is no valid key) and apply the one rule
    every endpoint shares: a person who only looks (no role but ``viewer``) changes nothing (403
    ``user_role_not_allowed`` for any state-changing method; `refuse_onlookers`). A key seen before is
    answered from memory on the event loop; a new one is looked up in a worker thread."""
    principal = await self_caller(request, app)
    refuse_onlookers(principal, request.method)
    return principal


def refuse_onlookers(principal: Principal, method: str) -> None:
    """403 ``user_role_not_allowed`` for a state-changing ``method`` of a person holding no role other than
    ``viewer``. Organisation-wide keys are not people (what they may not do is checked where it matters:
    approving needs a person); admin-only and approver-only operations check their role themselves."""
    if method not in SAFE_METHODS and principal.is_person and not principal.user_roles - {UserRole.VIEWER}:
        raise Forbidden("a viewer only looks: this changes something", code="user_role_not_allowed")


async def self_caller(request: Request, app: AppDep) -> Principal:
    """`caller` without the viewer rule: for what a person does to their own account only (their own
    password, sign-out, their own tokens), which a viewer may do too."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    token = token_from_headers(request.headers)
    if token is None and SESSION_COOKIE in request.cookies:
        principal = await _session_principal(request, app, request.cookies[SESSION_COOKIE])
    else:
        found = app.access.cached(token)
        principal = found if found is not None else await anyio.to_thread.run_sync(app.access.authenticate, token)
    request.state.principal = principal
    charge_principal(request, principal)  # 429 rate_limited once its key's bucket is empty
    return principal


async def _session_principal(request: Request, app: App, session_token: str) -> Principal:
    """A user signed in to the pages calls the API with its session cookie (the pages' scripts do:
    live alarms, acknowledging them). A state-changing call must echo the session's CSRF token in
    ``X-CSRF-Token``: a cross-site form or script can send the cookie but cannot read the token."""
    user = await anyio.to_thread.run_sync(app.sessions.resolve, session_token)
    if user is None:
        raise Unauthenticated("the session has ended: sign in again", code="session_expired")
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, "").encode(), user.csrf_token.encode()
    ):
        raise Forbidden("the request lacks the page's CSRF token (X-CSRF-Token)", code="csrf_failed")
    request.state.web_user = user
    return user.principal


Caller = Annotated[Principal, Depends(caller)]
SelfCaller = Annotated[Principal, Depends(self_caller)]


def credential_of(request: Request, principal: Principal) -> str:
    """Which credential authenticated the request, as an approval records it: ``key:<api key id>`` for a
    key, ``session:<reference>`` for a web session (the first 16 hex digits of the SHA-256 the session is
    stored under: enough to find the session, useless to sign in with)."""
    if principal.auth == Auth.SESSION:
        token = request.cookies.get(SESSION_COOKIE, "")
        return "session:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return f"key:{principal.key_id}"


OVERSEERS = frozenset({Role.OPERATOR, Role.AUDITOR})


def is_overseer(principal: Principal) -> bool:
    """Operator and auditor see every object (not act on them)."""
    return principal.role in OVERSEERS


def require_role(principal: Principal, *roles: Role, what: str = "do this") -> None:
    """403 ``role_not_allowed`` unless the caller has one of ``roles``."""
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"a {principal.role.value} may not {what} (allowed: {allowed})", code="role_not_allowed")


def client_address(request: Request, forwarded_for_hops: int) -> str:
    """The client's address for sign-in throttling: the TCP peer, unless ``forwarded_for_hops`` (the
    ``web.forwarded_for_hops`` setting) says that many reverse proxies in front append to
    ``X-Forwarded-For``: then the address the outermost of them saw (n-th from the right). Without that
    setting the header is ignored: any client can write it."""
    peer = request.client.host if request.client else "unknown"
    if forwarded_for_hops <= 0:
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    if len(hops) < forwarded_for_hops:
        return hops[0][:200] if hops else peer
    return hops[-forwarded_for_hops][:200]
