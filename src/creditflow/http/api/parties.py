"""Organisations and API keys: /v1/me, /v1/organisations, /v1/api-keys, /v1/notifications.

API keys (docs/SECURITY.md ("Keys, sessions and sign-in")): the organisation-wide key and the organisation's admins see
and manage all its keys; any other person only its own personal tokens. Another organisation's key, and
for a person who is not an admin a colleague's, answer 404 ``api_key_not_found`` like an absent one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from creditflow.http.common import Cursor, Limit, error_responses
from creditflow.http.idempotency import carries_secret
from creditflow.http.schemas import (
    ApiKeyIn,
    ApiKeyInfoOut,
    ApiKeyOut,
    DirectoryEntryOut,
    MeOut,
    NotificationOut,
    OrganisationCreatedOut,
    OrganisationIn,
    Page,
    ReceiptOut,
    RotateApiKeyIn,
    RotateKeyIn,
)
from creditflow.http.security import AppDep, Caller, require_role
from creditflow.identity.access import ApiKeyInfo
from creditflow.identity.roles import UserRole, require_user_role
from creditflow.kernel.errors import Forbidden, InvalidInput
from creditflow.ledger.model.parties import Party, Role
from creditflow.ledger.queries import decode_cursor, encode_cursor

router = APIRouter(tags=["organisations"])


def _org_fields(party: Party) -> dict[str, object]:
    return {
        "org_id": party.org_id,
        "name": party.name,
        "role": party.role,
        "uscc": party.uscc,
        "created_seq": party.created_seq,
    }


@router.get("/v1/me", response_model=MeOut, responses=error_responses(401), summary="The caller's organisation")
def me(app: AppDep, who: Caller) -> MeOut:
    """The caller's organisation."""
    party = app.queries.party(who.org_id)
    return MeOut.model_validate(
        {
            **_org_fields(party),
            "api_key_id": who.key_id,
            "user_id": who.user_id,
            "user_roles": sorted(who.user_roles),
            "auth": who.auth.value,
        }
    )


@router.get(
    "/v1/notifications",
    response_model=Page[NotificationOut],
    responses=error_responses(401, 403, 422),
    summary="Notifications to the caller's organisation's admins",
)
def notifications(
    app: AppDep,
    who: Caller,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Page[NotificationOut]:
    """What the platform told the organisation's admins (account changes, lock-outs, credit look-ups, ...),
    newest first.
    An admin, or the organisation-wide key; a person without the admin role may not read them."""
    if who.is_person:
        require_user_role(who, UserRole.ADMIN, what="read the organisation's notifications")
    page = app.notices.of(who.org_id, limit=app.queries.page_size(limit), cursor=cursor)
    return Page[NotificationOut](
        items=[NotificationOut.model_validate(n.to_json()) for n in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/v1/organisations",
    status_code=201,
    response_model=OrganisationCreatedOut,
    responses=error_responses(401, 403, 409, 422),
    dependencies=[carries_secret("the organisation exists; create a new API key for it (POST /v1/api-keys)")],
)
def register_organisation(body: OrganisationIn, app: AppDep, who: Caller) -> OrganisationCreatedOut:
    """Onboard an organisation (operator only) and hand out its first API key.

    With ``public_key`` the organisation keeps its private key (self custody) and signs its own
    operations for ``POST /v1/operations``; without, the platform creates and holds its key.

    With ``admin`` the organisation gets its first admin, a person who then adds its users and grants
    their roles (only admins do); the answer carries that admin's personal token, shown once."""
    require_role(who, Role.OPERATOR, what="register organisations")
    if body.admin is not None:
        app.people.check_new(body.admin.user_id)  # before the registration, which cannot be taken back
    public_key = bytes.fromhex(body.public_key) if body.public_key is not None else None
    receipt = app.ledger.register_organisation(body.org_id, body.name, body.role, body.uscc, public_key=public_key)
    api_key = app.access.create_key(body.org_id, label="first key")
    admin_token = None
    if body.admin is not None:
        app.people.add(body.org_id, body.admin.user_id, body.admin.name, [UserRole.ADMIN])
        admin_token = app.access.create_key(body.org_id, label="first admin", user_id=body.admin.user_id)
    party = app.queries.party(body.org_id)
    return OrganisationCreatedOut.model_validate(
        {
            **_org_fields(party),
            "custody": "self" if public_key is not None else "platform",
            "api_key": api_key,
            "receipt": receipt.to_json(),
            "admin_user_id": body.admin.user_id if body.admin is not None else None,
            "admin_token": admin_token,
        }
    )


@router.get(
    "/v1/organisations",
    response_model=Page[DirectoryEntryOut],
    responses=error_responses(401, 422),
    summary="List organisations",
)
def directory(
    app: AppDep,
    who: Caller,
    limit: Annotated[int | None, Query(description="page size")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[DirectoryEntryOut]:
    """The directory of organisations (id, name, role), by org_id, for any authenticated caller."""
    page = app.queries.parties_page(cursor=cursor, limit=limit)
    return Page[DirectoryEntryOut](
        items=[DirectoryEntryOut(org_id=p.org_id, name=p.name, role=p.role) for p in page.items],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/v1/organisations/{org_id}/rotate-key",
    response_model=ReceiptOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def rotate_key(
    org_id: str,
    app: AppDep,
    who: Caller,
    body: Annotated[RotateKeyIn | None, Body()] = None,
) -> ReceiptOut:
    """Rotate an organisation's signing key (the organisation itself or the operator).

    The current key signs the new one onto the ledger. With ``public_key`` the new key is the
    organisation's own (self custody from now on); without, the platform makes and holds it. A
    self-custody organisation rotates by submitting a signed ``rotate_key`` to ``/v1/operations``."""
    if who.org_id != org_id and who.role != Role.OPERATOR:
        raise Forbidden("only the organisation itself or the operator rotates its key", code="role_not_allowed")
    app.queries.party(org_id)
    public_key = bytes.fromhex(body.public_key) if body is not None and body.public_key is not None else None
    receipt = app.ledger.rotate_key(org_id, new_public_key=public_key)
    return ReceiptOut.model_validate(receipt.to_json())


def _key_out(token: str, info: ApiKeyInfo, replaces: str | None = None) -> ApiKeyOut:
    return ApiKeyOut(
        org_id=info.org_id,
        key_id=info.key_id,
        api_key=token,
        label=info.label,
        user_id=info.user_id,
        expires_ts_ms=info.expires_ts_ms,
        replaces_key_id=replaces,
    )


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=ApiKeyOut,
    responses=error_responses(401, 403, 422),
    summary="Create an API key or a personal token",
    dependencies=[carries_secret("the key was created; create another one (POST /v1/api-keys) if it was lost")],
)
def create_api_key(
    app: AppDep,
    who: Caller,
    body: Annotated[ApiKeyIn | None, Body()] = None,
) -> ApiKeyOut:
    """A new API key for the caller's organisation (its secret shown once). ``personal``: a token of the
    calling person (403 ``person_required`` for an organisation-wide key); otherwise an organisation-wide
    key, which only the organisation-wide key or an admin may create (403 ``user_role_not_allowed``; the
    admins are told). Every key expires (``expires_in_s``, default and maximum from the settings: 422
    ``api_key_lifetime_invalid`` beyond)."""
    body = body or ApiKeyIn()
    token, info = app.access.issue_key(who, label=body.label, personal=body.personal, expires_in_s=body.expires_in_s)
    return _key_out(token, info)


@router.get(
    "/v1/api-keys",
    response_model=Page[ApiKeyInfoOut],
    responses=error_responses(401, 422),
    summary="List API keys",
)
def list_api_keys(
    app: AppDep,
    who: Caller,
    limit: Annotated[int | None, Query(description="page size")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ApiKeyInfoOut]:
    """The organisation's keys, newest first (for the organisation-wide key or an admin), or the calling
    person's own personal tokens (anyone else): id, label, owner, created, expires, last used, revoked.
    Never a secret."""
    size = app.settings.page_size_default if limit is None else limit
    if not 1 <= size <= app.settings.page_size_max:
        raise InvalidInput(f"limit: 1 to {app.settings.page_size_max}", field="limit")
    (start,) = decode_cursor(cursor, int) if cursor is not None else (0,)
    keys = app.access.keys_visible_to(who)
    now = app.clock.now_ms()
    more = int(start) + size < len(keys)
    return Page[ApiKeyInfoOut](
        items=[ApiKeyInfoOut.model_validate(k.to_json(now)) for k in keys[int(start) : int(start) + size]],
        next_cursor=encode_cursor(int(start) + size) if more else None,
    )


@router.post(
    "/v1/api-keys/{key_id}/revoke",
    response_model=ApiKeyInfoOut,
    responses=error_responses(401, 404, 422),
    summary="Revoke an API key",
)
def revoke_api_key(key_id: str, app: AppDep, who: Caller) -> ApiKeyInfoOut:
    """Revoke a key of the caller's organisation (the organisation-wide key or an admin: any; a person:
    its own personal tokens). It stops at once in this process and within ``auth_cache_ttl_s`` in every
    other (401 ``api_key_revoked``); the organisation's admins are told. 404 ``api_key_not_found`` for a key
    the caller may not manage, as for none."""
    return ApiKeyInfoOut.model_validate(app.access.revoke(who, key_id).to_json(app.clock.now_ms()))


@router.post(
    "/v1/api-keys/{key_id}/rotate",
    response_model=ApiKeyOut,
    responses=error_responses(401, 404, 409, 422),
    summary="Rotate an API key",
    dependencies=[carries_secret("the key was rotated; rotate it again (POST /v1/api-keys/{key_id}/rotate) if lost")],
)
def rotate_api_key(
    key_id: str,
    app: AppDep,
    who: Caller,
    body: Annotated[RotateApiKeyIn | None, Body()] = None,
) -> ApiKeyOut:
    """A new key (secret shown once) for the same owner and label; the old one is revoked in the same
    transaction. Who may: as for revoking. 409 ``api_key_revoked`` for a revoked key."""
    token, info = app.access.rotate(who, key_id, expires_in_s=body.expires_in_s if body is not None else None)
    return _key_out(token, info, replaces=key_id)
