"""What a person may do within its organisation: the user roles (separation of duties).

An organisation's role on the platform (core enterprise, supplier, bank, ...) says what the organisation may
do; a user's roles say which of its people may do it. ``admin`` manages the organisation's users, roles and
keys; ``maker`` prepares (enters payables, proposes, applies); ``approver`` approves what a maker prepared
(never their own); ``viewer`` only looks. A user may hold several roles. An organisation-wide API key is not
a person: it may prepare, never approve (`require_person`).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING

from creditflow.kernel.errors import Forbidden, InvalidInput

if TYPE_CHECKING:
    from creditflow.identity.access import Principal


class UserRole(StrEnum):
    ADMIN = "admin"
    MAKER = "maker"
    APPROVER = "approver"
    VIEWER = "viewer"


class Auth(StrEnum):
    """How a caller proved who it is (recorded with every approval)."""

    API_KEY = "api_key"  # an organisation-wide key: the organisation, not a person
    PERSONAL_TOKEN = "personal_token"  # an API key bound to one user
    SESSION = "session"  # a signed-in web session


def parse_roles(values: str | Iterable[str]) -> frozenset[UserRole]:
    """Roles from their stored form (space-separated) or a list; 422 ``unknown_user_role`` for a name
    that is not a role."""
    names = values.split() if isinstance(values, str) else list(values)
    try:
        return frozenset(UserRole(name) for name in names)
    except ValueError:
        known = ", ".join(r.value for r in UserRole)
        raise InvalidInput(f"roles are {known}", code="unknown_user_role", field="roles") from None


def format_roles(roles: Iterable[UserRole]) -> str:
    """The stored form: sorted, space-separated (canonical, so equal sets store equal text)."""
    return " ".join(sorted(r.value for r in roles))


def require_person(principal: Principal, *, what: str = "do this") -> str:
    """The caller's user id, or 403 ``person_required`` for an organisation-wide key."""
    if principal.user_id is None:
        raise Forbidden(
            f"an organisation-wide API key may not {what}: sign in, or use a personal token",
            code="person_required",
        )
    return principal.user_id


def require_user_role(principal: Principal, *roles: UserRole, what: str = "do this") -> str:
    """The caller's user id if the person holds one of ``roles``; 403 ``person_required`` for an
    organisation-wide key, 403 ``user_role_not_allowed`` for a person without the role."""
    user_id = require_person(principal, what=what)
    if not principal.user_roles & set(roles):
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"only a user with the role {allowed} may {what}", code="user_role_not_allowed")
    return user_id
