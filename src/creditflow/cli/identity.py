"""Organisations, their API keys and their users (`creditflow org ...`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from creditflow.cli.common import DbOption, console, err_console, fail, open_app
from creditflow.kernel.errors import Conflict, DomainError

org_cli = typer.Typer(help="Onboard organisations and manage their API keys.", no_args_is_help=True)


@org_cli.command("create")
def org_create(
    org_id: Annotated[str, typer.Option("--id", help="Short identifier, e.g. acme")],
    name: Annotated[str, typer.Option("--name")],
    role: Annotated[str, typer.Option("--role", help="core_enterprise, supplier, bank, auditor or operator")],
    uscc: Annotated[str, typer.Option("--uscc", help="统一社会信用代码 (18 characters, checked)")],
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="hex Ed25519 key for self custody; omit for platform custody")
    ] = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="the first admin's sign-in name (a password is asked for)")
    ] = None,
    admin_name: Annotated[str | None, typer.Option("--admin-name", help="the first admin's full name")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the admin's password from standard input")
    ] = False,
    db: DbOption = None,
) -> None:
    """Register an organisation on the ledger and print its first API key (shown once). With ``--admin``
    it gets its first admin, who then adds its users and grants their roles."""
    password = _read_password(password_stdin) if admin else None
    with open_app(db) as app:
        try:
            key = bytes.fromhex(public_key) if public_key else None
            if admin is not None and password is not None:
                app.people.check_new(admin)
                app.sessions.check_password_policy(password)
            receipt = app.ledger.register_organisation(org_id, name, role, uscc, public_key=key)
            token = app.access.create_key(org_id, "created by creditflow org create")
            if admin is not None and password is not None:
                app.people.add(org_id, admin, admin_name or admin, ["admin"])
                app.sessions.set_password(admin, password)
        except ValueError as exc:
            err_console.print(f"[red]--public-key must be hex[/red]: {exc}")
            raise typer.Exit(3) from exc
        except DomainError as exc:
            fail(exc)
    console.print(f"registered [bold]{org_id}[/bold] at log entry {receipt.seq}")
    console.print(f"API key (shown once): [bold]{token}[/bold]")
    if admin is not None:
        console.print(f"first admin [bold]{admin}[/bold] may sign in at /ui/sign-in")


@org_cli.command("list")
def org_list(db: DbOption = None) -> None:
    """List registered organisations."""
    from rich.table import Table

    with open_app(db) as app:
        table = Table("org_id", "name", "role", "USCC", "registered at entry")
        for p in app.queries.parties():
            table.add_row(p.org_id, p.name, p.role.value, p.uscc, str(p.created_seq))
    console.print(table)


@org_cli.command("api-key")
def org_api_key(org_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Create another API key for an organisation."""
    with open_app(db) as app:
        try:
            print(app.access.create_key(org_id, "created by creditflow org api-key"))
        except DomainError as exc:
            fail(exc)


@org_cli.command("user")
def org_user(
    org_id: Annotated[str, typer.Argument(help="the user's organisation")],
    user_id: Annotated[str, typer.Argument(help="sign-in name, e.g. li.wei")],
    name: Annotated[str | None, typer.Option("--name", help="full name (for a new user)")] = None,
    roles: Annotated[str, typer.Option("--roles", help="a new user's roles, comma-separated")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input, not a prompt")
    ] = False,
    db: DbOption = None,
) -> None:
    """Add a user to an organisation (or reset an existing user's password) for the web pages: the same
    as `creditflow users add` (see there)."""
    users_add(org_id, user_id, name, roles, password_stdin, db)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


users_cli = typer.Typer(
    help="An organisation's people and their roles (admin, maker, approver, viewer), as the operator.",
    no_args_is_help=True,
)


@users_cli.command("add")
def users_add(
    org_id: Annotated[str, typer.Option("--org", help="the user's organisation")],
    user_id: Annotated[str, typer.Option("--user", help="sign-in name, e.g. li.wei")],
    name: Annotated[str | None, typer.Option("--name", help="full name (for a new user)")] = None,
    roles: Annotated[str, typer.Option("--roles", help="a new user's roles, comma-separated")] = "admin",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input, not a prompt")
    ] = False,
    db: DbOption = None,
) -> None:
    """Add a user with its roles to an organisation (e.g. an admin to an organisation that has none), or
    reset an existing user's password. The operator's door: in the API and the pages only an admin of
    the organisation adds users. The password is asked for twice (or read from stdin) and stored as an
    Argon2id hash only."""
    password = _read_password(password_stdin)
    with open_app(db) as app:
        try:
            app.sessions.check_password_policy(password)
            try:
                org = app.people.get(user_id).org_id
            except DomainError:
                app.people.add(org_id, user_id, name or user_id, roles.replace(",", " ").split())
                org = org_id
            if org != org_id:
                raise Conflict(f"user {user_id!r} belongs to {org!r}", code="user_exists", field="user_id")
            app.sessions.set_password(user_id, password)
            person = app.people.get(user_id)
        except DomainError as exc:
            fail(exc)
    shown = ", ".join(sorted(r.value for r in person.roles))
    console.print(f"user [bold]{user_id}[/bold] of {org_id} ({shown}) may sign in at /ui/sign-in")


@users_cli.command("list")
def users_list(
    org_id: Annotated[str, typer.Option("--org", help="the organisation")],
    db: DbOption = None,
) -> None:
    """List an organisation's users and their roles."""
    from rich.table import Table

    with open_app(db) as app:
        table = Table("user_id", "name", "roles")
        for p in app.people.of(org_id):
            table.add_row(p.user_id, p.name, " ".join(sorted(r.value for r in p.roles)))
    console.print(table)
