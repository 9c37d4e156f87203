"""An organisation's people and their roles: only an admin adds users and grants roles.

Two doors, one rule each:

* `PeopleService.create` and `PeopleService.set_roles` are what an admin of the organisation does (the API,
  the admin pages). The caller must be a person (an organisation-wide key is nobody: 403 ``person_required``)
  whose roles *as stored now* include ``admin`` (403 ``user_role_not_allowed``): a principal cached before a
  role change neither keeps nor lacks powers here. An organisation never loses its last admin (409 ``last_admin``).
* `PeopleService.add` is the operator's: registering an organisation with its first admin
  (``POST /v1/organisations``, ``creditflow org create --admin``), ``creditflow users add``, the demo and the
  tests. It checks nothing of the caller, so only the composition root's callers that stand for the
  operator use it.

Every user added and every role change is notified to the organisation's admins (in the same transaction).
Each command is one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from creditflow.identity import store
from creditflow.identity.access import Principal
from creditflow.identity.reads import notify_admins
from creditflow.identity.roles import UserRole, format_roles, parse_roles, require_person
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from creditflow.ledger import reads as ledger
from creditflow.ledger.queries import Page, decode_cursor, page_from

USER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    org_id: str
    name: str
    roles: frozenset[UserRole]

    def to_json(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "org_id": self.org_id,
            "name": self.name,
            "roles": sorted(r.value for r in self.roles),
        }


def _person(user: store.User) -> Person:
    return Person(user.user_id, user.org_id, user.name, parse_roles(user.roles))


def check_user_id(user_id: str) -> None:
    if not USER_ID_RE.fullmatch(user_id):
        raise InvalidInput("user_id: 1-64 letters, digits and _ . @ -", code="invalid_user_id", field="user_id")


def _check_roles(roles: Iterable[UserRole | str]) -> frozenset[UserRole]:
    parsed = parse_roles([r.value if isinstance(r, UserRole) else r for r in roles])
    if not parsed:
        raise InvalidInput("a user needs at least one role", code="roles_required", field="roles")
    return parsed


class PeopleService:
    def __init__(self, engine: Engine, clock: Clock):
        self.engine = engine
        self.clock = clock

    # --- what an admin does ----------------------------------------------------------------------------

    def create(self, by: Principal, user_id: str, name: str, roles: Iterable[UserRole | str]) -> Person:
        """An admin of ``by``'s organisation adds a user to it with ``roles``."""
        require_person(by, what="add users")
        with self.engine.begin() as conn:
            self._check_admin_now(conn, by)
            return self._add(conn, by.org_id, user_id, name, roles, by=by.user_id)

    def set_roles(self, by: Principal, user_id: str, roles: Iterable[UserRole | str]) -> Person:
        """An admin of ``by``'s organisation replaces the roles of one of its users. A user of another
        organisation answers as one that does not exist (404 ``user_not_found``); taking ``admin`` from the
        organisation's last admin is refused (409 ``last_admin``)."""
        require_person(by, what="change roles")
        new = _check_roles(roles)
        with self.engine.begin() as conn:
            self._check_admin_now(conn, by)
            people = {u.user_id: _person(u) for u in store.users_of_org(conn, by.org_id, for_update=True)}
            target = people.get(user_id)
            if target is None:
                raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
            admins = {p.user_id for p in people.values() if UserRole.ADMIN in p.roles}
            if UserRole.ADMIN not in new and admins <= {user_id}:
                raise Conflict(
                    "the organisation would have no admin left: make another user admin first",
                    code="last_admin",
                    field="roles",
                )
            if new == target.roles:
                return target
            store.set_user_roles(conn, user_id, format_roles(new))
            notify_admins(
                conn,
                org_id=by.org_id,
                kind="user_roles_changed",
                message=f"{by.user_id} changed the roles of {user_id}: "
                f"{format_roles(target.roles) or '-'} -> {format_roles(new)}",
                now_ms=self.clock.now_ms(),
                data={
                    "user_id": user_id,
                    "by": by.user_id,
                    "before": sorted(r.value for r in target.roles),
                    "after": sorted(r.value for r in new),
                },
            )
        return Person(target.user_id, target.org_id, target.name, new)

    def of(self, org_id: str) -> list[Person]:
        """The users of ``org_id`` and their roles (the caller checks who may ask)."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            return [_person(u) for u in store.users_of_org(conn, org_id)]

    def page(self, org_id: str, *, limit: int, cursor: str | None = None) -> Page:
        """A page of the users of ``org_id`` (`Person`), by user id."""
        after = str(decode_cursor(cursor, str)[0]) if cursor else None
        with self.engine.connect().execution_options(read_only=True) as conn:
            rows = store.users_page(conn, org_id, limit=limit + 1, after=after)
        return page_from([_person(u) for u in rows], limit, lambda p: (p.user_id,))

    def _check_admin_now(self, conn: Connection, by: Principal) -> None:
        """The acting admin's roles as stored now, not as the (possibly cached) principal remembers them."""
        assert by.user_id is not None
        found = store.users_by_id(conn, [by.user_id]).get(by.user_id)
        if found is None or found.org_id != by.org_id or UserRole.ADMIN not in parse_roles(found.roles):
            raise Forbidden("only a user with the role admin may manage users", code="user_role_not_allowed")

    # --- the operator's door ---------------------------------------------------------------------------

    def add(self, org_id: str, user_id: str, name: str, roles: Iterable[UserRole | str]) -> Person:
        """Add a user to ``org_id`` with ``roles``, as the operator (no check of a caller: see the module)."""
        with self.engine.begin() as conn:
            return self._add(conn, org_id, user_id, name, roles, by=None)

    def check_new(self, user_id: str) -> None:
        """That ``user_id`` is well-formed and free (before registering an organisation around it)."""
        check_user_id(user_id)
        with self.engine.connect().execution_options(read_only=True) as conn:
            if store.user_exists(conn, user_id):
                raise Conflict(f"user {user_id!r} exists", code="user_exists", field="user_id")

    def get(self, user_id: str) -> Person:
        with self.engine.connect().execution_options(read_only=True) as conn:
            found = store.users_by_id(conn, [user_id]).get(user_id)
        if found is None:
            raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
        return _person(found)

    def _add(
        self, conn: Connection, org_id: str, user_id: str, name: str, roles: Iterable[UserRole | str], *, by: str | None
    ) -> Person:
        check_user_id(user_id)
        parsed = _check_roles(roles)
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name: 1-200 characters", field="name")
        if not ledger.parties(conn, [org_id]):
            raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field="org_id")
        if store.user_exists(conn, user_id):
            raise Conflict(f"user {user_id!r} exists", code="user_exists", field="user_id")
        now = self.clock.now_ms()
        store.insert_user(
            conn, user_id=user_id, org_id=org_id, name=name, created_ts_ms=now, roles=format_roles(parsed)
        )
        notify_admins(
            conn,
            org_id=org_id,
            kind="user_added",
            message=f"{by or 'the operator'} added the user {user_id} with the roles {format_roles(parsed)}",
            now_ms=now,
            data={"user_id": user_id, "by": by, "roles": sorted(r.value for r in parsed)},
        )
        return Person(user_id, org_id, name, parsed)
