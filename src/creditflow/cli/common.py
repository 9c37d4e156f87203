"""What every command module of the CLI shares: the consoles, the --db and --json options, opening the app
through the composition root, and how a refused command ends (exit 2 with its stable code).

Every command that opens a database goes through `open_app`: without CREDITFLOW_KEY_PASSPHRASE and a log key
secret (CREDITFLOW_LOG_KEY_PASSPHRASE or CREDITFLOW_LOG_KEY_FILE) it refuses with exit 3 before anything is
opened or written, unless the database is a demo's (its throwaway passphrases are stored in it) or
`creditflow --dev ...` (`serve --dev`) asks for the public development passphrases."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from creditflow.config import Settings
from creditflow.kernel.errors import DomainError

# Piped output (CI logs, `make demo | tee`) gets a readable width instead of Rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: $CREDITFLOW_DB_URL or sqlite:///creditflow.db)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


# The CLI prints App.warnings itself, in colour: the composition root's log of them would say it twice.
_startup_log = logging.getLogger("creditflow.startup")
_startup_log.addHandler(logging.NullHandler())
_startup_log.propagate = False

EXIT_CONFIG = 3  # bad usage or configuration: e.g. no passphrase (nothing was opened or written)


class _Mode:
    dev = False  # `creditflow --dev`: the public development passphrases stand in for missing ones


MODE = _Mode()


def settings_for(db: str | None, *, dev: bool = False) -> Settings:
    values: dict[str, Any] = {}
    if db:
        values["db_url"] = db
    if dev or MODE.dev:
        values["dev"] = True
    return Settings(**values)


def open_app(db: str | None, *, dev: bool = False) -> Any:
    """The app on ``db`` (or the configured database), or exit 3 with the refusal's code and what to set."""
    from creditflow.bootstrap import build
    from creditflow.ledger.custody import StartupRefused

    try:
        app = build(settings_for(db, dev=dev))
    except StartupRefused as exc:
        err_console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    for warning in app.warnings:
        err_console.print(f"[yellow]warning[/yellow]: {warning}", soft_wrap=True)
    return app


def fail(error: DomainError) -> None:
    err_console.print(f"[red]error[/red] [bold]{error.code}[/bold]: {error.message}")
    raise typer.Exit(2)
