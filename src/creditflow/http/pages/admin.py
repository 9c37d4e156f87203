"""The admin's pages: an organisation's users and their roles (any organisation: core enterprise, supplier,
bank, auditor, operator). Only a signed-in user holding the ``admin`` role sees them (others get the 403
page); adding a user (with an initial password for the pages) and changing roles go through the same
service and rules as ``POST /v1/users`` and ``PUT /v1/users/{user_id}/roles`` (`PeopleService`): never
another organisation's user, never without an admin left.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from creditflow.http.pages.common import (
    PERSON_NAV,
    PageForbidden,
    app_of,
    check_csrf,
    done,
    form_error,
    page_user,
    render,
)
from creditflow.identity.roles import UserRole
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import DomainError

router = APIRouter(include_in_schema=False)

PERSON_NAV.append(("/ui/admin/users", "Users", UserRole.ADMIN))

ROLE_CHOICES = [
    (UserRole.ADMIN, "manages the organisation's users and roles"),
    (UserRole.MAKER, "prepares: enters payables, proposes, applies"),
    (UserRole.APPROVER, "approves what a maker prepared, never their own"),
    (UserRole.VIEWER, "only looks"),
]


async def _admin(request: Request) -> WebUser:
    user = await page_user(request)
    if UserRole.ADMIN not in user.roles:
        raise PageForbidden("these pages are for the organisation's admins", code="user_role_not_allowed")
    return user


Admin = Annotated[WebUser, Depends(_admin)]


def _page(request: Request, user: WebUser, *, status: int = 200, **context: Any) -> HTMLResponse:
    people = app_of(request).people.of(user.org_id)
    return render(request, "admin/users.html", status=status, people=people, role_choices=ROLE_CHOICES, **context)


@router.get("/ui/admin/users")
def users(request: Request, user: Admin) -> HTMLResponse:
    return _page(request, user)


@router.post("/ui/admin/users", response_model=None)
def add_user(
    request: Request,
    user: Admin,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    user_id: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Add a user with its roles and an initial password (the user should change it)."""
    check_csrf(user, csrf_token)
    app = app_of(request)
    try:
        app.sessions.check_password_policy(password)
        app.people.create(user.principal, user_id.strip(), name, roles or [])
        app.sessions.set_password(user_id.strip(), password)
    except DomainError as error:
        return _page(
            request,
            user,
            status=error.status,
            form="add",
            new_user={"user_id": user_id, "name": name},
            **form_error(error),
        )
    return done("/ui/admin/users", f"User {user_id.strip()} added: give them the initial password in person.")


@router.post("/ui/admin/users/{user_id}/roles", response_model=None)
def set_roles(
    request: Request,
    user_id: str,
    user: Admin,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    check_csrf(user, csrf_token)
    try:
        person = app_of(request).people.set_roles(user.principal, user_id, roles or [])
    except DomainError as error:
        return _page(request, user, status=error.status, form=f"roles-{user_id}", **form_error(error))
    shown = ", ".join(sorted(r.value for r in person.roles))
    return done("/ui/admin/users", f"The roles of {user_id} are now: {shown}.")
