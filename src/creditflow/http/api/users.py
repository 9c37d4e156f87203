"""An organisation's people and their roles: /v1/users.

Only an admin (a person holding the ``admin`` role, signed in or with a personal token) adds users and
changes roles: an organisation-wide key is nobody (403 ``person_required``), a person without the role
gets 403 ``user_role_not_allowed``. The list of users and roles is the organisation's own business: its
admins and its organisation-wide key (the organisation's own systems) read it; other people of the
organisation do not need it (403 ``user_role_not_allowed``). Another organisation's user answers as one
that does not exist (404 ``user_not_found``). Every change is notified to the organisation's admins.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from creditflow.http.common import Cursor, Limit, error_responses
from creditflow.http.schemas import Page, RequestBody
from creditflow.http.security import AppDep, Caller
from creditflow.identity.roles import UserRole, require_user_role

router = APIRouter(tags=["people"])

_ROLES = ", ".join(r.value for r in UserRole)


class UserIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_id": "li.wei", "name": "Li Wei", "roles": ["approver"]}]},
    )
    user_id: str = Field(min_length=1, max_length=64, description="sign-in name: letters, digits and _ . @ -")
    name: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(min_length=1, max_length=4, description=f"one or more of {_ROLES}")


class RolesIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"roles": ["maker", "approver"]}]})
    roles: list[str] = Field(min_length=1, max_length=4, description=f"the user's new roles: {_ROLES}")


class UserOut(BaseModel):
    user_id: str
    org_id: str
    name: str
    roles: list[str]


@router.post("/v1/users", status_code=201, response_model=UserOut, responses=error_responses(401, 403, 404, 409, 422))
def add_user(body: UserIn, app: AppDep, who: Caller) -> UserOut:
    """An admin adds a user to the caller's organisation with its roles (a password for the pages is
    set on the admin's page or with ``creditflow users add``)."""
    person = app.people.create(who, body.user_id, body.name, body.roles)
    return UserOut.model_validate(person.to_json())


@router.get("/v1/users", response_model=Page[UserOut], responses=error_responses(401, 403, 422))
def list_users(app: AppDep, who: Caller, limit: Limit = None, cursor: Cursor = None) -> Page[UserOut]:
    """The caller's organisation's users and their roles, by user id: for its admins and its
    organisation-wide key."""
    if who.is_person:
        require_user_role(who, UserRole.ADMIN, what="list the organisation's users")
    page = app.people.page(who.org_id, limit=app.queries.page_size(limit), cursor=cursor)
    return Page[UserOut](items=[UserOut.model_validate(p.to_json()) for p in page.items], next_cursor=page.next_cursor)


@router.put("/v1/users/{user_id}/roles", response_model=UserOut, responses=error_responses(401, 403, 404, 409, 422))
def set_roles(user_id: str, body: RolesIn, app: AppDep, who: Caller) -> UserOut:
    """An admin replaces the roles of one of the organisation's users; the last admin keeps ``admin``
    (409 ``last_admin``)."""
    person = app.people.set_roles(who, user_id, body.roles)
    return UserOut.model_validate(person.to_json())
