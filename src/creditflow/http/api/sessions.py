"""Passwords and sign-in delays: /v1/users/{user_id}/password-reset, /v1/users/{user_id}/unlock,
/v1/me/password (docs/SECURITY.md ("Keys, sessions and sign-in")).

An admin (a signed-in person or a personal token with the admin role: an organisation-wide key is not a
person, 403 ``person_required``) resets a user's password or clears its sign-in delays; a user of another
organisation answers 404 ``user_not_found`` as an absent one does. A person changes its own password with
the current one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from creditflow.http.common import error_responses
from creditflow.http.idempotency import carries_secret
from creditflow.http.schemas import PasswordChangedOut, PasswordChangeIn, PasswordResetOut, UnlockOut
from creditflow.http.security import AppDep, Caller, client_address

router = APIRouter(tags=["organisations"])


@router.post(
    "/v1/users/{user_id}/password-reset",
    response_model=PasswordResetOut,
    responses=error_responses(401, 403, 404, 422),
    summary="Reset a user's password (admin)",
    dependencies=[carries_secret("the reset token was issued; reset the password again if it was lost")],
)
def reset_password(user_id: str, app: AppDep, who: Caller) -> PasswordResetOut:
    """The user's password, sessions and personal tokens stop now; its sign-in delays are cleared; the
    answer carries a one-time ``reset_token`` (shown once, valid ``web.password_reset_ttl_s``) for the admin
    to hand over: the user sets a new password with it at ``/ui/reset-password``. The organisation's admins
    are told."""
    token, expires = app.sessions.reset_password(who, user_id)
    return PasswordResetOut(user_id=user_id, reset_token=token, expires_ts_ms=expires)


@router.post(
    "/v1/users/{user_id}/unlock",
    response_model=UnlockOut,
    responses=error_responses(401, 403, 404, 422),
    summary="Clear a user's sign-in delays (admin)",
)
def unlock(user_id: str, app: AppDep, who: Caller) -> UnlockOut:
    """Forget the user's wrong-password counters, from every address (the addresses' own counters across
    users stay). The organisation's admins are told."""
    cleared = app.sessions.unlock(who, user_id)
    return UnlockOut(user_id=user_id, counters_cleared=cleared)


@router.post(
    "/v1/me/password",
    response_model=PasswordChangedOut,
    responses=error_responses(401, 403, 422),
    summary="Change one's own password",
)
def change_password(body: PasswordChangeIn, request: Request, app: AppDep, who: Caller) -> PasswordChangedOut:
    """A person (signed in, or with its personal token) changes its password: 422 ``current_password_wrong``
    (counted like a wrong sign-in), the password policy's codes for the new one. Every session of the
    user ends; personal tokens stay."""
    address = client_address(request, app.settings.web.forwarded_for_hops)
    app.sessions.change_password(who, body.current_password, body.new_password, address=address)
    assert who.user_id is not None
    return PasswordChangedOut(user_id=who.user_id, sessions_ended=True)
